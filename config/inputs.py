"""Ids and amounts as a person types them: one parser each, shared by the CLI and Telegram's commands.

Python's ``int()`` and ``Decimal()`` accept far more than a person means by a number (``'٣'``, ``'1_0'``,
``' 7 '``, ``'1e-9'``, ``'Infinity'``), and a value past a column's range only fails inside the
database as an internal error. These parsers take ASCII digits only and the bounds that
config.settings shares with the settings, and fail (ValueError) before any row is read.
"""

from __future__ import annotations

import re
from decimal import Decimal
from functools import lru_cache

from pydantic import TypeAdapter, ValidationError

from config.settings import MAX_BUDGET_USD, MAX_ID, MIN_AMOUNT_USD, BudgetUSD

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
