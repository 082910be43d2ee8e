"""Small helpers shared by tests: seed rows and force states for setup."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, TypeVar

import psycopg

if TYPE_CHECKING:
    from config.settings import Settings
    from db.store import AgentRecord, Claim
    from projects.workspace import Workspace
    from workflows.lib.context import WorkflowContext

_Row = TypeVar("_Row")


def one(row: _Row | None) -> _Row:
    """The row a query was sure to return (``fetchone()`` types it as optional): a test fails here if none came."""
    assert row is not None
    return row


def seed_agents(raw: psycopg.Connection) -> dict[str, int]:
    """A tiny org: a manager who routes and reviews, and an engineer who executes."""
    raw.execute(
        "INSERT INTO agents (slug, title, workflows, toolsets) VALUES"
        " ('boss', 'Boss', '{assign,review_gate,escalate}', '{issues,delegate}')"
    )
    raw.execute(
        "INSERT INTO agents (slug, title, manager_id, reviewer_id, workflows, toolsets)"
        " SELECT 'dev', 'Developer', id, id, '{execute}', '{issues,workspace}' FROM agents WHERE slug = 'boss'"
    )
    return dict(raw.execute("SELECT slug, id FROM agents").fetchall())


def force_status(raw: psycopg.Connection, issue_id: int, status: str, **columns: object) -> None:
    """Put an issue in a status for test setup, bypassing the state machine (replica mode skips triggers)."""
    assignments = ", ".join(["status = %s"] + [f"{c} = %s" for c in columns])
    with raw.transaction():
        raw.execute("SET LOCAL session_replication_role = replica")
        raw.execute(f"UPDATE issues SET {assignments} WHERE id = %s", (status, *columns.values(), issue_id))


def new_issue(raw: psycopg.Connection, title: str = "Do the thing", status: str = "backlog", **columns: object) -> int:
    names = ["title", "status", "created_by", *columns]
    values = [title, status, "test", *columns.values()]
    placeholders = ", ".join(["%s"] * len(names))
    row = raw.execute(
        f"INSERT INTO issues ({', '.join(names)}) VALUES ({placeholders}) RETURNING id", values
    ).fetchone()
    assert row is not None
    return int(row[0])


def events(raw: psycopg.Connection, issue_id: int) -> list[tuple[str | None, str]]:
    return [
        (r[0], r[1])
        for r in raw.execute(
            "SELECT from_status, to_status FROM issue_events WHERE issue_id = %s ORDER BY id", (issue_id,)
        )
    ]


def status_of(raw: psycopg.Connection, issue_id: int) -> str:
    row = raw.execute("SELECT status FROM issues WHERE id = %s", (issue_id,)).fetchone()
    assert row is not None
    return str(row[0])


ROLLUP_SNAPSHOT = {
    "usage_daily": "SELECT * FROM usage_daily WHERE calls > 0 ORDER BY day, tier, provider, model",
    "usage_agent_monthly": "SELECT * FROM usage_agent_monthly WHERE calls > 0 ORDER BY month, agent_id",
    "issue_flow_daily": "SELECT * FROM issue_flow_daily WHERE created > 0 OR done > 0 ORDER BY day",
    "board_counts": "SELECT * FROM board_counts WHERE issues > 0 ORDER BY status, assignee_id",
    "subtree_costs": "SELECT id, subtree_cost_usd FROM issues ORDER BY id",
    "agent_totals": "SELECT id, heartbeats, claims, failed_beats, productive_beats FROM agents ORDER BY id",
}


def rollups(raw: psycopg.Connection) -> dict[str, list[tuple]]:
    """Every report summary, for comparing what the triggers kept with a rebuild from the facts."""
    return {name: raw.execute(sql).fetchall() for name, sql in ROLLUP_SNAPSHOT.items()}


def agent_record(slug: str) -> AgentRecord:
    """The agent as workflow code sees it (the roster must be synced)."""
    from db import store
    from db.engine import read_only

    with read_only() as session:
        agent = store.agent_by_slug(session, slug)
    assert agent is not None, f"no agent {slug!r}: sync the roster first"
    return agent


def held(issue_id: int, run_id: uuid.UUID) -> Claim:
    """A claim on an issue whose lease the test set to ``run_id``."""
    from db import store
    from db.engine import read_only

    with read_only() as session:
        return store.Claim(store.get_issue(session, issue_id), run_id, counted=True)


def workflow_context(slug: str, workflow: str, settings: Settings | None = None) -> WorkflowContext:
    """What a beat of ``slug`` hands its workflow, for driving workflow code directly."""
    import time

    from agents.roster import Roster
    from config.settings import get_settings
    from db.engine import get_engine
    from workflows.lib.context import WorkflowContext

    settings = settings or get_settings()
    return WorkflowContext(
        agent=agent_record(slug),
        roster=Roster({}, settings.roles_path),
        settings=settings,
        engine=get_engine(settings),
        beat_run_id=uuid.uuid4(),
        deadline=time.monotonic() + 600,
        workflow=workflow,
    )


def execute_run(
    issue: int, agent_id: int, agent_slug: str, workspace: Workspace, writes: dict[str, str], *, submit: bool = True
) -> uuid.UUID:
    """One execute run as the workflow does it: restore what another host did, write files, commit,
    record the snapshot, move to in_review."""
    from sqlalchemy import text

    from db.engine import transaction
    from projects.document.snapshots import record_snapshot, restore_workspace

    run_id = uuid.uuid4()
    workspace.ensure()
    with transaction(f"agent:{agent_slug}", workflow="execute", run_id=run_id) as session:
        restore_workspace(session, issue, workspace)
    for path, content in writes.items():
        workspace.write(path, content)
    workspace.commit(agent=agent_slug, run_id=run_id, issue_id=issue, workflow="execute")
    with transaction(f"agent:{agent_slug}", workflow="execute", run_id=run_id) as session:
        record_snapshot(session, issue_id=issue, run_id=run_id, agent_id=agent_id, workspace=workspace)
        if submit:
            moved = session.execute(  # test setup: the move the workflow makes through the store
                text("UPDATE issues SET status = 'in_review' WHERE id = :id AND status = 'in_progress' RETURNING id"),
                {"id": issue},
            ).first()
            assert moved is not None
    return run_id


def notify_approval(issue: int, kind: str) -> None:
    """Open a ``kind`` approval on ``issue`` and enqueue its notification, as the workflows do."""
    import datetime as dt

    from db import outbox, store
    from db.engine import get_engine, transaction

    with transaction("test", engine=get_engine()) as session:
        approval = store.open_approval(
            session,
            issue,
            kind,
            requested_by="agent:ceo",
            reason="please decide",
            deadline=dt.datetime.now(dt.UTC) + dt.timedelta(hours=24),
        )
        notice = {"work": outbox.pending_approval, "budget": outbox.budget_exhausted, "escalation": outbox.needs_human}
        notice[kind](session, store.get_issue(session, issue), approval)
