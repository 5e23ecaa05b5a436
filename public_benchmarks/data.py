"""The one way to reach the public benchmarks' data: the copy shipped inside this package.

Why one helper: the loaders of HELP latencies (:mod:`.help`), ViT-Bench-101 (:mod:`.vitbench`) and
NAS-Bench-Suite-Zero (:mod:`.proxy_eval`) used to look for a ``../shared/data`` folder beside the
repository, which a fresh clone or an installed wheel does not have. The data now ship with the
package under ``public_benchmarks/data/``, the large files gzip-compressed (``bench/ship_data.py``
writes and verifies them; each data set's folder holds its ``LICENSE`` and a ``PROVENANCE.md`` with
the source and the sha256 of every uncompressed original).

Every file is named by its *logical* path, the path of the uncompressed original
(``"help", "nasbench201", "latency_ms.csv"``); :func:`data_path` finds it or its ``.gz`` copy, so
callers never care which one is there. A folder with the same layout, compressed or not, can replace
the shipped copy: pass it as ``root`` (the loaders' ``data_dir`` arguments, ``nas proxy eval
--data-dir``) or set ``$EDGEVIT_NAS_SHARED_DATA``. A file that is not there is one
:class:`DataFileError` line naming the path looked for.
"""
from __future__ import annotations

import csv
import gzip
import hashlib
import io
import os
import re
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

__all__ = ["ENV", "SHIPPED", "DataFileError", "data_root", "data_path", "open_text", "read_bytes", "read_json",
           "read_csv_rows", "provenance_hashes", "check_shipped"]

#: Environment variable naming a data folder that replaces the shipped one (same layout).
ENV = "EDGEVIT_NAS_SHARED_DATA"
#: The copy shipped with the package.
SHIPPED = Path(__file__).resolve().parent / "data"


class DataFileError(FileNotFoundError):
    """A benchmark data file that is not where it was looked for; the message is one line naming it."""


def data_root(root: str | os.PathLike | None = None) -> Path:
    """``root``, else ``$EDGEVIT_NAS_SHARED_DATA``, else the shipped :data:`SHIPPED` folder."""
    if root is not None:
        return Path(root)
    env = os.environ.get(ENV)
    return Path(env) if env else SHIPPED


def _where(root: str | os.PathLike | None) -> str:
    if root is not None:
        return "the data folder given"
    return f"${ENV}" if os.environ.get(ENV) else "the data shipped with the package (reinstall it)"


def data_path(*parts: str, root: str | os.PathLike | None = None) -> Path:
    """The file with logical path ``parts`` under :func:`data_root`: the file itself, else its ``.gz``
    copy; a folder is returned as is. Raises :class:`DataFileError` when neither exists."""
    if not parts:
        raise ValueError("data_path: name a file or folder")
    path = data_root(root).joinpath(*parts)
    if path.exists():
        return path
    gz = path.with_name(path.name + ".gz")
    if gz.is_file():
        return gz
    raise DataFileError(f"benchmark data file {path} not found (nor {gz.name}); looked in {_where(root)}; "
                        f"set ${ENV} or --data-dir to a folder with the layout of public_benchmarks/data/")


def _read(path: Path) -> bytes:
    from search_space.files import FileFormatError  # lazy: search_space imports torch

    try:
        raw = path.read_bytes()
        return gzip.decompress(raw) if path.suffix == ".gz" else raw
    except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise FileFormatError(f"benchmark data file {path}: cannot be read ({msg})") from None


def read_bytes(*parts: str, root: str | os.PathLike | None = None) -> bytes:
    """The uncompressed bytes of a data file (decompressing a ``.gz`` copy)."""
    return _read(data_path(*parts, root=root))


def _text(path: Path) -> str:
    from search_space.files import FileFormatError

    try:
        return _read(path).decode("utf-8")
    except UnicodeDecodeError as e:
        raise FileFormatError(f"benchmark data file {path}: not UTF-8 text (byte {e.start})") from None


@contextmanager
def open_text(*parts: str, root: str | os.PathLike | None = None, newline: str | None = None) -> Iterator[TextIO]:
    """A data file opened as UTF-8 text, transparently decompressed (``newline`` as in :func:`open`)."""
    with io.StringIO(_text(data_path(*parts, root=root)), newline=newline) as f:
        yield f


def read_json(*parts: str, root: str | os.PathLike | None = None) -> Any:
    """A JSON data file, parsed (a broken file is one :class:`~search_space.files.FileFormatError` line)."""
    from search_space.files import loads

    path = data_path(*parts, root=root)
    return loads(_text(path), f"benchmark data file {path}")


def read_csv_rows(*parts: str, root: str | os.PathLike | None = None) -> list[dict[str, str]]:
    """A CSV data file as one dict per row (keys from the header line)."""
    with open_text(*parts, root=root, newline="") as f:
        return list(csv.DictReader(f))


# ------------------------------------------------------------------------------ provenance check

_HASH_LINE = re.compile(r"^([0-9a-f]{64})  (\S+)$")


def provenance_hashes(folder: str) -> dict[str, str]:
    """``{logical path inside folder: sha256}`` from the shipped ``<folder>/PROVENANCE.md``."""
    text = (SHIPPED / folder / "PROVENANCE.md").read_text(encoding="utf-8")
    return {m.group(2): m.group(1) for m in map(_HASH_LINE.match, text.splitlines()) if m}


def check_shipped() -> list[str]:
    """Problems with the shipped data (empty when every file decompresses to the sha256 that its
    folder's ``PROVENANCE.md`` records); needs no copy of the source data."""
    problems = []
    folders = sorted(p.name for p in SHIPPED.iterdir() if p.is_dir()) if SHIPPED.is_dir() else []
    if not folders:
        return [f"{SHIPPED}: no shipped data"]
    for folder in folders:
        try:
            hashes = provenance_hashes(folder)
        except OSError as e:
            problems.append(f"{folder}/PROVENANCE.md: {e.strerror or e}")
            continue
        if not hashes:
            problems.append(f"{folder}/PROVENANCE.md: no sha256 lines")
        for name, digest in hashes.items():
            try:
                got = hashlib.sha256(read_bytes(folder, *name.split("/"), root=SHIPPED)).hexdigest()
            except (DataFileError, ValueError) as e:  # ValueError: search_space.files.FileFormatError
                problems.append(str(e))
                continue
            if got != digest:
                problems.append(f"{folder}/{name}: sha256 {got[:12]}... differs from PROVENANCE.md's {digest[:12]}...")
    return problems
