"""Leases: claiming an issue, moving the issue a run holds, giving it back; and the agents' heartbeat lease.

A claim is one statement (db/sql/queries/claims.sql). Every move of a held issue
is one statement in db/sql/queries/moves.sql, a compare-and-set on the lease and
the claimed status: None back means the run lost the issue and must discard its
result. Nothing here ever waits on a lock.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection

from db.sqlfiles import query
from db.store.executor import Executor
from db.store.issues import get_issue
from db.store.records import Claim, IssueRecord

# The claims that move the issue into work count an attempt as they claim it (attempts + 1).
COUNTING_CLAIMS = frozenset({"claim_todo", "claim_stitch", "reclaim_expired_work"})
# The claims that change the status, and so reset the issue's touch count for the circuit breaker.
STATUS_CHANGING_CLAIMS = frozenset({"claim_todo", "claim_stitch", "claim_deploy"})


def _issue_or_none(row: Any) -> IssueRecord | None:
    return IssueRecord.of(row) if row is not None else None


def _held(held: Claim, **params: Any) -> dict[str, Any]:
    return {"issue_id": held.id, "run_id": held.run_id, **params}


# --- claims ------------------------------------------------------------------------------


def take(
    conn: Connection,
    name: str,
    *,
    agent_id: int,
    run_id: uuid.UUID,
    ttl: int,
    actor: str,
    workflow: str,
    **params: Any,
) -> Claim | None:
    """Run claim query ``name`` for this agent, in the caller's autocommit connection."""
    row = conn.execute(
        query("claims", name),
        {
            "agent_id": agent_id,
            "run_id": run_id,
            "run_text": str(run_id),
            "ttl": ttl,
            "actor": actor,
            "workflow": workflow,
            **params,
        },
    ).first()
    return Claim(IssueRecord.of(row), run_id, counted=name in COUNTING_CLAIMS) if row is not None else None


def release(db: Executor, held: Claim, *, counts: bool) -> IssueRecord | None:
    """Give the issue back unfinished; ``counts`` when the failure is the issue's (an attempt used)."""
    return _issue_or_none(
        db.execute(
            query("claims", "release"),
            _held(held, counts=counts, counted=held.counted, from_status=held.issue.status),
        ).first()
    )


def still_held(db: Executor, held: Claim, *, lock: bool = False) -> bool:
    """Whether this run still holds the issue; with ``lock``, the row stays locked until the transaction
    ends, so the answer holds for everything the transaction then writes."""
    return get_issue(db, held.id, lock=lock).lease_owner == held.run_id


def attempts_after(held: Claim, issue: IssueRecord, *, counts: bool) -> int:
    """The attempts the issue will have used once this failure is accounted for."""
    return issue.attempts + (1 if counts and not held.counted else 0)


# --- moves of a held issue -----------------------------------------------------------------


def submit(db: Executor, held: Claim, *, reviewer_id: int | None) -> IssueRecord | None:
    return _issue_or_none(db.execute(query("moves", "submit"), _held(held, reviewer_id=reviewer_id)).first())


def finish_deploy(db: Executor, held: Claim, *, merged_sha: str | None = None) -> IssueRecord | None:
    return _issue_or_none(db.execute(query("moves", "finish_deploy"), _held(held, merged_sha=merged_sha)).first())


def return_to_todo(db: Executor, held: Claim) -> IssueRecord | None:
    return _issue_or_none(
        db.execute(query("moves", "return_to_todo"), _held(held, from_status=held.issue.status)).first()
    )


def record_review(
    db: Executor, held: Claim, to_status: str, *, score: Decimal, rounds: int, reviewed_sha: str | None = None
) -> IssueRecord | None:
    """``reviewed_sha``: the branch head a passing review saw (a git issue's), which deploy then ships."""
    params = _held(held, to_status=to_status, score=score, rounds=rounds, reviewed_sha=reviewed_sha)
    return _issue_or_none(db.execute(query("moves", "record_review"), params).first())


def route(db: Executor, held: Claim, *, assignee_id: int, to_status: str) -> IssueRecord | None:
    params = _held(held, assignee_id=assignee_id, from_status=held.issue.status, to_status=to_status)
    return _issue_or_none(db.execute(query("moves", "route"), params).first())


def resume(db: Executor, held: Claim, *, assignee_id: int | None = None) -> IssueRecord | None:
    return _issue_or_none(db.execute(query("moves", "resume"), _held(held, assignee_id=assignee_id)).first())


