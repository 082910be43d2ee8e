"""The sweeper: dead workers' leases, the poison-pill guard, approval deadlines, waiting parents."""

from __future__ import annotations

import uuid
from decimal import Decimal

import psycopg
import pytest

from config.settings import get_settings
from db.engine import get_engine
from scheduler.company import load_company
from tests.support.rows import events, force_status, new_issue, one, status_of
from workflows import sweep


@pytest.fixture()
def ids(db_url: str, raw: psycopg.Connection) -> dict[str, int]:
    load_company(get_settings())
    return dict(raw.execute("SELECT slug, id FROM agents").fetchall())


def run_sweep() -> sweep.SweepReport:
    return sweep.run(get_settings(), get_engine())


def test_expired_lease_returns_work_and_exhausted_work_escalates(ids: dict[str, int], raw: psycopg.Connection) -> None:
    alive = new_issue(raw, "crashed once", status="todo", assignee_id=ids["backend-engineer"])
    dead = new_issue(raw, "crashed thrice", status="todo", assignee_id=ids["backend-engineer"])
    for issue, attempts in ((alive, 1), (dead, 3)):
        force_status(raw, issue, "in_progress", attempts=attempts, lease_owner=str(uuid.uuid4()))
        raw.execute("UPDATE issues SET lease_until = now() - interval '1 minute' WHERE id = %s", (issue,))
    report = run_sweep()
    assert report.leases_expired == [alive] and report.exhausted == [dead]
    assert raw.execute("SELECT status, lease_owner FROM issues WHERE id = %s", (alive,)).fetchone() == ("todo", None)
    row = raw.execute(
        "SELECT i.status, blocked_reason, a.slug, escalation_chain FROM issues i "
        "JOIN agents a ON a.id = i.escalated_to_id WHERE i.id = %s",
        (dead,),
    ).fetchone()
    assert row == ("blocked", "max_attempts", "eng-lead-platform", ["eng-lead-platform"])
    assert events(raw, dead)[-1] == ("in_progress", "blocked")
    assert raw.execute(
        "SELECT actor FROM issue_events WHERE issue_id = %s ORDER BY id DESC LIMIT 1", (dead,)
    ).fetchone() == ("system:sweeper",)


def test_escalation_skips_a_paused_manager(ids: dict[str, int], raw: psycopg.Connection) -> None:
    raw.execute("UPDATE agents SET status = 'paused', paused_reason = 'human' WHERE slug = 'eng-lead-platform'")
    issue = new_issue(raw, "crashed thrice", status="todo", assignee_id=ids["backend-engineer"])
    force_status(raw, issue, "in_progress", attempts=3, lease_owner=str(uuid.uuid4()))
    raw.execute("UPDATE issues SET lease_until = now() - interval '1 minute' WHERE id = %s", (issue,))
    run_sweep()
    assert raw.execute("SELECT escalated_to_id FROM issues WHERE id = %s", (issue,)).fetchone() == (
        ids["vp-engineering"],
    )


def test_unsettled_reservations_are_charged_in_full(ids: dict[str, int], raw: psycopg.Connection) -> None:
    """A call whose process died may have happened: its worst case is charged, never forgotten."""
    issue = new_issue(raw, status="todo", budget_usd=1)
    raw.execute("UPDATE issues SET reserved_usd = 0.4 WHERE id = %s", (issue,))
    raw.execute(
        "INSERT INTO budget_accounts (scope, period, limit_usd, reserved_usd) "
        "VALUES ('company', date_trunc('month', now())::date, 100, 0.4)"
    )
    raw.execute(
        "INSERT INTO budget_reservations (id, run_id, issue_id, period, amount_usd, expires_at) VALUES "
        "(gen_random_uuid(), gen_random_uuid(), %s, date_trunc('month', now())::date, 0.4, now())",
        (issue,),
    )
    assert run_sweep().reservations_abandoned == 1
    assert raw.execute("SELECT reserved_usd, spent_usd FROM issues WHERE id = %s", (issue,)).fetchone() == (
        0,
        Decimal("0.4"),
    )
    assert raw.execute("SELECT reserved_usd, spent_usd FROM budget_accounts").fetchone() == (0, Decimal("0.4"))
    assert raw.execute("SELECT outcome, cost_usd FROM llm_calls WHERE issue_id = %s", (issue,)).fetchone() == (
        "abandoned",
        Decimal("0.4"),
    )
    assert run_sweep().reservations_abandoned == 0


@pytest.mark.parametrize(("kind", "second"), [("work", "passed"), ("budget", "expire"), ("escalation", "escalate")])
def test_approval_deadline_policy(ids: dict[str, int], raw: psycopg.Connection, kind: str, second: str) -> None:
    issue = new_issue(raw, status="todo")
    approval = one(
        raw.execute(
            "INSERT INTO approvals (issue_id, kind, requested_by, deadline) "
            "VALUES (%s, %s, 'agent:x', now() - interval '1 minute') RETURNING id",
            (issue, kind),
        ).fetchone()
    )[0]
    run_sweep()
    reminded = raw.execute(
        "SELECT status, reminded_at IS NOT NULL, deadline > now() FROM approvals WHERE id = %s", (approval,)
    ).fetchone()
    assert reminded == ("pending", True, True)
    raw.execute("UPDATE approvals SET deadline = now() - interval '1 minute' WHERE id = %s", (approval,))
    run_sweep()
    status = one(raw.execute("SELECT status FROM approvals WHERE id = %s", (approval,)).fetchone())[0]
    assert status == ("expired" if second == "expire" else "pending")
    stages = [
        r[0]
        for r in raw.execute(
            "SELECT payload->>'stage' FROM notifications WHERE event = 'approval_deadline' ORDER BY id"
        )
    ]
    assert stages == ["passed", second]
    run_sweep()  # nothing new is due: nothing is enqueued twice
    assert raw.execute("SELECT count(*) FROM notifications WHERE event = 'approval_deadline'").fetchone() == (2,)


