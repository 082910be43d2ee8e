"""The chain of command for blocked work: nearest active manager first, a human last.

Paused managers are skipped, not dead ends. Above the root, the issue waits on
a human as an `escalation` approval with a deadline.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy.orm import Session

from db import outbox, store
from db.store import AgentRecord, Claim, IssueRecord

HUMAN = "human"


def block_and_escalate(
    db: Session,
    issue: IssueRecord,
    *,
    held: Claim | None,
    reason: str,
    actor: str,
    note: str,
    deadline_hours: float,
    quality_score: Decimal | None = None,
    review_rounds: int | None = None,
) -> IssueRecord | None:
    """Block ``issue`` and hand it to the nearest active manager of its owner (or to a human).

    ``held`` is the caller's claim (the compare-and-set); None for the sweeper, which
    blocks only work whose lease has expired.
    """
    target = store.next_manager(db, issue.assignee_id)
    moved = store.block(
        db,
        issue,
        held=held,
        reason=reason if target is not None else HUMAN,
        escalated_to_id=target.id if target is not None else None,
        escalation_chain=[target.slug if target is not None else HUMAN],
        quality_score=quality_score,
        review_rounds=review_rounds,
    )
    if moved is None:
        return None
    store.add_comment(db, issue.id, f"Blocked ({reason}): {note}", author=actor, kind="system")
    if target is None:
        _to_human(db, moved, actor=actor, reason=note, deadline_hours=deadline_hours)
    outbox.escalated(db, moved, reason=reason, note=note)
    return moved


def escalate_further(
    db: Session, held: Claim, manager: AgentRecord, *, actor: str, reason: str, deadline_hours: float
) -> IssueRecord | None:
    """Pass a blocked issue from ``manager`` up to the next active manager, or to a human."""
    target = store.next_manager(db, manager.id)
    moved = store.escalate_further(
        db,
        held,
        escalated_to_id=target.id if target else None,
        escalation_chain=[*held.issue.escalation_chain, target.slug if target else HUMAN],
        blocked_reason=None if target else HUMAN,
    )
    if moved is None:
        return None
    store.add_comment(
        db,
        held.id,
        f"Escalated by {manager.slug} to {target.slug if target else 'a human'}: {reason}",
        author=actor,
        kind="system",
    )
    if target is None:
        _to_human(db, moved, actor=actor, reason=reason, deadline_hours=deadline_hours)
    outbox.escalated(db, moved, reason=moved.blocked_reason or "agent", note=reason)
    return moved


def _to_human(db: Session, issue: IssueRecord, *, actor: str, reason: str, deadline_hours: float) -> None:
    approval = store.open_approval(
        db,
        issue.id,
        "escalation",
        requested_by=actor,
        reason=reason,
        deadline=dt.datetime.now(dt.UTC) + dt.timedelta(hours=deadline_hours),
    )
    outbox.needs_human(db, issue, approval)
