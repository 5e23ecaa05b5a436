"""Every expected failure of a ``nas`` command as one line: the cause, and what to do about it.

Why a module of its own: the commands raise the packages' own error types (``ConfigError``,
``StoreError``, ``ModelFileError``...), but a user also meets the machine -- a read-only folder, a
full disk, a missing file, a database another process holds -- and each of those reaches the top as
an ``OSError`` or an ``sqlite3`` error with a traceback of 20-80 lines that buries the one line that
matters. :func:`explain` turns an exception into that line (and an exit status); anything it does
not recognise is a bug, reported in one line that says how to get the traceback (``--debug``).

Exit statuses: 2 for input the user can correct, 1 for the machine's conditions (disk, permissions,
a lock), 70 (``EX_SOFTWARE``) for a bug, 130 for Ctrl-C.
"""
from __future__ import annotations

import argparse
import errno
import sqlite3
from pathlib import Path

__all__ = ["INPUT", "ENVIRONMENT", "BUG", "INTERRUPTED", "explain", "one_line", "resume_hint"]

INPUT, ENVIRONMENT, BUG, INTERRUPTED = 2, 1, 70, 130

#: The longest line printed for one error; past it the cause is cut (it is never the useful part).
MAX_LINE = 400


def one_line(text: str, limit: int = MAX_LINE) -> str:
    """``text`` as a single line of at most ``limit`` characters."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def resume_hint(args: argparse.Namespace | None) -> str:
    """What to run after freeing the disk or fixing the folder, for the command that failed."""
    group, command = getattr(args, "group", None), getattr(args, "command", None)
    if group in ("search", "family"):
        run = getattr(args, "resume", None) or getattr(args, "run_dir", None)  # run_dir: set by a command that knows it
        if run is None and getattr(args, "run_id", None):
            run = Path(getattr(args, "out", None) or "runs") / args.run_id
        where = str(run) if run else "runs/<run-id>"
        return f"then 'nas {group} --resume {where}' continues the run (finished trials are kept)"
    if group == "farm" and command in ("sample", "calibrate"):
        return "then run the same command again: it resumes with the candidates not yet stored"
    if group == "farm" and command == "import":
        return "then run the import again: nothing of the failed one was stored"
    if group == "train":
        return "then run the same command with --resume: it continues from the last finished epoch"
    return "then run the command again"


def _os_error(e: OSError, args: argparse.Namespace | None) -> tuple[str, int]:
    where = e.filename if e.filename is not None else ""
    where = f" ({where})" if where else ""
    code = e.errno
    if code == errno.ENOSPC or code == errno.EDQUOT:
        return f"disk full{where}: no space left on device; free space, {resume_hint(args)}", ENVIRONMENT
    if code == errno.EFBIG:
        return (f"file too large{where}: the file system or this process's file-size limit refused it; "
                f"{resume_hint(args)}"), ENVIRONMENT
    if code == errno.EROFS:
        return f"read-only file system{where}: write elsewhere (--out, --store) or remount it read-write", ENVIRONMENT
    if code in (errno.EACCES, errno.EPERM):
        return (f"permission denied{where}: this user may not read or write it; choose another folder "
                f"(--out, --store) or change its permissions"), ENVIRONMENT
    if code == errno.ENOENT:
        return f"no such file or directory{where}: check the path", INPUT
    if code == errno.EISDIR:
        return f"is a directory{where}: give a file", INPUT
    if code == errno.EEXIST:
        return f"already exists{where}: a file stands where a folder is needed; choose another path", INPUT
    if code == errno.ENOTDIR:
        return f"not a directory{where}: a part of the path is a file", INPUT
    if code == errno.ENAMETOOLONG:
        return f"file name too long{where}", INPUT
    if code == errno.EMFILE or code == errno.ENFILE:
        return "too many open files: raise the limit (ulimit -n) or run fewer jobs at once", ENVIRONMENT
    if code == errno.ENOMEM:
        return f"out of memory: {one_line(e.strerror or e)}", ENVIRONMENT
    return f"{one_line(e.strerror or e or type(e).__name__, 300)}{where}", ENVIRONMENT


def _database_error(e: Exception, args: argparse.Namespace | None) -> tuple[str, int] | None:
    text = str(e).lower()
    store = getattr(args, "store", None) or getattr(args, "storage", None)
    db = f" {store}" if store else ""
    if "database or disk is full" in text:
        return (f"disk full while writing the database{db} (database or disk is full); free space, "
                f"{resume_hint(args)}"), ENVIRONMENT
    if "readonly database" in text or "read-only database" in text:
        return (f"the database{db} is read-only (attempt to write a readonly database): make its file and folder "
                "writable or give another --store"), ENVIRONMENT
    if "unable to open database file" in text:
        return (f"unable to open the database file{db}: its folder is missing, read-only or not allowed to this "
                "user; give a writable --store"), ENVIRONMENT
    if "database is locked" in text:
        return ("the database is locked by another process: wait for it to finish, then run the command again",
                ENVIRONMENT)
    if "file is not a database" in text or "malformed" in text:
        return f"not a usable SQLite database{db} ({one_line(e)}): give another --store", INPUT
    if "disk i/o error" in text:
        return (f"disk I/O error while writing the database{db} (a full disk or a file-size limit, or a failing "
                f"disk): check it, {resume_hint(args)}"), ENVIRONMENT
    return None


def explain(e: BaseException, args: argparse.Namespace | None = None) -> tuple[str, int]:
    """The one line and the exit status for ``e``; the line of a bug says so and points to ``--debug``."""
    from device_farm import ProfileError, StoreError
    from device_farm.measure import MachineMismatch
    from predictors.base import ModelFileError
    from predictors.latency import NoDataError
    from search_space.config import ConfigError
    from search_space.files import FileFormatError
    from search_space.tflite import TFLiteExportError, TFLiteUnavailable

    from .common import CommandError

    if isinstance(e, KeyboardInterrupt):
        return "interrupted", INTERRUPTED
    if isinstance(e, (CommandError, ConfigError, ProfileError, StoreError, NoDataError, ModelFileError,
                      FileFormatError, TFLiteExportError, MachineMismatch)):
        return one_line(e), INPUT
    if isinstance(e, TFLiteUnavailable):
        return one_line(e), ENVIRONMENT
    if isinstance(e, sqlite3.Error) or type(e).__module__.startswith("sqlalchemy"):
        known = _database_error(e, args)
        if known:
            return known
    if isinstance(e, OSError):
        return _os_error(e, args)
    if isinstance(e, MemoryError):
        return "out of memory: the input asks for more than this machine has", ENVIRONMENT
    if isinstance(e, ModuleNotFoundError) and e.name:
        return f"the Python package {e.name!r} is missing: install it (pip install {e.name.split('.')[0]})", ENVIRONMENT
    return (f"internal error, a bug: {type(e).__name__}: {one_line(e, 200)} "
            "(run again with --debug for the traceback, and please report it)"), BUG
