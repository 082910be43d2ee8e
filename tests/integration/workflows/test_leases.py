"""The lease keeper (workflows/lib/leases.py), through the real claim: renewals that extend the lease and say what
the run does, and a renewal that finds the lease gone stopping the run."""

from __future__ import annotations

import time

import psycopg

from config.settings import get_settings
from tests.support.processes import wait_for_progress
from tests.support.rows import new_issue, one, workflow_context
from workflows.lib.claims import claim

SHORT = {"lease_ttl_seconds": 5, "agent_lease_ttl_seconds": 5}


def _todo(raw: psycopg.Connection, slug: str) -> int:
    (agent,) = one(raw.execute("SELECT id FROM agents WHERE slug = %s", (slug,)).fetchone())
    return new_issue(raw, "Long work", status="todo", assignee_id=agent)


def _lease(raw: psycopg.Connection, issue: int) -> tuple[float, str | None, str | None]:
    """Seconds the lease has left, what the run does, and on which worker."""
    row = raw.execute(
        "SELECT extract(epoch FROM lease_until - now()), doing, lease_worker FROM issues WHERE id = %s", (issue,)
    ).fetchone()
    left, doing, worker = one(row)
    return float(left), doing, worker


def test_a_working_run_keeps_its_lease_past_the_ttl_and_says_what_it_does(db_url: str, raw: psycopg.Connection) -> None:
    from tests.support.cli import run_hq

    assert run_hq("agents", "sync").exit_code == 0
    issue = _todo(raw, "backend-engineer")
    ctx = workflow_context("backend-engineer", "execute", get_settings().model_copy(update=SHORT))
    ctx.worker = "host-a:42"
    held = claim(ctx, "claim_todo")
    assert held is not None and held.id == issue
    try:
        ctx.watch(held).doing("command test")
        written = wait_for_progress(
            lambda: _lease(raw, issue)[1:], lambda value: value == ("command test", "host-a:42")
        )
        assert written, written
        started = time.monotonic()
        # Three lease lifetimes pass while the run "works": the lease never runs out, and nobody could take it.
        while time.monotonic() - started < 3 * SHORT["lease_ttl_seconds"]:
            left, _doing, _worker = _lease(raw, issue)
            assert left > 0, "the lease ran out while its run was working"
            time.sleep(0.5)
        detail = run_hq("issue", "show", str(issue), "--json")
        assert '"doing": "command test"' in detail.stdout and "host-a:42" in detail.stdout, detail.stdout
        board = run_hq("issues")
        assert "command test for" in board.stdout and "host-a:42" in board.stdout, board.stdout
        assert not ctx.watch(held).stopped.is_set()
    finally:
        ctx.let_go()
    # Let go: renewals stop, the lease runs out as before, and nobody reads the stale activity any more.
    assert wait_for_progress(lambda: _lease(raw, issue)[0] < 0, lambda expired: expired)
    assert '"working": null' in run_hq("issue", "show", str(issue), "--json").stdout


def test_a_renewal_that_finds_the_lease_taken_stops_the_run(db_url: str, raw: psycopg.Connection) -> None:
    from tests.support.cli import run_hq

    assert run_hq("agents", "sync").exit_code == 0
    issue = _todo(raw, "backend-engineer")
    ctx = workflow_context("backend-engineer", "execute", get_settings().model_copy(update=SHORT))
    held = claim(ctx, "claim_todo")
    assert held is not None
    watch = ctx.watch(held)
    try:
        raw.execute(  # another worker reclaimed it (this one was frozen past its lease, say)
            "UPDATE issues SET lease_owner = gen_random_uuid(), lease_until = now() + interval '1 hour' WHERE id = %s",
            (issue,),
        )
        stopped = wait_for_progress(lambda: watch.stopped.is_set(), lambda value: value)
        assert stopped, stopped
    finally:
        ctx.let_go()
    left, _doing, _worker = _lease(raw, issue)
    assert left > 3000  # the new holder's lease is untouched: the keeper's renewal is a compare-and-set
