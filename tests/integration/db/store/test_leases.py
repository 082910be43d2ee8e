"""Moves through the issue store that a hostile review of the store found wanting, pinned."""

from __future__ import annotations

import uuid

import psycopg

from db import store
from db.engine import transaction
from tests.support.cli import run_hq
from tests.support.rows import force_status, held, new_issue, one, seed_agents


def test_unblocking_work_nobody_owns_sends_it_to_the_backlog_where_it_can_be_routed(raw: psycopg.Connection) -> None:
    issue = new_issue(raw, "Nobody's yet")
    force_status(raw, issue, "blocked", blocked_reason="human", escalation_chain=["human"])
    result = run_hq("unblock", str(issue), "--note", "route it again", "--as", "carol")
    assert result.exit_code == 0, result.stderr
    assert "blocked -> backlog" in result.stdout
    assert one(raw.execute("SELECT status, assignee_id FROM issues WHERE id = %s", (issue,)).fetchone()) == (
        "backlog",
        None,
    )


def test_the_new_owner_starts_with_every_attempt(raw: psycopg.Connection) -> None:
    agents = seed_agents(raw)
    issue, run_id = new_issue(raw, "Route me"), uuid.uuid4()
    force_status(raw, issue, "backlog", attempts=2, lease_owner=run_id)  # routing failed twice, then decided
    with transaction("agent:boss", workflow="assign", run_id=run_id) as session:
        moved = store.route(session, held(issue, run_id), assignee_id=agents["dev"], to_status="todo")
    assert moved is not None and (moved.status, moved.attempts) == ("todo", 0)


def test_a_stale_run_cannot_release_an_issue_another_writer_moved(raw: psycopg.Connection) -> None:
    agents = seed_agents(raw)
    issue, run_id = new_issue(raw, "Moved under it", status="todo", assignee_id=agents["dev"]), uuid.uuid4()
    force_status(raw, issue, "in_progress", attempts=1, lease_owner=run_id)
    claim = held(issue, run_id)
    force_status(raw, issue, "todo", lease_owner=run_id)  # e.g. re-targeted while the lease was still set
    with transaction("agent:dev", workflow="execute", run_id=run_id) as session:
        assert store.release(session, claim, counts=True) is None
    assert one(raw.execute("SELECT status, attempts FROM issues WHERE id = %s", (issue,)).fetchone()) == ("todo", 1)
