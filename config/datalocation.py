"""Where the company lives: one data dir, found the same way from whichever directory `hq` runs in.

The data dir holds the embedded PostgreSQL, so a second data dir is a second company. It used to
default to ``./var``, relative to the current directory: `hq issues` run from another directory
silently started an empty company with a PostgreSQL of its own. Now, in this order:

1. ``HQ_DATA_DIR`` when it is set. A relative value is taken from the directory `hq` starts in: it
   was given there, explicitly (an absolute path is the same from everywhere).
2. The ``var/`` of the checkout `hq` runs from (an editable install, as `make install` makes): the
   directory above the packages, when its pyproject.toml is this project's. Found from the
   package's own files, never from the current directory.
3. The user's data directory: ``$XDG_DATA_HOME/heartbeat-hq`` (an absolute XDG_DATA_HOME only, as
   the XDG spec says), else ``~/.local/share/heartbeat-hq``.

Pure: the caller passes the install location, the environment, the home and current directories.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

PROJECT_NAME = "heartbeat-hq"
"""pyproject.toml's [project] name: what makes a directory above the packages this project's checkout."""

Origin = Literal["HQ_DATA_DIR", "checkout", "user"]


@dataclass(frozen=True)
class DataLocation:
    """The data dir in use and why it is that one."""

    path: Path
    origin: Origin
    given: Path | None = None
    """HQ_DATA_DIR as given (None when it was not set): the settings recompute when it changes."""
    checkout: Path | None = None
    """The checkout hq runs from, when there is one (whatever chose the data dir)."""

    def how(self) -> str:
        """Why this directory, for people: ``HQ_DATA_DIR``, or the rule that found it."""
        if self.origin == "HQ_DATA_DIR":
            return "set by HQ_DATA_DIR"
        if self.origin == "checkout":
            return f"the var/ of the checkout hq runs from, {self.checkout}; HQ_DATA_DIR unset"
        return "the user's data directory (no checkout to run from); HQ_DATA_DIR unset"


def checkout_root(package_root: Path) -> Path | None:
    """``package_root`` when it is a checkout of this project (its pyproject.toml names it), else None.

    An installed wheel puts the packages in site-packages, where no such file is: then None.
    """
    try:
        with open(package_root / "pyproject.toml", "rb") as handle:
            project = tomllib.load(handle).get("project")
    except (OSError, tomllib.TOMLDecodeError):
        return None
    if isinstance(project, dict) and project.get("name") == PROJECT_NAME:
        return package_root
    return None


def user_data_dir(environ: Mapping[str, str], home: Path) -> Path:
    """``$XDG_DATA_HOME/heartbeat-hq``, else ``~/.local/share/heartbeat-hq``."""
    xdg = environ.get("XDG_DATA_HOME", "")
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / PROJECT_NAME
    if not home.is_absolute():  # HOME unset and no password entry: expanduser("~") came back as "~"
        raise ValueError("no home directory to keep the data dir in (HOME is unset): set HQ_DATA_DIR")
    return home / ".local" / "share" / PROJECT_NAME


def locate_data_dir(
    given: Path | None, *, package_root: Path, environ: Mapping[str, str], home: Path, cwd: Path
) -> DataLocation:
    """The data dir by the rule of the module docstring; every path absolute (not resolved: no filesystem)."""
    checkout = checkout_root(package_root)
    if given is not None:
        path = given.expanduser()
        return DataLocation(path if path.is_absolute() else cwd / path, "HQ_DATA_DIR", given, checkout)
    if checkout is not None:
        return DataLocation(checkout / "var", "checkout", None, checkout)
    return DataLocation(user_data_dir(environ, home), "user", None, None)
