"""Human decisions from the CLI: each is one transaction, and a wrong one changes nothing."""

from __future__ import annotations

import json

import psycopg

from tests.support.cli import run_hq
from tests.support.rows import events, force_status, new_issue, seed_agents, status_of


def snapshot(raw: psycopg.Connection) -> list[tuple]:
    return raw.execute(
        "SELECT (SELECT json_agg(i ORDER BY id) FROM issues i)::text, (SELECT count(*) FROM issue_events),"
        " (SELECT count(*) FROM comments), (SELECT json_agg(a ORDER BY id) FROM approvals a)::text"
    ).fetchall()


def pending_work(raw: psycopg.Connection) -> int:
    issue = new_issue(raw, "needs a human", status="todo")
    force_status(raw, issue, "pending_approval")
    raw.execute(
        "INSERT INTO approvals (issue_id, kind, requested_by, reason, deadline) "
        "VALUES (%s, 'work', 'agent:boss', 'review passed', now() + interval '1 day')",
        (issue,),
    )
    return issue


def test_approve_moves_to_approved_and_closes_the_approval(raw: psycopg.Connection) -> None:
    issue = pending_work(raw)
    result = run_hq("approve", str(issue), "--note", "ship it", "--as", "carol")
    assert result.exit_code == 0, result.stderr
    assert "pending_approval -> approved" in result.stdout
    assert status_of(raw, issue) == "approved"
    assert raw.execute(
        "SELECT status, decided_by, decision_note FROM approvals WHERE issue_id = %s", (issue,)
    ).fetchone() == ("approved", "human:carol", "ship it")
    actor = raw.execute(
        "SELECT actor, workflow FROM issue_events WHERE issue_id = %s ORDER BY id DESC LIMIT 1", (issue,)
    ).fetchone()
    assert actor == ("human:carol", "cli:approve")


def test_approve_wrong_status_or_missing_issue_exits_2_and_changes_nothing(raw: psycopg.Connection) -> None:
    issue = new_issue(raw, status="todo")
    before = snapshot(raw)
    for args in (
        ("approve", str(issue)),
        ("approve", "999999"),
        ("reject", str(issue), "--reason", "no"),
        ("revise", str(issue), "--note", "again"),
        ("unblock", str(issue), "--note", "go"),
        ("budget", "999999", "--add", "1"),
        ("budget", str(issue), "--add", "-5"),
        ("budget", str(issue), "--add", "NaN"),
        ("reject", str(issue), "--reason", "  "),
        ("approve", "abc"),
    ):
        result = run_hq(*args)
        assert result.exit_code == 2, (args, result)
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "Traceback" not in result.stderr
    assert snapshot(raw) == before
    message = run_hq("approve", str(issue)).stderr.strip()
    assert message == f"hq: error: cannot approve issue {issue}: it is todo, not pending_approval"
    assert run_hq("approve", "999999").stderr.strip() == "hq: error: issue 999999 does not exist"


def test_reject_and_revise(raw: psycopg.Connection) -> None:
    rejected = pending_work(raw)
    assert run_hq("reject", str(rejected), "--reason", "not what we need").exit_code == 0
    assert status_of(raw, rejected) == "rejected"
    revised = pending_work(raw)
    assert run_hq("revise", str(revised), "--note", "add a summary").exit_code == 0
    assert status_of(raw, revised) == "todo"
    assert raw.execute("SELECT kind, body FROM comments WHERE issue_id = %s", (revised,)).fetchone() == (
        "revision",
        "add a summary",
    )
    assert raw.execute("SELECT status FROM approvals WHERE issue_id = %s", (revised,)).fetchone() == ("revised",)


def test_unblock_with_reassignment_resets_counters(raw: psycopg.Connection) -> None:
    agents = seed_agents(raw)
    issue = new_issue(raw, status="todo", attempts=3, assignee_id=agents["boss"])
    raw.execute("UPDATE issues SET status = 'blocked', blocked_reason = 'human' WHERE id = %s", (issue,))
    raw.execute(
        "INSERT INTO approvals (issue_id, kind, requested_by, deadline) VALUES (%s, 'escalation', 'agent:boss', now())",
        (issue,),
    )
    result = run_hq("unblock", str(issue), "--note", "use the v2 API", "--assign", "dev")
    assert result.exit_code == 0, result.stderr
    row = raw.execute(
        "SELECT status, attempts, assignee_id, blocked_reason FROM issues WHERE id = %s", (issue,)
    ).fetchone()
    assert row == ("todo", 0, agents["dev"], None)
    assert raw.execute("SELECT status FROM approvals WHERE issue_id = %s", (issue,)).fetchone() == ("resolved",)


def test_cancel_refuses_terminal_and_deploying(raw: psycopg.Connection) -> None:
    issue = new_issue(raw)
    assert run_hq("cancel", str(issue), "--reason", "duplicate").exit_code == 0
    assert status_of(raw, issue) == "cancelled"
    again = run_hq("cancel", str(issue))
    assert again.exit_code == 2 and "already cancelled" in again.stderr
    deploying = new_issue(raw, status="todo")
    force_status(raw, deploying, "deploying")
    refused = run_hq("cancel", str(deploying))
    assert refused.exit_code == 2
    assert "deploying -> cancelled" in refused.stderr
    assert status_of(raw, deploying) == "deploying"


def test_budget_raises_and_unblocks_a_budget_blocked_issue(raw: psycopg.Connection) -> None:
    issue = new_issue(raw, status="todo", budget_usd=1)
    raw.execute("UPDATE issues SET status = 'blocked', blocked_reason = 'budget' WHERE id = %s", (issue,))
    raw.execute(
        "INSERT INTO approvals (issue_id, kind, requested_by, deadline, amount_usd) "
        "VALUES (%s, 'budget', 'agent:dev', now() + interval '1 hour', 1)",
        (issue,),
    )
    listed = json.loads(run_hq("approvals", "--json").stdout)
    assert [(a["issue_id"], a["kind"]) for a in listed] == [(issue, "budget")]
    result = run_hq("budget", str(issue), "--add", "2.50")
    assert result.exit_code == 0, result.stderr
    assert raw.execute("SELECT status, budget_usd::text FROM issues WHERE id = %s", (issue,)).fetchone() == (
        "todo",
        "3.5000",
    )
    assert raw.execute("SELECT status FROM approvals WHERE issue_id = %s", (issue,)).fetchone() == ("approved",)
    assert events(raw, issue)[-1] == ("blocked", "todo")
    assert json.loads(run_hq("approvals", "--json").stdout) == []
