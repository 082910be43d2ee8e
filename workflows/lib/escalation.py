"""The chain of command for blocked work: nearest active manager first, a human last.

Paused managers are skipped, not dead ends. Above the root, the issue waits on
a human as an `escalation` approval with a deadline.
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from agents.sync import active_chain
from db import outbox
from db.approvals import open_approval
from db.issues import add_comment, transition
from db.models import Agent, Issue

HUMAN = "human"


def next_manager(session: Session, agent_id: int | None) -> Agent | None:
    chain = active_chain(session, agent_id) if agent_id is not None else []
    return chain[0] if chain else None


def block_and_escalate(
    session: Session,
    issue: Issue,
    *,
    reason: str,
    actor: str,
    note: str,
    lease_owner: uuid.UUID | None = None,
    deadline_hours: float = 24.0,
    **extra: object,
) -> Issue | None:
    """Block ``issue`` and hand it to the nearest active manager of its owner (or to a human).

    With ``lease_owner`` this is a compare-and-set on the caller's lease; ``extra``
    columns change in the same statement.
    """
    target = next_manager(session, issue.assignee_id)
    changes: dict[str, object] = {**extra, "blocked_reason": reason, "lease_owner": None, "lease_until": None}
    if target is not None:
        changes.update(escalated_to_id=target.id, escalation_chain=[target.slug])
    else:
        changes.update(escalated_to_id=None, blocked_reason=HUMAN, escalation_chain=[HUMAN])
    moved = transition(session, issue.id, issue.status, "blocked", expect_lease=lease_owner, **changes)
    if moved is None:
        return None
    add_comment(session, issue.id, f"Blocked ({reason}): {note}", author=actor, kind="system")
    if target is None:
        _to_human(session, moved, actor=actor, reason=note, deadline_hours=deadline_hours)
    outbox.escalated(session, moved, reason=reason, note=note)
    return moved


def escalate_further(
    session: Session,
    issue: Issue,
    manager: Agent,
    *,
    actor: str,
    reason: str,
    lease_owner: uuid.UUID,
    deadline_hours: float,
) -> Issue | None:
    """Pass a blocked issue from ``manager`` up to the next active manager, or to a human."""
    target = next_manager(session, manager.id)
    chain = [*issue.escalation_chain, target.slug if target else HUMAN]
    from sqlalchemy import update

    values: dict[str, object] = {
        "escalated_to_id": target.id if target else None,
        "escalation_chain": chain,
        "lease_owner": None,
        "lease_until": None,
    }
    if target is None:
        values["blocked_reason"] = HUMAN
    row = session.execute(
        update(Issue)
        .where(Issue.id == issue.id, Issue.status == "blocked", Issue.lease_owner == lease_owner)
        .values(**values)
        .returning(Issue.id)
    ).first()
    if row is None:
        return None
    session.expire_all()
    moved = session.get(Issue, issue.id)
    assert moved is not None
    add_comment(
        session,
        issue.id,
        f"Escalated by {manager.slug} to {target.slug if target else 'a human'}: {reason}",
        author=actor,
        kind="system",
    )
    if target is None:
        _to_human(session, moved, actor=actor, reason=reason, deadline_hours=deadline_hours)
    outbox.escalated(session, moved, reason=moved.blocked_reason or "agent", note=reason)
    return moved


def _to_human(session: Session, issue: Issue, *, actor: str, reason: str, deadline_hours: float) -> None:
    approval = open_approval(
        session,
        issue.id,
        "escalation",
        requested_by=actor,
        reason=reason,
        deadline=dt.datetime.now(dt.UTC) + dt.timedelta(hours=deadline_hours),
    )
    outbox.needs_human(session, issue, approval)


def chain_slugs(session: Session, agent_id: int) -> list[str]:
    return [a.slug for a in active_chain(session, agent_id)]


def reports_of(session: Session, agent_id: int) -> list[Agent]:
    return list(
        session.scalars(
            select(Agent).where(Agent.manager_id == agent_id, Agent.status == "active").order_by(Agent.slug)
        )
    )
