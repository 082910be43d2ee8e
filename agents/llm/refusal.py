"""What a budget refusal does to the issue: it blocks, and a human is asked for money."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy.orm import Session

from db.approvals import open_approval
from db.issues import get_issue, transition

# Statuses a refused call can come from, all of which may legally go to 'blocked'.
BLOCKABLE = ("todo", "in_progress", "in_review", "deploying")


def block_for_budget(session: Session, issue_id: int, *, actor: str, needed: Decimal, deadline_hours: float) -> None:
    issue = get_issue(session, issue_id, lock=True)
    if issue.status not in BLOCKABLE:
        return  # e.g. routing a backlog issue: the caller decides without the model
    left = issue.budget_usd - issue.spent_usd - issue.reserved_usd
    blocked = transition(
        session,
        issue_id,
        issue.status,
        "blocked",
        blocked_reason="budget",
        escalated_to_id=None,
        lease_owner=None,
        lease_until=None,
    )
    if blocked is None:
        return
    approval = open_approval(
        session,
        issue_id,
        "budget",
        requested_by=actor,
        reason=f"budget exhausted: the next model call needs up to {needed:.4f} USD, {max(left, Decimal(0)):.4f} left",
        deadline=dt.datetime.now(dt.UTC) + dt.timedelta(hours=deadline_hours),
        amount_usd=needed.quantize(Decimal("0.0001")),
    )
    from db import outbox

    outbox.budget_exhausted(session, blocked, approval)
