"""Ids and amounts: one parser each, ASCII digits only, within the columns' ranges (issue 11, item 15).

The parsers alone; what reaches the database is in tests/integration/cli/test_arguments.py.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from cli.arguments import id_list, parse_id, parse_usd
from config.errors import UsageError
from config.settings import MAX_BUDGET_USD, MAX_ID

REFUSED_IDS = [
    "",
    "0",
    "-1",
    "+1",
    " 1",
    "1 ",
    "1.0",
    "1e3",
    "1_000",
    "0x10",
    "abc",
    "\u0663",
    "\u00b2",
    "\uff11",
    str(MAX_ID + 1),
    "9" * 40,
]


@pytest.mark.parametrize("text", REFUSED_IDS)
def test_refused_ids(text: str) -> None:
    with pytest.raises(ValueError, match="is not an issue id"):
        parse_id(text, "an issue id")


def test_accepted_ids() -> None:
    assert [parse_id(t) for t in ("1", "42", "007", str(MAX_ID))] == [1, 42, 7, MAX_ID]


def test_id_lists_are_repeatable_and_comma_separated_and_name_the_option() -> None:
    assert id_list(["3,4", " 7 ", "8, 9"], "--depends-on") == [3, 4, 7, 8, 9]
    assert id_list(None, "--depends-on") == []
    for bad in (["3,\u0663"], ["3,,4"], [str(MAX_ID + 1)]):
        with pytest.raises(UsageError, match=r"^--depends-on: .* is not an issue id"):
            id_list(bad, "--depends-on")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "0",
        "0.00",
        "0.009",
        "1e-9",
        "1E2",
        "-5",
        "+5",
        "Infinity",
        "NaN",
        "1.00001",
        "1,50",
        "1_000",
        " 2",
        "\u0665",
        "\uff15",
        str(MAX_BUDGET_USD + Decimal("0.01")),
        "99999999",
    ],
)
def test_refused_amounts(text: str) -> None:
    with pytest.raises(ValueError, match="is not an amount of USD"):
        parse_usd(text)


def test_accepted_amounts() -> None:
    assert [parse_usd(t) for t in ("0.01", "2", "2.5", "2.50", "1.2345", str(MAX_BUDGET_USD))] == [
        Decimal("0.01"),
        2,
        Decimal("2.5"),
        Decimal("2.50"),
        Decimal("1.2345"),
        MAX_BUDGET_USD,
    ]