def _ready(db: Executor, held: Claim) -> str | None:
    """The status a blocking move starts from: a backlog issue passes through todo first (the state machine)."""
    if held.issue.status != "backlog":
        return held.issue.status
    return "todo" if db.execute(query("moves", "mark_ready"), _held(held)).first() is not None else None


def wait_on_parts(db: Executor, held: Claim, *, assignee_id: int, playbook: str) -> IssueRecord | None:
    from_status = _ready(db, held)
    if from_status is None:
        return None
    params = _held(held, assignee_id=assignee_id, playbook=playbook, from_status=from_status)
    return _issue_or_none(db.execute(query("moves", "wait_on_parts"), params).first())


def block(
    db: Executor,
    issue: IssueRecord,
    *,
    held: Claim | None,
    reason: str,
    escalated_to_id: int | None,
    escalation_chain: list[str] | None = None,
    quality_score: Decimal | None = None,
    review_rounds: int | None = None,
) -> IssueRecord | None:
    """Block ``issue``: held by ``held``, or (``held`` None, the sweeper) abandoned with an expired lease."""
    from_status = _ready(db, held) if held is not None else issue.status
    if from_status is None:
        return None
    params = {
        "issue_id": issue.id,
        "run_id": held.run_id if held is not None else None,
        "from_status": from_status,
        "reason": reason,
        "escalated_to_id": escalated_to_id,
        "escalation_chain": escalation_chain,
        "quality_score": quality_score,
        "review_rounds": review_rounds,
    }
    return _issue_or_none(db.execute(query("moves", "block"), params).first())


def escalate_further(
    db: Executor, held: Claim, *, escalated_to_id: int | None, escalation_chain: list[str], blocked_reason: str | None
) -> IssueRecord | None:
    params = _held(
        held, escalated_to_id=escalated_to_id, escalation_chain=escalation_chain, blocked_reason=blocked_reason
    )
    return _issue_or_none(db.execute(query("moves", "escalate_further"), params).first())


# --- the sweeper's moves (no lease: the rows come locked from its SKIP LOCKED scans) ---------


def expired_work(db: Executor, limit: int) -> list[IssueRecord]:
    return [IssueRecord.of(row) for row in db.execute(query("claims", "expired_work"), {"limit": limit})]


def requeue_expired(db: Executor, issue_id: int) -> IssueRecord | None:
    return _issue_or_none(db.execute(query("moves", "requeue_expired"), {"issue_id": issue_id}).first())


def waiting_parents_ready(db: Executor, limit: int) -> list[int]:
    return [row[0] for row in db.execute(query("claims", "waiting_parents_ready"), {"limit": limit})]


def parent_ready(db: Executor, issue_id: int) -> IssueRecord | None:
    return _issue_or_none(db.execute(query("moves", "parent_ready"), {"issue_id": issue_id}).first())


# --- the heartbeat lease on the agents row ---------------------------------------------------


def take_agent_lease(db: Executor, slug: str, *, run_id: uuid.UUID, ttl: int) -> int | None:
    """The agent's id when this beat took its lease; None when it is paused or another process beats it."""
    row = db.execute(query("claims", "claim_agent"), {"slug": slug, "run_id": run_id, "ttl": ttl}).first()
    return int(row.id) if row is not None else None


def renew_lease(db: Executor, held: Claim, *, ttl: int, worker: str, doing: str, fresh: bool = False) -> bool:
    """Extend the lease ``held`` is on, saying what the run is doing (since now, if ``fresh`` or it changed);
    False when the run no longer holds it."""
    params = _held(held, ttl=ttl, worker=worker[:300], doing=doing[:300], fresh=fresh)
    return db.execute(query("claims", "renew_lease"), params).first() is not None


def renew_agent_lease(db: Executor, agent_id: int, *, run_id: uuid.UUID, ttl: int) -> bool:
    """False when another process owns the agent's heartbeat now."""
    params = {"agent_id": agent_id, "run_id": run_id, "ttl": ttl}
    return db.execute(query("claims", "renew_agent"), params).first() is not None


def release_agent_lease(db: Executor, agent_id: int, *, run_id: uuid.UUID) -> None:
    db.execute(query("claims", "release_agent"), {"agent_id": agent_id, "run_id": run_id})
