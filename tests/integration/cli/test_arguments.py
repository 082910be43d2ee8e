"""Ids and amounts: one parser each, ASCII digits only, within the columns' ranges (issue 11, item 15)."""

from __future__ import annotations

from decimal import Decimal

import psycopg
import pytest

from cli.arguments import id_list, parse_id, parse_usd
from config.errors import UsageError
from config.settings import MAX_BUDGET_USD, MAX_ID
from tests.conftest import run_hq
from tests.support.rows import new_issue

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


@pytest.mark.parametrize(
    "args",
    [
        ["issue", "show", str(MAX_ID)],
        ["approve", str(MAX_ID)],
        ["budget", str(MAX_ID), "--add", "1"],
        ["goal", "close", str(MAX_ID)],
        ["notifications", "retry", str(MAX_ID)],
    ],
)
def test_the_largest_id_reaches_the_database_and_is_simply_not_found(args: list[str], db_url: str) -> None:
    result = run_hq(*args)
    assert result.exit_code == 2, result
    assert "does not exist" in result.stderr and str(MAX_ID) in result.stderr


def test_the_amount_bounds_are_inclusive(raw: psycopg.Connection) -> None:
    issue = new_issue(raw, status="todo", budget_usd=1)
    assert run_hq("budget", str(issue), "--add", "0.01").exit_code == 0
    assert run_hq("budget", str(issue), "--add", str(MAX_BUDGET_USD)).exit_code == 0
    assert raw.execute("SELECT budget_usd FROM issues WHERE id = %s", (issue,)).fetchone() == (
        1 + Decimal("0.01") + MAX_BUDGET_USD,
    )
    created = run_hq("issue", "create", "Smallest budget", "--budget", "0.01", "--depends-on", f"{issue}")
    assert created.exit_code == 0, created.stderr
    assert raw.execute("SELECT budget_usd FROM issues WHERE id = %s", (int(created.stdout),)).fetchone() == (
        Decimal("0.01"),
    )


def test_a_refused_amount_writes_no_comment(raw: psycopg.Connection) -> None:
    issue = new_issue(raw, status="todo", budget_usd=1)
    result = run_hq("budget", str(issue), "--add", "1e-9")
    assert result.exit_code == 2 and "--add" in result.stderr
    assert raw.execute("SELECT count(*) FROM comments WHERE issue_id = %s", (issue,)).fetchone() == (0,)


def test_a_budget_raised_past_what_the_column_holds_is_refused_whole(raw: psycopg.Connection) -> None:
    """Each --add is within bounds, but the sum would overflow numeric(12, 4): a usage error, nothing written."""
    issue = new_issue(raw, status="todo", budget_usd=Decimal("99950000"))
    result = run_hq("budget", str(issue), "--add", str(MAX_BUDGET_USD))
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1, result
    assert "largest budget an issue can hold" in result.stderr and "Traceback" not in result.stderr
    assert raw.execute("SELECT budget_usd FROM issues WHERE id = %s", (issue,)).fetchone() == (Decimal("99950000"),)
    assert raw.execute("SELECT count(*) FROM comments WHERE issue_id = %s", (issue,)).fetchone() == (0,)
