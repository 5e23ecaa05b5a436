"""``nas``: a thin command line over the Python API.

Each command group lives in its own module and registers its sub-commands here; a command parses
its arguments, calls the package API, and prints. Every expected failure -- invalid input, a bad
file, a missing driver, a read-only folder, a full disk -- ends in one line on stderr that names the
cause and what to do (:mod:`nas.errors`), with a non-zero exit status: 2 for input, 1 for the
machine's conditions. A traceback is shown only with ``--debug`` (anywhere on the line), for bugs.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import NoReturn, Sequence

from . import farm_cli, predictor_cli, proxy_cli, space_cli
from . import train_cli
from . import search_cli
from .errors import INPUT, explain, one_line

__all__ = ["main", "build_parser", "OneLineParser"]


class OneLineParser(argparse.ArgumentParser):
    """argparse with its errors in one line (argparse prints a usage block first), naming the command
    and where its help is. Sub-command parsers inherit the class."""

    def error(self, message: str) -> NoReturn:
        self.exit(INPUT, f"{self.prog}: error: {one_line(message)} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="nas",
        description="Hardware-aware architecture search for EdgeViT-style vision transformers.",
    )
    parser.add_argument("--debug", action="store_true",
                        help="show the Python traceback of a failure (anywhere on the line)")
    groups = parser.add_subparsers(dest="group", metavar="COMMAND", required=True)
    space_cli.register(groups)
    farm_cli.register(groups)
    predictor_cli.register(groups)
    proxy_cli.register(groups)
    train_cli.register(groups)
    search_cli.register(groups)
    return parser


def _split_debug(argv: Sequence[str]) -> tuple[list[str], bool]:
    """``--debug`` may come anywhere before a ``--``: people add it to the line that just failed."""
    argv = list(argv)
    end = argv.index("--") if "--" in argv else len(argv)
    debug = "--debug" in argv[:end]
    return [a for i, a in enumerate(argv) if not (a == "--debug" and i < end)], debug


def main(argv: Sequence[str] | None = None) -> int:
    argv, debug = _split_debug(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    args.debug = debug
    try:
        return int(args.func(args) or 0)
    except BaseException as e:  # noqa: BLE001 - every failure leaves through explain(), in one line
        if isinstance(e, SystemExit):
            raise
        if debug and not isinstance(e, KeyboardInterrupt):
            raise
        if isinstance(e, BrokenPipeError):  # `nas ... | head`: the reader left; nothing to say
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 1
        message, status = explain(e, args)
        try:
            print(f"nas: error: {message}" if message != "interrupted" else "nas: interrupted", file=sys.stderr)
        except OSError:  # stderr itself is gone (a closed pipe)
            pass
        return status


if __name__ == "__main__":
    raise SystemExit(main())
