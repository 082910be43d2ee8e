"""Ids and amounts as the CLI's arguments and options: typer's adapters around config/inputs.py's parsers,
which Telegram's commands use too, so every door refuses the same inputs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer
from pydantic_core import PydanticCustomError

from config.errors import UsageError
from config.inputs import parse_id, parse_usd

T = TypeVar("T")


def id_list(values: list[str] | None, option: str, what: str = "an issue id") -> list[int]:
    """Ids given as repeated options and/or comma-separated (``--depends-on 3,4 --depends-on 7``)."""
    ids: list[int] = []
    for value in values or []:
        for part in value.split(","):
            try:
                ids.append(parse_id(part.strip(), what))
            except ValueError as error:
                raise UsageError(f"{option}: {error}") from None
    return ids


def _for_typer(parse: Callable[..., T], *args: str) -> Callable[[str], T]:
    """``parse`` as a typer parser: its ValueError becomes typer's one-line "Invalid value for ..." error."""

    def parser(text: str) -> T:
        try:
            return parse(text, *args)
        except ValueError as error:
            # The message goes in as context, not as the template: user text may contain braces.
            raise PydanticCustomError("hq_argument", "{message}", {"message": str(error)}) from None

    return parser


IssueId = Annotated[
    int, typer.Argument(metavar="ID", help="The issue's id.", parser=_for_typer(parse_id, "an issue id"))
]
GoalId = Annotated[int, typer.Argument(metavar="ID", help="The goal's id.", parser=_for_typer(parse_id, "a goal id"))]
NotificationId = Annotated[
    int | None,
    typer.Argument(metavar="ID", help="The notification's id.", parser=_for_typer(parse_id, "a notification id")),
]


def usd_option(name: str, help_text: str) -> Any:
    """A ``--NAME USD`` option read by ``parse_usd`` (options differ only in name and help)."""
    return typer.Option(name, metavar="USD", help=help_text, parser=_for_typer(parse_usd))
