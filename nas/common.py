"""What every ``nas`` command shares: the console, and the one-line error the user sees."""
from __future__ import annotations

from rich.console import Console

__all__ = ["CommandError", "console"]


class CommandError(Exception):
    """A problem the user can fix, said in one line; ``nas`` prints it and exits with status 2."""


def console() -> Console:
    con = Console(highlight=False)
    # Piped output (logs, CI, notebooks) gets a fixed width instead of rich's 80-column fallback.
    return con if con.is_terminal else Console(highlight=False, width=120)
