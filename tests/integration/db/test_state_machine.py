"""The state machine lives in the database: legal moves pass, everything else is refused."""

from __future__ import annotations

import json
import subprocess

import psycopg
import pytest

from config.urls import libpq_url
from db.embedded import bin_path
from tests.support.rows import events, force_status, new_issue, status_of

LEGAL = {
    "backlog": {"todo", "cancelled"},
    "todo": {"in_progress", "blocked", "backlog", "cancelled"},
    "in_progress": {"in_review", "blocked", "todo", "cancelled"},
    "in_review": {"pending_approval", "approved", "todo", "blocked", "cancelled"},
    "pending_approval": {"approved", "rejected", "todo", "cancelled"},
    "approved": {"deploying", "cancelled"},
    "deploying": {"done", "todo", "blocked"},
    "blocked": {"todo", "backlog", "cancelled"},
    "done": set(),
    "rejected": set(),
    "cancelled": set(),
}


def test_raw_psql_illegal_update_names_both_statuses(db_url: str, raw: psycopg.Connection) -> None:
    issue = new_issue(raw)
    result = subprocess.run(
        [
            str(bin_path("psql")),
            libpq_url(db_url),
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            "UPDATE issues SET status='done' WHERE status='backlog'",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0
    assert "backlog -> done" in result.stderr
    assert status_of(raw, issue) == "backlog"
    assert events(raw, issue) == [(None, "backlog")]


def test_legal_raw_update_adds_one_event_with_sql_actor(raw: psycopg.Connection) -> None:
    issue = new_issue(raw)
    raw.execute("UPDATE issues SET status = 'todo' WHERE id = %s", (issue,))
    rows = raw.execute(
        "SELECT from_status, to_status, actor, workflow FROM issue_events"
        " WHERE issue_id = %s AND from_status IS NOT NULL",
        (issue,),
    ).fetchall()
    assert len(rows) == 1
    from_status, to_status, actor, workflow = rows[0]
    assert (from_status, to_status) == ("backlog", "todo")
    assert actor.startswith("sql:")
    assert workflow is None


def test_update_without_status_change_adds_no_event(raw: psycopg.Connection) -> None:
    issue = new_issue(raw)
    raw.execute("UPDATE issues SET priority = 1 WHERE id = %s", (issue,))
    assert events(raw, issue) == [(None, "backlog")]


def test_every_pair_of_statuses(raw: psycopg.Connection) -> None:
    """All 121 pairs: the table's moves are allowed, every other one is refused."""
    issue = new_issue(raw)
    for source, targets in LEGAL.items():
        for target in LEGAL:
            if target == source:
                continue
            force_status(raw, issue, source)
            if target in targets:
                raw.execute("UPDATE issues SET status = %s WHERE id = %s", (target, issue))
                assert status_of(raw, issue) == target
            else:
                with pytest.raises(psycopg.errors.CheckViolation) as caught:
                    raw.execute("UPDATE issues SET status = %s WHERE id = %s", (target, issue))
                assert f"{source} -> {target}" in str(caught.value)
                assert status_of(raw, issue) == source


def test_app_actor_and_workflow_are_recorded(raw: psycopg.Connection) -> None:
    issue = new_issue(raw)
    with raw.transaction():
        raw.execute("SET LOCAL hq.actor = 'agent:qa-lead'")
        raw.execute("SET LOCAL hq.workflow = 'assign'")
        raw.execute("UPDATE issues SET status = 'todo' WHERE id = %s", (issue,))
    row = raw.execute(
        "SELECT actor, workflow FROM issue_events WHERE issue_id = %s ORDER BY id DESC LIMIT 1", (issue,)
    ).fetchone()
    assert row == ("agent:qa-lead", "assign")
    # SET LOCAL ends with the transaction: the next raw statement is attributed to SQL again.
    raw.execute("UPDATE issues SET status = 'in_progress' WHERE id = %s", (issue,))
    row = raw.execute(
        "SELECT actor FROM issue_events WHERE issue_id = %s ORDER BY id DESC LIMIT 1", (issue,)
    ).fetchone()
    assert row is not None and row[0].startswith("sql:")


def test_issues_start_in_backlog_or_todo(raw: psycopg.Connection) -> None:
    with pytest.raises(psycopg.errors.CheckViolation, match="illegal initial status"):
        new_issue(raw, status="done")
    assert raw.execute("SELECT count(*) FROM issues").fetchone() == (0,)


def test_event_log_is_append_only(raw: psycopg.Connection) -> None:
    issue = new_issue(raw)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        raw.execute("UPDATE issue_events SET actor = 'forged' WHERE issue_id = %s", (issue,))
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        raw.execute("DELETE FROM issue_events WHERE issue_id = %s", (issue,))


def test_leaving_blocked_clears_reason_and_escalation(raw: psycopg.Connection) -> None:
    issue = new_issue(raw, status="todo")
    raw.execute("UPDATE issues SET status = 'blocked', blocked_reason = 'budget' WHERE id = %s", (issue,))
    assert raw.execute(
        "SELECT reason FROM issue_events WHERE issue_id = %s ORDER BY id DESC LIMIT 1", (issue,)
    ).fetchone() == ("budget",)
    raw.execute("UPDATE issues SET status = 'todo' WHERE id = %s", (issue,))
    assert raw.execute("SELECT blocked_reason, escalated_to_id FROM issues WHERE id = %s", (issue,)).fetchone() == (
        None,
        None,
    )


def test_done_sets_done_at_and_releases_dependents(raw: psycopg.Connection) -> None:
    first = new_issue(raw, "first", status="todo")
    second = new_issue(raw, "second", status="todo")
    third = new_issue(raw, "third", status="todo")
    raw.execute(
        "INSERT INTO issue_dependencies (issue_id, depends_on_id) VALUES (%s, %s), (%s, %s)",
        (third, first, third, second),
    )
    assert raw.execute("SELECT unmet_deps FROM issues WHERE id = %s", (third,)).fetchone() == (2,)
    force_status(raw, first, "deploying")
    raw.execute("UPDATE issues SET status = 'done' WHERE id = %s", (first,))
    assert raw.execute("SELECT unmet_deps FROM issues WHERE id = %s", (third,)).fetchone() == (1,)
    assert raw.execute("SELECT done_at IS NOT NULL FROM issues WHERE id = %s", (first,)).fetchone() == (True,)
    raw.execute("UPDATE issues SET status = 'cancelled' WHERE id = %s", (second,))
    assert raw.execute("SELECT unmet_deps FROM issues WHERE id = %s", (third,)).fetchone() == (0,)
    # A dependency on an already finished issue is met from the start.
    fourth = new_issue(raw, "fourth", status="todo")
    raw.execute("INSERT INTO issue_dependencies (issue_id, depends_on_id) VALUES (%s, %s)", (fourth, first))
    assert raw.execute("SELECT unmet_deps FROM issues WHERE id = %s", (fourth,)).fetchone() == (0,)
    raw.execute("DELETE FROM issue_dependencies WHERE issue_id = %s", (third,))
    assert raw.execute("SELECT unmet_deps FROM issues WHERE id = %s", (third,)).fetchone() == (0,)


def test_dependency_cycles_are_refused(raw: psycopg.Connection) -> None:
    a, b, c = (new_issue(raw, t) for t in "abc")
    raw.execute("INSERT INTO issue_dependencies VALUES (%s, %s), (%s, %s)", (a, b, b, c))
    with pytest.raises(psycopg.errors.CheckViolation, match="dependency cycle"):
        raw.execute("INSERT INTO issue_dependencies VALUES (%s, %s)", (c, a))
    with pytest.raises(psycopg.errors.CheckViolation):
        raw.execute("INSERT INTO issue_dependencies VALUES (%s, %s)", (a, a))


def test_status_change_notifies_once_with_small_payload(db_url: str, raw: psycopg.Connection) -> None:
    raw.execute("INSERT INTO agents (slug, title, workflows) VALUES ('dev', 'Dev', '{execute}')")
    issue = new_issue(raw)
    with psycopg.connect(libpq_url(db_url), autocommit=True) as listener:
        listener.execute("LISTEN hq_wake")
        raw.execute("UPDATE issues SET status = 'todo', assignee_id = (SELECT id FROM agents) WHERE id = %s", (issue,))
        raw.execute("UPDATE issues SET title = 'renamed' WHERE id = %s", (issue,))
        received = [json.loads(n.payload) for n in listener.notifies(timeout=1.0)]
    assert len(received) == 1
    assert received[0]["issue"] == issue
    assert received[0]["status"] == "todo"
    assert received[0]["wake"] == ["dev"]
    assert received[0]["actor"].startswith("sql:")
