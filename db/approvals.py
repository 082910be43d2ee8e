"""Approvals and the human decisions that resolve them.

Approvals are rows with a deadline; no workflow ever waits on one. A human
decision (`hq approve|reject|revise|unblock|cancel|budget`) is one transaction
that moves the issue, closes the approval and leaves a comment; the status
trigger's pg_notify wakes whoever acts next.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from config.errors import StateError, UsageError
from db.issues import add_comment, get_issue, require_status, transition
from db.models import TERMINAL_STATUSES, Agent, Approval, Issue

KINDS = ("work", "budget", "escalation")


@dataclass(frozen=True)
class Decision:
    """What a human action did, for the CLI to report."""

    issue_id: int
    from_status: str
    to_status: str
    approvals_closed: int


def open_approval(
    session: Session,
    issue_id: int,
    kind: str,
    *,
    requested_by: str,
    reason: str,
    deadline: dt.datetime,
    amount_usd: Decimal | None = None,
) -> Approval:
    """Open a pending approval, or return the one already open (one per issue and kind)."""
    statement = (
        insert(Approval)
        .values(issue_id=issue_id, kind=kind, requested_by=requested_by, reason=reason,
                deadline=deadline, amount_usd=amount_usd)
        .on_conflict_do_nothing(index_elements=["issue_id", "kind"], index_where=Approval.status == "pending")
        .returning(Approval.id)
    )
    new_id = session.scalar(statement)
    found = session.scalar(
        select(Approval).where(Approval.id == new_id) if new_id is not None
        else select(Approval).where(Approval.issue_id == issue_id, Approval.kind == kind, Approval.status == "pending")
    )
    assert found is not None
    return found


def close_approvals(
    session: Session, issue_id: int, *, kinds: tuple[str, ...], status: str, actor: str, note: str | None = None
) -> int:
    result = session.execute(
        update(Approval)
        .where(Approval.issue_id == issue_id, Approval.kind.in_(kinds), Approval.status == "pending")
        .values(status=status, decided_by=actor, decided_at=dt.datetime.now(dt.UTC), decision_note=note)
        .returning(Approval.id)
    )
    return len(result.all())


def _move(session: Session, issue: Issue, to_status: str, **changes: object) -> None:
    moved = transition(session, issue.id, issue.status, to_status, **changes)
    if moved is None:  # pragma: no cover - the row is locked, so only the trigger can refuse
        raise StateError(f"issue {issue.id} changed while we were deciding; try again")


def approve(session: Session, issue_id: int, *, actor: str, note: str | None = None) -> Decision:
    issue = get_issue(session, issue_id, lock=True)
    require_status(issue, "pending_approval", action="approve")
    _move(session, issue, "approved")
    closed = close_approvals(session, issue_id, kinds=("work",), status="approved", actor=actor, note=note)
    if note:
        add_comment(session, issue_id, note, author=actor, kind="note")
    return Decision(issue_id, "pending_approval", "approved", closed)


def reject(session: Session, issue_id: int, *, actor: str, reason: str) -> Decision:
    reason = _required_text(reason, "--reason")
    issue = get_issue(session, issue_id, lock=True)
    require_status(issue, "pending_approval", action="reject")
    _move(session, issue, "rejected")
    closed = close_approvals(session, issue_id, kinds=("work",), status="rejected", actor=actor, note=reason)
    add_comment(session, issue_id, f"Rejected: {reason}", author=actor, kind="revision")
    return Decision(issue_id, "pending_approval", "rejected", closed)


def revise(session: Session, issue_id: int, *, actor: str, note: str) -> Decision:
    note = _required_text(note, "--note")
    issue = get_issue(session, issue_id, lock=True)
    require_status(issue, "pending_approval", action="revise")
    _move(session, issue, "todo", lease_owner=None, lease_until=None)
    closed = close_approvals(session, issue_id, kinds=("work",), status="revised", actor=actor, note=note)
    add_comment(session, issue_id, note, author=actor, kind="revision")
    return Decision(issue_id, "pending_approval", "todo", closed)


def unblock(
    session: Session, issue_id: int, *, actor: str, note: str, assignee: Agent | None = None
) -> Decision:
    """Send a blocked issue back to work with guidance, resetting its attempt counters."""
    note = _required_text(note, "--note")
    issue = get_issue(session, issue_id, lock=True)
    require_status(issue, "blocked", action="unblock")
    changes: dict[str, object] = {"attempts": 0, "review_rounds": 0, "lease_owner": None, "lease_until": None}
    if assignee is not None:
        changes["assignee_id"] = assignee.id
    _move(session, issue, "todo", **changes)
    closed = close_approvals(
        session, issue_id, kinds=("escalation", "budget"), status="resolved", actor=actor, note=note
    )
    add_comment(session, issue_id, note, author=actor, kind="guidance")
    return Decision(issue_id, "blocked", "todo", closed)


def cancel(session: Session, issue_id: int, *, actor: str, reason: str | None = None) -> Decision:
    issue = get_issue(session, issue_id, lock=True)
    if issue.status in TERMINAL_STATUSES:
        raise StateError(f"cannot cancel issue {issue_id}: it is already {issue.status}")
    previous = issue.status
    # Clearing the lease makes a worker that is mid-flight lose its compare-and-set.
    _move(session, issue, "cancelled", lease_owner=None, lease_until=None)
    closed = close_approvals(session, issue_id, kinds=KINDS, status="resolved", actor=actor, note=reason)
    if reason:
        add_comment(session, issue_id, f"Cancelled: {reason}", author=actor, kind="note")
    return Decision(issue_id, previous, "cancelled", closed)


def add_budget(session: Session, issue_id: int, *, actor: str, amount_usd: Decimal) -> Decision:
    """Raise the budget; a budget-blocked issue goes back to work and its approval closes."""
    if amount_usd <= 0:
        raise UsageError("--add must be a positive amount of USD")
    issue = get_issue(session, issue_id, lock=True)
    if issue.status in TERMINAL_STATUSES:
        raise StateError(f"cannot change the budget of issue {issue_id}: it is {issue.status}")
    previous = issue.status
    new_budget = issue.budget_usd + amount_usd
    if issue.status == "blocked" and issue.blocked_reason == "budget":
        _move(session, issue, "todo", budget_usd=new_budget, attempts=0, lease_owner=None, lease_until=None)
    else:
        session.execute(update(Issue).where(Issue.id == issue_id).values(budget_usd=new_budget))
    closed = close_approvals(
        session, issue_id, kinds=("budget",), status="approved", actor=actor, note=f"+{amount_usd} USD"
    )
    add_comment(session, issue_id, f"Budget raised by {amount_usd} USD to {new_budget} USD.", author=actor,
                kind="note")
    session.expire_all()
    return Decision(issue_id, previous, get_issue(session, issue_id).status, closed)


def _required_text(value: str | None, option: str) -> str:
    if value is None or not value.strip():
        raise UsageError(f"{option} must not be empty")
    if "\x00" in value:
        raise UsageError(f"{option} must not contain NUL bytes")
    return value.strip()
