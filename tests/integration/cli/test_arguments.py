"""Ids and amounts: one parser each, ASCII digits only, within the columns' ranges (issue 11, item 15)."""

from __future__ import annotations

from decimal import Decimal

import psycopg
import pytest

from config.settings import MAX_BUDGET_USD, MAX_ID
from tests.support.cli import run_hq
from tests.support.rows import new_issue


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
