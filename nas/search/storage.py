"""Where a search's Optuna study lives, opened with one-line errors.

The study is the search's checkpoint: every ask, every parameter, every tell is in it, so a killed
driver loses at most the trials it was scoring. Two kinds of storage:

- the default, a journal file in the run directory (``journal.log``, Optuna's
  :class:`~optuna.storages.JournalStorage`): each operation is one line appended with one
  ``write`` to the operating system (:class:`RunJournal`), so a killed driver loses nothing the
  kernel received, without the file lock and ``fsync`` per operation of Optuna's multi-process file
  backend (160 ms a trial here, against SQLite's 130-700 ms; ``bench/search_overhead.py``); it is
  the file format of Optuna's own journal backend, so ``optuna-dashboard runs/<id>/journal.log``
  reads it. One driver writes it (the run lock guarantees that);
- an RDB URL (``sqlite:///...``, ``postgresql://...``, ``mysql://...``) to share one study between
  drivers on several machines.

A run started before the journal default kept its ``study.db``; resuming it opens that.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from optuna.storages.journal import BaseJournalBackend

from search_space.config import ConfigError

__all__ = ["JOURNAL", "LEGACY_DB", "SCHEMES", "RunJournal", "default_url", "open_storage", "check_url"]

JOURNAL = "journal.log"
LEGACY_DB = "study.db"
SCHEMES = ("journal", "sqlite", "postgresql", "mysql")
_DRIVERS = {"postgresql": "psycopg (pip install 'psycopg[binary]')", "mysql": "PyMySQL (pip install pymysql)"}


def default_url(run_dir: Path) -> str:
    """The run's own storage: its journal, or the SQLite study of a run started before the journal default."""
    legacy = run_dir / LEGACY_DB
    if legacy.exists() and not (run_dir / JOURNAL).exists():
        return f"sqlite:///{legacy.resolve()}"
    return f"journal:///{(run_dir / JOURNAL).resolve()}"


def check_url(url: str) -> str:
    """The URL's scheme, or a one-line :class:`ConfigError` naming the allowed forms."""
    scheme = url.split(":", 1)[0].split("+", 1)[0] if ":" in url else ""
    if scheme not in SCHEMES:
        raise ConfigError("storage", url, "must be journal:///path/to/journal.log, sqlite:///path.db, "
                                          "postgresql://user@host/db or mysql://user@host/db")
    return scheme


def open_storage(url: str, single_writer: bool = False) -> Any:
    """An Optuna storage for ``url``; every way it can fail is one line naming the URL and what to do.

    ``single_writer``: this process is the journal's only writer (the run's own journal under its
    lock): the fast :class:`RunJournal`; else Optuna's locking file backend, safe for several drivers.
    """
    import optuna

    scheme = check_url(url)
    if scheme == "journal":
        path = Path(url.split(":///", 1)[1] if ":///" in url else url.split("://", 1)[1])
        if path.is_dir():
            raise ConfigError("storage", url, "is a directory; name a journal file")
        if path.exists() and path.stat().st_size and not _looks_like_journal(path):
            raise ConfigError("storage", url, "is not an Optuna journal file")
        path.parent.mkdir(parents=True, exist_ok=True)
        if single_writer:
            return optuna.storages.JournalStorage(RunJournal(path))
        from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

        return optuna.storages.JournalStorage(JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path))))
    if scheme == "sqlite":
        target = url.split(":///", 1)[1] if ":///" in url else ""
        if target and Path(target).is_dir():
            raise ConfigError("storage", url, "is a directory; name a database file")
        if target and Path(target).exists() and not _looks_like_sqlite(Path(target)):
            raise ConfigError("storage", url, "is not an SQLite database")
    engine = {"connect_args": {"timeout": 60}} if scheme == "sqlite" else {"pool_pre_ping": True}
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs=engine)
    except ImportError as e:
        raise ConfigError("storage", url, f"needs the database driver {_DRIVERS.get(scheme, str(e))}") from None
    except Exception as e:  # SQLAlchemy's errors: no such module, cannot connect, bad URL, not a database
        name = type(e).__name__
        msg = str(e).splitlines()[0][:200] if str(e) else name
        if "NoSuchModuleError" in name or "No module named" in msg:
            raise ConfigError("storage", url, f"needs the database driver {_DRIVERS.get(scheme, msg)}") from None
        raise ConfigError("storage", url, f"cannot be opened ({name}: {msg})") from None


class RunJournal(BaseJournalBackend):
    """Optuna's journal file format for one writer: logs kept in memory, each append one ``os.write``.

    Reading replays from memory (Optuna's file backend re-reads the file); appending writes whole
    lines to an ``O_APPEND`` descriptor at once, so the kernel holds every told trial even if this
    process is killed the next instant. A line left half-written by a crash mid-write is cut off
    when the journal is opened again (the operation it held never completed).
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        raw = self.path.read_bytes() if self.path.exists() else b""
        end = raw.rfind(b"\n") + 1
        if end < len(raw):  # a torn last line from a killed write
            with open(self.path, "r+b") as f:
                f.truncate(end)
        self._logs: list[dict[str, Any]] = [json.loads(line) for line in raw[:end].splitlines() if line.strip()]
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def read_logs(self, log_number_from: int) -> list[dict[str, Any]]:
        return self._logs[log_number_from:]

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        data = b"".join(json.dumps(log, separators=(",", ":")).encode() + b"\n" for log in logs)
        os.write(self._fd, data)
        self._logs.extend(logs)

    def close(self) -> None:
        if self._fd is not None:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:
        try:
            self.close()
        except (OSError, AttributeError):
            pass


def _looks_like_journal(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(1)
    return head == b"{"


def _looks_like_sqlite(path: Path) -> bool:
    if path.stat().st_size == 0:
        return True
    with open(path, "rb") as f:
        return f.read(16) == b"SQLite format 3\x00"

