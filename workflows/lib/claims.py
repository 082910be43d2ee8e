"""Claiming work for a workflow run: the beat's agent lease, the claim, the circuit breaker.

A claim is one statement in autocommit (db/store/leases.py). What happens to the
issue afterwards is the store's moves, and on a model failure the failure
policy's (workflows/lib/failures.py).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from sqlalchemy import Connection

from config.log import get_logger
from db import store
from db.sqlfiles import query
from db.store import Claim
from db.store.leases import STATUS_CHANGING_CLAIMS
from workflows.lib.context import WorkflowContext
from workflows.lib.escalation import block_and_escalate, escalate_further

log = get_logger(__name__)


def claim(ctx: WorkflowContext, name: str, **params: Any) -> Claim | None:
    """Run claim query ``name`` for this agent; None when there is nothing to do.

    A workflow whose model call failed this beat (the failure policy gave the work
    back, refunded or counted) claims nothing more until the next beat: it would
    only fail the same way again, perhaps on the same issue.
    """
    if ctx.workflow in ctx.halted:
        return None
    run_id = uuid.uuid4()
    with ctx.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        if not _renew_agent_lease(ctx, conn):
            return None
        held = store.take(
            conn,
            name,
            agent_id=ctx.agent.id,
            run_id=run_id,
            ttl=ctx.settings.lease_ttl_seconds,
            actor=ctx.actor,
            workflow=ctx.workflow,
            **params,
        )
        if held is None:
            return None
        # A claim that moves the issue has just reset its touch count; only the others can loop.
        tripped = name not in STATUS_CHANGING_CLAIMS and _circuit_open(conn, ctx, held)
    ctx.touch(held.id)
    if tripped:
        note = (
            f"{ctx.agent.slug} touched this issue {ctx.settings.circuit_breaker_touches} "
            "times in an hour without moving it; stopping the loop."
        )
        hours = ctx.settings.approval_deadline_hours
        with ctx.tx(run_id) as session:
            if held.issue.status == "blocked":  # already blocked: blocking again would hand it back down
                escalate_further(session, held, ctx.agent, actor=ctx.actor, reason=note, deadline_hours=hours)
            else:
                block_and_escalate(
                    session,
                    held.issue,
                    held=held,
                    reason="circuit_breaker",
                    actor=ctx.actor,
                    note=note,
                    deadline_hours=hours,
                )
        log.warning("claim.circuit_breaker", issue_id=held.id, agent=ctx.agent.slug)
        return None
    ctx.claims += 1
    ctx.keep(held)  # renewed from now on, for exactly as long as the run works on it
    log.info(
        "claim.taken",
        issue_id=held.id,
        query=name,
        run_id=str(run_id),
        agent=ctx.agent.slug,
        workflow=ctx.workflow,
    )
    return held


def _renew_agent_lease(ctx: WorkflowContext, conn: Connection) -> bool:
    """Extend this beat's agent lease once a quarter of it has passed; False if another process took it."""
    ttl = ctx.settings.agent_lease_ttl_seconds
    if time.monotonic() - ctx.lease_renewed_at < ttl / 4:
        return True
    if not store.renew_agent_lease(conn, ctx.agent.id, run_id=ctx.beat_run_id, ttl=ttl):
        ctx.lease_lost = True  # another process owns this agent's heartbeat now: stop here
        log.warning("heartbeat.lease_lost", agent=ctx.agent.slug, workflow=ctx.workflow)
        return False
    ctx.lease_renewed_at = time.monotonic()
    return True


def _circuit_open(conn: Connection, ctx: WorkflowContext, held: Claim) -> bool:
    touches = (
        conn.scalar(
            query("claims", "recent_touches"),
            {"agent_id": ctx.agent.id, "since": held.issue.status_changed_at, "issue_id": held.id},
        )
        or 0
    )
    return touches >= ctx.settings.circuit_breaker_touches
