"""What the desk says back: the board, the queues and one issue, in a few HTML lines; decision outcomes.

Every value that came from a person or a model is HTML-escaped, as in the
notifications (channels/messages.py).
"""

from __future__ import annotations

import datetime as dt
from html import escape
from typing import Any

from db.sqlfiles import query
from db.store import Decision, get_issue
from db.store.executor import Executor
from db.store.records import ApprovalRecord

LIST_LIMIT = 10
HELP = "\n".join(
    [
        "<b>HQ commands</b>",
        "/status: the board in a few lines",
        "/approvals: what waits for a decision",
        "/blocked: blocked issues and who they wait on",
        "/issue N: one issue",
        "/approve N [note]: approve work waiting for approval",
        "/reject N reason: reject it",
        "/budget N USD: add to an issue's budget",
    ]
)

OUTCOMES = {
    "approved": "✅ Approved",
    "rejected": "❌ Rejected",
    "cancelled": "⛔ Cancelled",
}


def when(moment: dt.datetime | None = None) -> str:
    return (moment or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def outcome(action: str, decision: Decision, who: str, amount: Any = None) -> str:
    """One line: what was decided, by whom, when, and where the issue went."""
    if action == "budget":
        what = f"💵 Budget +${amount}"
    elif action == "revise":
        what = "✏️ Sent back for revision"
    elif action == "unblock":
        what = "🔓 Unblocked"
    else:
        what = OUTCOMES.get(decision.to_status, escape(decision.to_status))
    return f"<b>{what}</b> by {escape(who)}, {when()} (#{decision.issue_id} is now {escape(decision.to_status)})"


def already(approval: ApprovalRecord) -> str:
    """Why a button no longer decides: who decided its approval, or that a newer message replaced it."""
    if approval.status == "pending":
        return f"Not valid: approval {approval.id} was re-issued; use its latest message."
    return (
        f"Already decided by {approval.decided_by} ({approval.status}) "
        f"at {when(approval.decided_at) if approval.decided_at else '?'}."
    )


def status(db: Executor) -> str:
    board = db.execute(query("telegram", "board")).all()
    counts = ", ".join(f"{escape(row.status)} {row.issues}" for row in board) or "no issues yet"
    approvals = db.execute(query("telegram", "approval_count")).scalar_one()
    blocked = db.execute(query("telegram", "blocked_count")).scalar_one()
    spent = db.execute(query("telegram", "spend_today")).scalar_one()
    return "\n".join(
        [
            "<b>Board</b>",
            counts,
            f"Waiting for a decision: {approvals} · blocked: {blocked} · model spend today: ${spent:.2f}",
        ]
    )


def approvals(db: Executor) -> str:
    rows = db.execute(query("telegram", "approval_queue"), {"limit": LIST_LIMIT}).all()
    if not rows:
        return "Nothing waits for a decision."
    lines = ["<b>Waiting for a decision</b>"]
    for row in rows:
        late = " (overdue)" if row.overdue else ""
        lines.append(
            f"#{row.issue_id} {escape(str(row.title or '')[:80])}: {escape(row.kind)}, "
            f"deadline {when(row.deadline)}{late}"
        )
    lines.append("/issue N shows one with its buttons.")
    return "\n".join(lines)


def blocked(db: Executor) -> str:
    rows = db.execute(query("telegram", "blocked"), {"limit": LIST_LIMIT}).all()
    if not rows:
        return "Nothing is blocked."
    lines = ["<b>Blocked</b>"]
    for row in rows:
        lines.append(
            f"#{row.issue_id} {escape(str(row.title)[:80])}: {escape(str(row.blocked_reason))}, "
            f"waiting on {escape(str(row.waiting_on or '-'))}"
        )
    return "\n".join(lines)


def issue(db: Executor, issue_id: int, approval: ApprovalRecord | None) -> str:
    record = get_issue(db, issue_id)
    lines = [
        f"<b>#{record.id}</b> {escape(record.title)}",
        f"Status {escape(record.status)}"
        + (f" ({escape(record.blocked_reason)})" if record.blocked_reason else "")
        + f" · priority {record.priority} · spent ${record.spent_usd:.2f} of ${record.budget_usd:.2f}",
    ]
    if approval is not None:
        lines.append(f"Open {escape(approval.kind)} approval, deadline {when(approval.deadline)}.")
    return "\n".join(lines)