def test_parents_come_back_to_their_owner_when_children_finish(ids: dict[str, int], raw: psycopg.Connection) -> None:
    parent = new_issue(raw, "the feature", status="todo", assignee_id=ids["eng-lead-web"], playbook="split")
    child = new_issue(raw, "a part", status="todo", assignee_id=ids["frontend-engineer"], parent_id=parent)
    raw.execute("INSERT INTO issue_dependencies VALUES (%s, %s)", (parent, child))
    raw.execute("UPDATE issues SET status = 'blocked', blocked_reason = 'waiting' WHERE id = %s", (parent,))
    assert run_sweep().parents_ready == []
    force_status(raw, child, "deploying")
    raw.execute("UPDATE issues SET status = 'done' WHERE id = %s", (child,))
    assert run_sweep().parents_ready == [parent]
    assert status_of(raw, parent) == "todo"


def test_circuit_breaker_stops_an_agent_looping_on_one_issue(ids: dict[str, int], raw: psycopg.Connection) -> None:
    from scheduler.heartbeat import BeatContext, run_beat

    issue = new_issue(raw, "going nowhere", status="todo", assignee_id=ids["backend-engineer"])
    force_status(raw, issue, "in_review", reviewer_id=ids["eng-lead-platform"])
    for _ in range(get_settings().circuit_breaker_touches):
        raw.execute(
            "INSERT INTO heartbeat_runs (run_id, agent_id, worker, started_at, finished_at, outcome, "
            "issues_touched) VALUES (gen_random_uuid(), %s, 'test', now(), now(), 'ok', ARRAY[%s]::bigint[])",
            (ids["eng-lead-platform"], issue),
        )
    roster = load_company(get_settings())
    run_beat("eng-lead-platform", BeatContext(get_settings(), get_engine(), roster, "test"))
    row = raw.execute("SELECT status, blocked_reason, escalated_to_id FROM issues WHERE id = %s", (issue,)).fetchone()
    assert row == ("blocked", "circuit_breaker", ids["eng-lead-platform"])


def test_open_approvals_are_reminded_at_half_and_at_ninety_percent_once_each(
    ids: dict[str, int], raw: psycopg.Connection
) -> None:
    def stages() -> list[tuple[str, int]]:
        return raw.execute(
            "SELECT payload->>'stage', (payload->>'approval_version')::int FROM notifications "
            "WHERE event = 'approval_deadline' ORDER BY id"
        ).fetchall()

    def given(approval: int, *, elapsed_hours: float, left_hours: float) -> None:
        raw.execute(
            "UPDATE approvals SET created_at = now() - make_interval(secs => %s), "
            "deadline = now() + make_interval(secs => %s) WHERE id = %s",
            (elapsed_hours * 3600, left_hours * 3600, approval),
        )

    issue = new_issue(raw, status="todo")
    approval = one(
        raw.execute(
            "INSERT INTO approvals (issue_id, kind, requested_by, deadline) "
            "VALUES (%s, 'work', 'agent:x', now() + interval '24 hours') RETURNING id",
            (issue,),
        ).fetchone()
    )[0]
    given(approval, elapsed_hours=11, left_hours=13)  # 46 %: nothing yet
    run_sweep()
    assert stages() == []
    given(approval, elapsed_hours=13, left_hours=11)  # 54 %
    run_sweep()
    run_sweep()
    assert stages() == [("half", 0)]
    given(approval, elapsed_hours=22, left_hours=2)  # 92 %
    run_sweep()
    run_sweep()
    assert stages() == [("half", 0), ("ninety", 0)]
    # The deadline passes: the policy re-issues the approval, and its reminders start over.
    given(approval, elapsed_hours=24, left_hours=-0.01)
    run_sweep()
    assert stages()[-1] == ("passed", 1)
    raw.execute(
        "UPDATE approvals SET reminded_at = now() - interval '23 hours', deadline = now() + interval '1 hour' "
        "WHERE id = %s",
        (approval,),
    )
    run_sweep()  # first seen past 90 % of its new time: the second reminder only
    assert stages()[-1] == ("ninety", 1) and len(stages()) == 4


def test_a_decided_approval_is_not_reminded(ids: dict[str, int], raw: psycopg.Connection) -> None:
    issue = new_issue(raw, status="todo")
    raw.execute(
        "INSERT INTO approvals (issue_id, kind, requested_by, deadline, created_at, status, decided_at, decided_by) "
        "VALUES (%s, 'work', 'agent:x', now() + interval '1 hour', now() - interval '23 hours', 'approved', now(), "
        "'human:x')",
        (issue,),
    )
    run_sweep()
    assert raw.execute("SELECT count(*) FROM notifications WHERE event = 'approval_deadline'").fetchone() == (0,)
