"""Files every package writes and reads: atomic writes and bounded, validated JSON reads.

It lives at the root of the data flow (space -> model -> measurement or prediction -> search ->
results) so that every package can use the one implementation instead of its own:

- :func:`atomic_write` writes beside the destination (the temporary name carries the process id, so
  two writers never share one), flushes and fsyncs, then renames over the destination: a crash at
  any moment leaves the old file or the new one, never a torn one, and never a temporary file.
- :func:`read_json` refuses what a hostile or broken file could do to a reader: more than
  ``max_bytes``, bytes that are not UTF-8, nesting deeper than Python's parser survives, NaN where
  the caller wants only finite numbers. Each refusal is a :class:`FileFormatError` with one line
  that names the file and the cause.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
from pathlib import Path
from typing import Any, BinaryIO, Callable

__all__ = ["FileFormatError", "MAX_JSON_BYTES", "atomic_write", "write_json", "read_json", "read_text", "loads"]

#: Default size limit of a JSON file read by the project (the largest it writes, a phone model, is
#: about 2 MB; a few-shot model that embeds three of them about 6 MB).
MAX_JSON_BYTES = 64 * 1024 * 1024


class FileFormatError(ValueError):
    """A file that cannot be read as what it claims to be; the message is one line naming it."""


def atomic_write(path: str | os.PathLike, data: str | bytes | Callable[[BinaryIO], None]) -> Path:
    """Write ``data`` (text, bytes, or a function writing to a binary file) to ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        if e.filename is None and e.errno is not None:  # a failed write (full disk) names no file: name it
            raise OSError(e.errno, e.strerror, str(path)) from None
        raise
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    with contextlib.suppress(OSError):  # make the rename durable where the platform allows it
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return path


def write_json(path: str | os.PathLike, obj: Any, indent: int | None = None) -> Path:
    """``obj`` as JSON, written atomically (NaN and infinities are written as JSON's ``NaN``)."""
    return atomic_write(path, json.dumps(obj, indent=indent) + ("\n" if indent is not None else ""))


def read_text(path: str | os.PathLike, max_bytes: int = MAX_JSON_BYTES, what: str = "file") -> str:
    """The UTF-8 text of ``path``, or a one-line :class:`FileFormatError` (missing, a directory, too
    large, not UTF-8)."""
    p = Path(path)
    try:
        size = p.stat().st_size
    except FileNotFoundError:
        raise FileFormatError(f"{what} {p}: no such file") from None
    except OSError as e:
        raise FileFormatError(f"{what} {p}: cannot be read ({e.strerror or e})") from None
    if p.is_dir():
        raise FileFormatError(f"{what} {p}: is a directory, not a file")
    if size > max_bytes:
        raise FileFormatError(f"{what} {p}: {size:,} bytes, more than the {max_bytes:,} allowed")
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise FileFormatError(f"{what} {p}: cannot be read ({e.strerror or e})") from None
    if len(raw) > max_bytes:  # grew while we looked
        raise FileFormatError(f"{what} {p}: more than the {max_bytes:,} bytes allowed")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise FileFormatError(f"{what} {p}: not UTF-8 text (byte {e.start})") from None


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a finite number")


def read_json(path: str | os.PathLike, max_bytes: int = MAX_JSON_BYTES, what: str = "file",
              finite: bool = False) -> Any:
    """Parse ``path`` as JSON within the limits of the module docstring.

    ``finite``: refuse ``NaN``/``Infinity`` literals and numbers that overflow to infinity (a
    configuration or a measurement must be finite; a model file may carry NaN for "unknown").
    """
    text = read_text(path, max_bytes, what)
    return loads(text, f"{what} {Path(path)}", finite)


def loads(text: str, where: str, finite: bool = False) -> Any:
    """Parse JSON text with the same one-line errors as :func:`read_json` (``where`` names the source)."""
    def parse_float(s: str) -> float:
        v = float(s)
        if finite and not math.isfinite(v):
            raise ValueError(f"{s[:20]}{'...' if len(s) > 20 else ''} is not a finite number")
        return v

    def parse_int(s: str) -> int:
        if len(s) > 60:  # a number with this many digits is never a field of this project
            raise ValueError(f"an integer of {len(s)} digits (at most 60 allowed)")
        return int(s)

    try:
        return json.loads(text, parse_float=parse_float, parse_int=parse_int,
                          parse_constant=_reject_constant if finite else None)
    except RecursionError:
        raise FileFormatError(f"{where}: JSON nested too deeply") from None
    except json.JSONDecodeError as e:
        raise FileFormatError(f"{where}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})") from None
    except ValueError as e:
        raise FileFormatError(f"{where}: {str(e).splitlines()[0]}") from None
