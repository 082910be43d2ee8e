"""Walking a tree an agent or a command wrote: depth first with a stack of its own, never following a symlink.

A command can leave a chain of directories deeper than the interpreter's recursion limit, where Python 3.11's
recursive ``os.walk`` raises RecursionError; an unreadable directory is skipped, as ``os.walk`` skips it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path


def _always(entry: os.DirEntry[str]) -> bool:
    return True


def entries(top: Path, descend: Callable[[os.DirEntry[str]], bool] = _always) -> Iterator[os.DirEntry[str]]:
    """Every entry below ``top``; a directory's own entries follow only when ``descend(entry)`` says so."""
    pending = [top]
    while pending:
        here = pending.pop()
        try:
            with os.scandir(here) as listing:
                found = list(listing)
        except OSError:
            continue
        for entry in found:
            yield entry
            try:
                if entry.is_dir(follow_symlinks=False) and descend(entry):
                    pending.append(Path(entry.path))
            except OSError:
                continue
