"""Approvals and the human decisions that resolve them.

Approvals are rows with a deadline; no workflow ever waits on one. A human
decision (`hq approve|reject|revise|unblock|cancel|budget`) is one transaction
that moves the issue, closes the approval and leaves a comment; the status
trigger's pg_notify wakes whoever acts next.

Written on Core with the statements in db/sql/queries/decisions.sql, so these
functions take a Session or a plain Connection: the CLI runs them without
loading the ORM.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import Row

from config.errors import NotFoundError, StateError, UsageError
from config.vocabulary import APPROVAL_KINDS, TERMINAL_STATUSES
from db.sqlfiles import query
from db.store.executor import Executor
from db.store.issues import add_comment
from db.store.records import ApprovalRecord

BUDGET_COLUMN_MAX = Decimal("99999999.9999")  # issues.budget_usd is numeric(12, 4)


# What each kind of approval can be answered with, from a button or a note prompt.
APPROVAL_ACTIONS: dict[str, tuple[str, ...]] = {
    "work": ("approve", "revise", "reject"),
    "budget": ("budget", "reject"),
    "escalation": ("unblock", "cancel"),
}


class StaleApproval(StateError):
    """The approval a button was made for is decided, or was re-issued since: the button decides nothing."""

    def __init__(self, approval: ApprovalRecord, message: str) -> None:
        super().__init__(message)
        self.approval = approval


@dataclass(frozen=True)
class Decision:
    """What a human action did, for the CLI to report."""

    issue_id: int
    from_status: str
    to_status: str
    approvals_closed: int


def _locked(db: Executor, issue_id: int) -> Row[Any]:
    issue = db.execute(query("decisions", "issue_for_update"), {"issue_id": issue_id}).first()
    if issue is None:
        raise NotFoundError(f"issue {issue_id} does not exist")
    return issue


def _require(issue: Row[Any], status: str, action: str) -> None:
    if issue.status != status:
        raise StateError(f"cannot {action} issue {issue.id}: it is {issue.status}, not {status}")


def _move(db: Executor, statement: str, issue_id: int, **params: Any) -> Row[Any]:
    moved = db.execute(query("decisions", statement), {"issue_id": issue_id, **params}).first()
    if moved is None:
        raise StateError(f"issue {issue_id} changed while we were deciding; try again")  # pragma: no cover
    return moved


def close_approvals(
    db: Executor, issue_id: int, *, kinds: tuple[str, ...], status: str, actor: str, note: str | None = None
) -> int:
    closed = db.execute(
        query("decisions", "close_approvals"),
        {"issue_id": issue_id, "kinds": list(kinds), "status": status, "actor": actor, "note": note},
    ).all()
    return len(closed)


def open_approval(
    db: Executor,
    issue_id: int,
    kind: str,
    *,
    requested_by: str,
    reason: str,
    deadline: dt.datetime,
    amount_usd: Decimal | None = None,
) -> ApprovalRecord:
    """Open a pending approval, or return the one already open (one per issue and kind)."""
    row = db.execute(
        query("decisions", "open_approval"),
        {
            "issue_id": issue_id,
            "kind": kind,
            "requested_by": requested_by,
            "reason": reason,
            "deadline": deadline,
            "amount_usd": amount_usd,
        },
    ).first()
    if row is None:
        row = db.execute(query("decisions", "pending_approval"), {"issue_id": issue_id, "kind": kind}).first()
    assert row is not None
    return ApprovalRecord.of(row)


def due_approvals(db: Executor, *, limit: int) -> list[ApprovalRecord]:
    """Pending approvals whose deadline has passed, locked (SKIP LOCKED) for this transaction."""
    return [ApprovalRecord.of(row) for row in db.execute(query("claims", "due_approvals"), {"limit": limit})]


def approvals_to_remind(db: Executor, *, limit: int) -> list[tuple[ApprovalRecord, int]]:
    """Pending approvals owed a reminder, each with which one (1: half its time gone, 2: 90 %)."""
    rows = db.execute(query("claims", "approvals_to_remind"), {"limit": limit})
    return [(ApprovalRecord.of(row), int(row.reminder)) for row in rows]


def mark_reminded(db: Executor, approval: ApprovalRecord, reminder: int) -> ApprovalRecord | None:
    """Record that ``reminder`` is going out; None if another sweeper got there first (or it was decided)."""
    row = db.execute(
        query("decisions", "mark_reminded"), {"id": approval.id, "version": approval.version, "reminder": reminder}
    ).first()
    return ApprovalRecord.of(row) if row is not None else None


def expire_approval(db: Executor, approval: ApprovalRecord, *, actor: str, note: str) -> ApprovalRecord | None:
    row = db.execute(query("decisions", "expire_approval"), {"id": approval.id, "actor": actor, "note": note}).first()
    return ApprovalRecord.of(row) if row is not None else None


def remind_approval(db: Executor, approval: ApprovalRecord, *, next_deadline: dt.datetime) -> ApprovalRecord | None:
    """A passed deadline noted: one more escalation, a new deadline."""
    row = db.execute(query("decisions", "remind_approval"), {"id": approval.id, "deadline": next_deadline}).first()
    return ApprovalRecord.of(row) if row is not None else None


def approve(db: Executor, issue_id: int, *, actor: str, note: str | None = None) -> Decision:
    issue = _locked(db, issue_id)
    _require(issue, "pending_approval", "approve")
    _move(db, "approve", issue_id)
    closed = close_approvals(db, issue_id, kinds=("work",), status="approved", actor=actor, note=note)
    if note:
        add_comment(db, issue_id, _text(note, "--note"), author=actor, kind="note")
    return Decision(issue_id, "pending_approval", "approved", closed)


def reject(db: Executor, issue_id: int, *, actor: str, reason: str) -> Decision:
    reason = _text(reason, "--reason")
    issue = _locked(db, issue_id)
    _require(issue, "pending_approval", "reject")
    _move(db, "reject", issue_id)
    closed = close_approvals(db, issue_id, kinds=("work",), status="rejected", actor=actor, note=reason)
    add_comment(db, issue_id, f"Rejected: {reason}", author=actor, kind="revision")
    return Decision(issue_id, "pending_approval", "rejected", closed)


def revise(db: Executor, issue_id: int, *, actor: str, note: str) -> Decision:
    note = _text(note, "--note")
    issue = _locked(db, issue_id)
    _require(issue, "pending_approval", "revise")
    _move(db, "revise", issue_id)
    closed = close_approvals(db, issue_id, kinds=("work",), status="revised", actor=actor, note=note)
    add_comment(db, issue_id, note, author=actor, kind="revision")
    return Decision(issue_id, "pending_approval", "todo", closed)


def unblock(db: Executor, issue_id: int, *, actor: str, note: str, assignee_id: int | None = None) -> Decision:
    """Send a blocked issue back to work with guidance, resetting its attempt counters."""
    note = _text(note, "--note")
    issue = _locked(db, issue_id)
    _require(issue, "blocked", "unblock")
    moved = _move(db, "unblock", issue_id, assignee_id=assignee_id)
    closed = close_approvals(db, issue_id, kinds=("escalation", "budget"), status="resolved", actor=actor, note=note)
    add_comment(db, issue_id, note, author=actor, kind="guidance")
    return Decision(issue_id, "blocked", moved.status, closed)


def cancel(db: Executor, issue_id: int, *, actor: str, reason: str | None = None) -> Decision:
    issue = _locked(db, issue_id)
    if issue.status in TERMINAL_STATUSES:
        raise StateError(f"cannot cancel issue {issue_id}: it is already {issue.status}")
    _move(db, "cancel", issue_id, from_status=issue.status)
    closed = close_approvals(db, issue_id, kinds=APPROVAL_KINDS, status="resolved", actor=actor, note=reason)
    if reason:
        add_comment(db, issue_id, f"Cancelled: {_text(reason, '--reason')}", author=actor, kind="note")
    return Decision(issue_id, issue.status, "cancelled", closed)


def add_budget(db: Executor, issue_id: int, *, actor: str, amount_usd: Decimal, note: str | None = None) -> Decision:
    """Raise the budget; a budget-blocked issue goes back to work and its approval closes."""
    if amount_usd <= 0:
        raise UsageError("--add must be a positive amount of USD")
    issue = _locked(db, issue_id)
    if issue.status in TERMINAL_STATUSES:
        raise StateError(f"cannot change the budget of issue {issue_id}: it is {issue.status}")
    if issue.budget_usd + amount_usd > BUDGET_COLUMN_MAX:
        raise UsageError(
            f"issue {issue_id} has a budget of {issue.budget_usd} USD; adding {amount_usd} would pass "
            f"the largest budget an issue can hold, {BUDGET_COLUMN_MAX} USD"
        )
    why = f" ({_text(note, 'note')})" if note else ""
    raised = db.execute(query("decisions", "raise_budget"), {"issue_id": issue_id, "amount": amount_usd}).one()
    closed = close_approvals(
        db, issue_id, kinds=("budget",), status="approved", actor=actor, note=f"+{amount_usd} USD{why}"
    )
    add_comment(
        db, issue_id, f"Budget raised by {amount_usd} USD to {raised.budget_usd} USD{why}.", author=actor, kind="note"
    )
    return Decision(issue_id, issue.status, raised.status, closed)


def current_approval(db: Executor, approval_id: int, *, version: int) -> ApprovalRecord:
    """The approval, locked (after its issue, in the order every decision locks them), if it is still open
    at ``version``; StaleApproval when it was decided or re-issued since."""
    found = db.execute(query("decisions", "approval"), {"id": approval_id}).first()
    if found is None:
        raise NotFoundError(f"approval {approval_id} does not exist")
    _locked(db, found.issue_id)
    approval = ApprovalRecord.of(db.execute(query("decisions", "approval_for_update"), {"id": approval_id}).one())
    if approval.status != "pending":
        raise StaleApproval(approval, f"approval {approval.id} was already {approval.status} by {approval.decided_by}")
    if approval.version != version:
        raise StaleApproval(approval, f"approval {approval.id} was re-issued since; answer its latest message")
    return approval


def decide_approval(
    db: Executor,
    approval_id: int,
    *,
    version: int,
    action: str,
    actor: str,
    note: str | None = None,
    amount_usd: Decimal | None = None,
) -> Decision:
    """Answer one approval as it was when the person saw it, through the same decisions as the CLI.

    The issue is locked first, as by every decision, then the approval: a button
    pressed twice, or by two people at once, finds the approval decided the
    second time (``StaleApproval``), and a button from before a deadline
    re-issued the approval finds another version. Reject on a budget request
    stops the work: the issue is cancelled, as by `hq cancel`.
    """
    approval = current_approval(db, approval_id, version=version)
    if action not in APPROVAL_ACTIONS[approval.kind]:
        raise UsageError(f"a {approval.kind} approval cannot be answered with {action}")
    issue_id = approval.issue_id
    if action == "approve":
        return approve(db, issue_id, actor=actor, note=note)
    if action == "revise":
        return revise(db, issue_id, actor=actor, note=note or "")
    if action == "unblock":
        return unblock(db, issue_id, actor=actor, note=note or "")
    if action == "budget":
        return add_budget(db, issue_id, actor=actor, amount_usd=amount_usd or Decimal(0), note=note)
    if action == "reject" and approval.kind == "work":
        return reject(db, issue_id, actor=actor, reason=note or "")
    reason = f"budget refused: {note}" if approval.kind == "budget" and note else note
    return cancel(db, issue_id, actor=actor, reason=reason)


def _text(value: str | None, option: str) -> str:
    if value is None or not value.strip():
        raise UsageError(f"{option} must not be empty")
    if "\x00" in value:
        raise UsageError(f"{option} must not contain NUL bytes")
    return value.strip()
