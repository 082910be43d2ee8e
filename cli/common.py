"""Options and helpers shared by the command modules."""

from __future__ import annotations

import re
from typing import Annotated

import typer

from config.errors import UsageError
from config.settings import os_user

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")

ActorOption = Annotated[
    str | None, typer.Option("--as", metavar="NAME", help="Record the action as this person (default: your OS user).")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def human(name: str | None) -> str:
    """The audit actor for a person at the CLI: ``human:<name>``."""
    name = name if name is not None else os_user()
    if not _NAME.match(name):
        raise UsageError(f"--as: {name!r} is not a valid name (letters, digits, . _ @ -; at most 64)")
    return f"human:{name}"
