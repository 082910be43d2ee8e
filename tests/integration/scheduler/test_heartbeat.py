"""Heartbeats that end badly: a model outage ends the workflow's beat, and a beat that died is closed by the sweeper."""

from __future__ import annotations

import uuid
from pathlib import Path

import psycopg
import pytest

from config.settings import get_settings, load_settings
from db.engine import get_engine
from scheduler.company import load_company
from scheduler.heartbeat import BeatContext, run_beat
from tests.fakes.anthropic_server import FakeAnthropic, error
from tests.support.models import KEY, write_models
from tests.support.rows import new_issue, one
from workflows import sweep


@pytest.fixture()
def ids(db_url: str, raw: psycopg.Connection) -> dict[str, int]:
    load_company(get_settings())
    return dict(raw.execute("SELECT slug, id FROM agents").fetchall())


def test_a_refunded_model_failure_is_not_retried_in_the_same_beat(
    ids: dict[str, int], raw: psycopg.Connection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The model is down: the root routes nothing by keywords, asks the model once, and stops for this beat."""
    fake = FakeAnthropic().start()
    try:
        fake.default("claude-sonnet-4-5", error(529, "overloaded"))
        models = write_models(
            tmp_path / "m.yaml",
            fake,
            {t: ["anthropic/claude-sonnet-4-5"] for t in ("reasoning", "execution", "utility")},
            retries=0,
        )
        monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
        monkeypatch.setenv("HQ_MODELS_FILE", str(models))
        settings = load_settings()
        issues = [new_issue(raw, f"zzqx wibble {n}", status="backlog") for n in range(3)]  # no keyword matches
        beat = run_beat("ceo", BeatContext(settings, get_engine(settings), load_company(settings), "test"))
    finally:
        fake.stop()
    assert beat.outcome == "degraded"
    routing_calls = one(
        raw.execute("SELECT count(DISTINCT run_id) FROM llm_calls WHERE workflow = 'assign'").fetchone()
    )[0]
    assert routing_calls == 1  # one issue tried, once; before the fix: the same issue, again and again
    assert one(raw.execute("SELECT count(*) FROM llm_calls WHERE workflow = 'assign'").fetchone())[0] <= 3
    assert raw.execute("SELECT outcome FROM heartbeat_runs").fetchall() == [("degraded",)]
    rows = raw.execute(
        "SELECT status, attempts, lease_owner FROM issues WHERE id = ANY(%s) ORDER BY id", (issues,)
    ).fetchall()
    assert rows == [("backlog", 0, None)] * 3  # refunded: nothing counted against the issues


def _beat(raw: psycopg.Connection, agent_id: int, *, lease: str | None) -> uuid.UUID:
    """An unfinished beat; ``lease``: 'held' (alive), 'expired' long ago, 'just expired', or None (passed on)."""
    run_id = uuid.uuid4()
    raw.execute(
        "INSERT INTO heartbeat_runs (run_id, agent_id, worker) VALUES (%s, %s, 'dead-host:1')", (run_id, agent_id)
    )
    if lease == "held":
        raw.execute(
            "UPDATE agents SET lease_owner = %s, lease_until = now() + interval '5 minutes' WHERE id = %s",
            (run_id, agent_id),
        )
    elif lease in ("expired", "just expired"):
        ago = "1 hour" if lease == "expired" else "1 second"  # the grace is the agent lease TTL (600 s)
        raw.execute(
            f"UPDATE agents SET lease_owner = %s, lease_until = now() - interval '{ago}' WHERE id = %s",
            (run_id, agent_id),
        )
    return run_id


def test_the_sweeper_closes_beats_that_died(ids: dict[str, int], raw: psycopg.Connection) -> None:
    alive = _beat(raw, ids["backend-engineer"], lease="held")
    expired = _beat(raw, ids["frontend-engineer"], lease="expired")
    superseded = _beat(raw, ids["qa-engineer"], lease=None)
    slow = _beat(raw, ids["data-analyst"], lease="just expired")  # may be a live beat in one long call
    report = sweep.run(get_settings(), get_engine())
    assert report.beats_lost == 2
    rows: dict[uuid.UUID, str | None] = dict(raw.execute("SELECT run_id, outcome FROM heartbeat_runs").fetchall())
    assert rows == {alive: None, expired: "lost", superseded: "lost", slow: None}
    assert raw.execute(
        "SELECT count(*) FROM heartbeat_runs WHERE outcome = 'lost' AND finished_at IS NOT NULL"
        " AND error LIKE 'the beat stopped%'"
    ).fetchone() == (2,)
    assert sweep.run(get_settings(), get_engine()).beats_lost == 0
    # The dead beat's agent beats again at once: an expired lease is free.
    beat = run_beat("frontend-engineer", BeatContext(get_settings(), get_engine(), load_company(get_settings()), "t"))
    assert beat.outcome in ("idle", "ok")


def test_a_beat_closed_as_lost_keeps_that_outcome(ids: dict[str, int], raw: psycopg.Connection) -> None:
    """A beat that outlived its lease and finishes after the sweeper closed it does not rewrite history."""
    from db.store import AgentRecord
    from scheduler.heartbeat import _record_end
    from workflows.lib.context import WorkflowContext

    run_id = _beat(raw, ids["backend-engineer"], lease="expired")
    sweep.run(get_settings(), get_engine())
    runtime = BeatContext(get_settings(), get_engine(), load_company(get_settings()), "t")
    agent = AgentRecord(
        id=ids["backend-engineer"],
        slug="backend-engineer",
        title="",
        tier="execution",
        status="active",
        paused_reason=None,
        workflows=(),
        toolsets=(),
        skills=(),
        checklist=(),
        monthly_budget_usd=None,
        manager_id=None,
        reviewer_id=None,
    )
    ctx = WorkflowContext(
        agent=agent,
        roster=runtime.roster,
        settings=runtime.settings,
        engine=runtime.engine,
        beat_run_id=run_id,
        deadline=0,
    )
    _record_end(runtime, run_id, ids["backend-engineer"], "ok", None, ctx)
    assert raw.execute("SELECT outcome FROM heartbeat_runs WHERE run_id = %s", (run_id,)).fetchone() == ("lost",)
    assert raw.execute(
        "SELECT heartbeats, productive_beats FROM agents WHERE id = %s", (ids["backend-engineer"],)
    ).fetchone() == (1, 0)


def test_an_outage_forgets_pooled_connections_so_the_recovery_is_logged_once(
    ids: dict[str, int], raw: psycopg.Connection
) -> None:
    """A restarted server leaves every idle pooled connection dead; the first statements after the recovery
    must not fail on them one by one (CI saw "database.unavailable" twice for one `kill -9`)."""
    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    runtime = BeatContext(get_settings(), get_engine(), load_company(get_settings()), "t")
    with runtime.engine.connect() as conn:
        before = conn.scalar(text("SELECT pg_backend_pid()"))
    raw.execute("SELECT pg_terminate_backend(%s)", (before,))  # the server went away under the idle connection
    runtime.outages.failed("heartbeat", OperationalError("SELECT 1", {}, Exception("connection refused")))
    with runtime.engine.connect() as conn:  # back: a fresh connection, not the dead one from the pool
        assert conn.scalar(text("SELECT pg_backend_pid()")) != before
