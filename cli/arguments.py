"""Ids and amounts as the CLI reads them: one parser each, so every command refuses the same inputs.

Python's ``int()`` and ``Decimal()`` accept far more than a person means by a number (``'٣'``, ``'1_0'``,
``' 7 '``, ``'1e-9'``, ``'Infinity'``), and a value past a column's range only fails inside the
database as an internal error. These parsers take ASCII digits only and the bounds that
config.settings shares with the settings, and fail as usage errors before any row is read.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal
from functools import lru_cache
from typing import Annotated, Any, TypeVar

import typer
from pydantic import TypeAdapter, ValidationError
from pydantic_core import PydanticCustomError

from config.errors import UsageError
from config.settings import MAX_BUDGET_USD, MAX_ID, MIN_AMOUNT_USD, BudgetUSD

T = TypeVar("T")

_DIGITS = re.compile(r"[0-9]{1,19}", re.ASCII)
_DECIMAL = re.compile(r"[0-9]{1,9}(?:\.[0-9]{1,9})?", re.ASCII)


def parse_id(text: str, what: str = "an id") -> int:
    """A row id: ASCII digits from 1 to bigint's maximum, or ValueError saying so."""
    if not _DIGITS.fullmatch(text) or not 1 <= int(text) <= MAX_ID:
        raise ValueError(f"{text!r} is not {what} (ASCII digits, from 1 to {MAX_ID})")
    return int(text)


@lru_cache(maxsize=1)
def _budget_adapter() -> TypeAdapter[Decimal]:
    return TypeAdapter(BudgetUSD)


def parse_usd(text: str) -> Decimal:
    """An amount given to an issue, within the bounds HQ_DEFAULT_ISSUE_BUDGET_USD also obeys."""
    if _DECIMAL.fullmatch(text):
        try:
            return _budget_adapter().validate_python(Decimal(text))
        except ValidationError:
            pass
    raise ValueError(
        f"{text!r} is not an amount of USD (like 2.50: from {MIN_AMOUNT_USD} to {MAX_BUDGET_USD}, "
        "at most 4 decimal places)"
    )


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
