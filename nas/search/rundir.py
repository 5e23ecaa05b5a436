"""A search's run directory: created atomically with its lock, so two drivers never share one.

A fresh run's folder is made with one ``mkdir`` (which fails if the folder exists) and locked at
once; a default id that is taken (two launches in the same second) gets a suffix (``-2``, ``-3``,
...) instead of merging two searches into one study. If setting up the run fails before it has
written ``command.json`` (a storage that cannot be opened, a model that cannot be loaded), the
folder is removed again and the id is free. The lock (``fcntl.flock``) is released by the operating
system even on kill -9, so ``--resume`` after a crash always gets it, and a second ``--resume`` of a
running search is refused.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from search_space.config import ConfigError

__all__ = ["RunLock", "create_run_dir"]


class RunLock:
    """An exclusive, non-blocking lock on a run directory (``.lock`` inside it)."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / ".lock"
        self.fd: int | None = None

    def acquire(self) -> "RunLock":
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock
            return self
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self.fd)
            self.fd = None
            raise ConfigError("run_dir", str(self.path.parent), "another nas search is running in it") from None
        return self

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire() if self.fd is None else self

    def __exit__(self, *exc) -> None:
        self.release()


def create_run_dir(parent: Path, run_id: str, unique: bool) -> tuple[Path, RunLock]:
    """Make ``parent/run_id`` (with ``-2``, ``-3``, ... when ``unique`` and it is taken) and lock it.

    An explicit id that is taken is refused with the way to resume it; an explicit id whose folder
    exists but holds no search (left by someone else, or empty) is refused too, never reused silently.
    """
    parent.mkdir(parents=True, exist_ok=True)
    for k in range(1, 1000):
        run_dir = parent / (run_id if k == 1 else f"{run_id}-{k}")
        try:
            run_dir.mkdir()
        except FileExistsError:
            if unique:
                continue
            what = ("already holds a search; resume it with 'nas search --resume {0}'" if (run_dir / "command.json").exists()
                    else "already exists; choose another --run-id")
            raise ConfigError("run_dir", str(run_dir), what.format(run_dir)) from None
        return run_dir, RunLock(run_dir).acquire()
    raise ConfigError("run_id", run_id, "999 runs of this id already exist; choose another --run-id")


def remove_unstarted(run_dir: Path) -> None:
    """Remove a run folder whose set-up failed before ``command.json`` was written (nothing to resume)."""
    if run_dir.is_dir() and not (run_dir / "command.json").exists():
        shutil.rmtree(run_dir, ignore_errors=True)
