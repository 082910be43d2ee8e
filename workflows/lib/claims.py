"""Claim, release and finish: the lease discipline every workflow follows.

A claim is one statement (db/sql/queries/claims.sql). Finishing is a
compare-and-set on ``lease_owner``: if another process took the issue over (our
lease expired, a human cancelled it), zero rows change and the result is
discarded. Nothing here ever waits.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Row
from sqlalchemy.orm import Session

from config.log import get_logger
from db.issues import get_issue, transition
from db.models import Issue
from db.sqlfiles import query
from workflows.lib.context import WorkflowContext

log = get_logger(__name__)

# A lease must outlive the longest run, or a slow but healthy worker would lose it.
LEASE_MARGIN_SECONDS = 5


@dataclass(frozen=True)
class Claim:
    issue: Row[Any]  # the issue as claimed (read-only)
    run_id: uuid.UUID

    @property
    def id(self) -> int:
        return self.issue.id


def lease_ttl(ctx: WorkflowContext) -> int:
    return max(ctx.settings.lease_ttl_seconds, ctx.settings.workflow_max_seconds + LEASE_MARGIN_SECONDS)


def claim(ctx: WorkflowContext, name: str, **params: Any) -> Claim | None:
    """Run claim query ``name`` for this agent; None when there is nothing to do.

    The claim is one statement in autocommit (one round trip); the issue comes
    back as a read-only row. A workflow that this beat already gave work back
    with a refund (the model or a monthly budget failed, not the issue) claims
    nothing more until the next beat: it would only fail the same way again.
    """
    if ctx.workflow in ctx.degraded:
        return None
    run_id = uuid.uuid4()
    with ctx.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        if not _renew_agent_lease(ctx, conn):
            return None
        issue = conn.execute(
            query("claims", name),
            {
                "agent_id": ctx.agent.id,
                "run_id": run_id,
                "run_text": str(run_id),
                "ttl": lease_ttl(ctx),
                "actor": ctx.actor,
                "workflow": ctx.workflow,
                **params,
            },
        ).first()
        if issue is None:
            return None
        # A claim that moves the issue has just reset its touch count; only the others can loop.
        tripped = name not in STATUS_CHANGING and _circuit_open(conn, ctx, issue)
    if tripped:
        from workflows.lib.escalation import block_and_escalate

        with ctx.tx(run_id) as session:
            block_and_escalate(
                session,
                get_issue(session, issue.id),
                reason="circuit_breaker",
                actor=ctx.actor,
                lease_owner=run_id,
                note=f"{ctx.agent.slug} touched this issue {ctx.settings.circuit_breaker_touches} "
                "times in an hour without moving it; stopping the loop.",
            )
        log.warning("claim.circuit_breaker", issue_id=issue.id, agent=ctx.agent.slug)
        ctx.touch(issue.id)
        return None
    ctx.claims += 1
    ctx.touch(issue.id)
    log.info(
        "claim.taken", issue_id=issue.id, query=name, run_id=str(run_id), agent=ctx.agent.slug, workflow=ctx.workflow
    )
    return Claim(issue, run_id)


STATUS_CHANGING = frozenset({"claim_todo", "claim_stitch", "claim_deploy"})


def _renew_agent_lease(ctx: WorkflowContext, conn: Connection) -> bool:
    """Extend this beat's agent lease once a quarter of it has passed; False if another process took it."""
    ttl = ctx.settings.agent_lease_ttl_seconds
    if time.monotonic() - ctx.lease_renewed_at < ttl / 4:
        return True
    renewed = conn.execute(
        query("claims", "renew_agent"), {"agent_id": ctx.agent.id, "run_id": ctx.beat_run_id, "ttl": ttl}
    ).first()
    if renewed is None:
        ctx.lease_lost = True  # another process owns this agent's heartbeat now: stop here
        log.warning("heartbeat.lease_lost", agent=ctx.agent.slug, workflow=ctx.workflow)
        return False
    ctx.lease_renewed_at = time.monotonic()
    return True


def _circuit_open(conn: Connection, ctx: WorkflowContext, issue: Row[Any]) -> bool:
    touches = (
        conn.scalar(
            query("claims", "recent_touches"),
            {"agent_id": ctx.agent.id, "since": issue.status_changed_at, "issue_id": issue.id},
        )
        or 0
    )
    return touches >= ctx.settings.circuit_breaker_touches


def release(ctx: WorkflowContext, held: Claim, *, refund: bool) -> bool:
    """Give the issue back unfinished; ``refund`` when the failure was not the issue's fault.

    A counted failure on an issue that has used all its attempts blocks and
    escalates it instead (the poison-pill guard).
    """
    with ctx.tx(held.run_id) as session:
        issue = get_issue(session, held.id, lock=True)
        if issue.lease_owner != held.run_id:
            released = False
        elif not refund and issue.status == "in_progress" and issue.attempts >= issue.max_attempts:
            from workflows.lib.escalation import block_and_escalate

            released = (
                block_and_escalate(
                    session,
                    issue,
                    reason="max_attempts",
                    actor=ctx.actor,
                    lease_owner=held.run_id,
                    note=f"gave up after {issue.attempts} attempts",
                    deadline_hours=ctx.settings.approval_deadline_hours,
                )
                is not None
            )
        else:
            released = (
                session.execute(
                    query("claims", "release"), {"issue_id": held.id, "run_id": held.run_id, "refund": refund}
                ).first()
                is not None
            )
    if refund:
        ctx.degraded.add(ctx.workflow)
    log.info(
        "claim.released",
        issue_id=held.id,
        refund=refund,
        lost=not released,
        run_id=str(held.run_id),
        agent=ctx.agent.slug,
        workflow=ctx.workflow,
    )
    return released


def finish(session: Session, held: Claim, to_status: str, **changes: Any) -> Issue | None:
    """Compare-and-set from the claimed status, only while we still hold the lease; clears the lease."""
    return transition(
        session,
        held.id,
        held.issue.status,
        to_status,
        expect_lease=held.run_id,
        **{"lease_owner": None, "lease_until": None, **changes},
    )


def update_held(session: Session, held: Claim, **changes: Any) -> bool:
    """Change columns (not the status) of an issue we hold; False if the lease was lost."""
    from sqlalchemy import update

    row = session.execute(
        update(Issue)
        .where(Issue.id == held.id, Issue.lease_owner == held.run_id)
        .values(lease_owner=None, lease_until=None, **changes)
        .returning(Issue.id)
    ).first()
    return row is not None


def give_back(ctx: WorkflowContext, session: Session, held: Claim, why: str) -> Issue | None:
    """A failed run that counts: back to `todo` with the reason, or blocked once its attempts are used up."""
    from db.issues import add_comment
    from workflows.lib.escalation import block_and_escalate

    issue = get_issue(session, held.id)
    if issue.attempts >= issue.max_attempts:
        return block_and_escalate(
            session,
            issue,
            reason="max_attempts",
            actor=ctx.actor,
            lease_owner=held.run_id,
            note=f"{why} (attempt {issue.attempts} of {issue.max_attempts})",
            deadline_hours=ctx.settings.approval_deadline_hours,
        )
    moved = finish(session, held, "todo")
    if moved is not None:
        add_comment(session, held.id, why, author=ctx.actor, kind="failure")
    return moved
