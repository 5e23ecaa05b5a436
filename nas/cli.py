"""``nas``: a thin command line over the Python API.

Each command group lives in its own module and registers its sub-commands here; a command parses
its arguments, calls the package API, and prints. Invalid input ends in one line on stderr that
names the field and what is allowed, with exit status 2.
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from . import farm_cli, predictor_cli, proxy_cli, space_cli
from . import train_cli
from . import search_cli

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nas",
        description="Hardware-aware architecture search for EdgeViT-style vision transformers.",
    )
    groups = parser.add_subparsers(dest="group", metavar="COMMAND", required=True)
    space_cli.register(groups)
    farm_cli.register(groups)
    predictor_cli.register(groups)
    proxy_cli.register(groups)
    train_cli.register(groups)
    search_cli.register(groups)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from device_farm import ProfileError, StoreError
    from predictors.base import ModelFileError
    from predictors.latency import NoDataError
    from search_space.files import FileFormatError
    from search_space.config import ConfigError

    from .common import CommandError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (CommandError, ConfigError, ProfileError, StoreError, NoDataError, ModelFileError, FileFormatError) as e:
        print(f"nas: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nas: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
