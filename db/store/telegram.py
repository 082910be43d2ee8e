"""The Telegram desk's rows: the poller's lease and offset, the audit of each update, the note prompts.

Handling an update is one transaction: ``claim_update`` moves the offset past it
(only while this process holds the lease) and records it, then the decision is
made with the same functions as the CLI, then ``settle_update`` says what came
of it. A crash before the commit leaves the offset where it was, so Telegram
delivers the update again; after it, the update is recorded, so a second
delivery is recognised and changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from config.errors import StateError
from db.sqlfiles import query
from db.store.executor import Executor
from db.store.records import ApprovalRecord


class LeaseLost(StateError):
    """Another process receives the updates now: this one must stop, deciding nothing."""


@dataclass(frozen=True)
class Prompt:
    """A "reply with your note" message: which approval, version and action its reply decides."""

    approval_id: int
    version: int
    action: str
    asked_by: int
    origin_message_id: int | None
    origin_text: str | None


def take_lease(db: Executor, owner: str, *, ttl: int) -> int | None:
    """Take or renew the poller's lease; the offset to poll from, or None while another process holds it."""
    row = db.execute(query("telegram", "take_lease"), {"owner": owner, "ttl": ttl}).first()
    return int(row.update_offset) if row is not None else None


def release_lease(db: Executor, owner: str) -> None:
    db.execute(query("telegram", "release_lease"), {"owner": owner})


def poller(db: Executor) -> dict[str, Any]:
    return dict(db.execute(query("telegram", "poller")).one()._mapping)


def claim_update(
    db: Executor,
    update_id: int,
    *,
    owner: str,
    kind: str,
    chat_id: int | None,
    user_id: int | None,
    username: str | None,
) -> bool:
    """Move the offset past ``update_id`` and record it: False if it was handled before.

    Raises LeaseLost when this process no longer holds the lease.
    """
    if db.execute(query("telegram", "advance_offset"), {"owner": owner, "update_id": update_id}).first() is None:
        raise LeaseLost("another process holds the Telegram poller's lease")
    params = {
        "update_id": update_id,
        "chat_id": chat_id,
        "user_id": user_id,
        "username": (username or "")[:64] or None,
        "kind": kind,
    }
    return db.execute(query("telegram", "record_update"), params).first() is not None


def settle_update(
    db: Executor,
    update_id: int,
    outcome: str,
    *,
    action: str | None = None,
    approval_id: int | None = None,
    issue_id: int | None = None,
    detail: str = "",
) -> None:
    params = {
        "update_id": update_id,
        "outcome": outcome,
        "action": action,
        "approval_id": approval_id,
        "issue_id": issue_id,
        "detail": detail[:500],
    }
    db.execute(query("telegram", "settle_update"), params)


def add_prompt(
    db: Executor,
    *,
    chat_id: int,
    message_id: int,
    approval: ApprovalRecord,
    action: str,
    asked_by: int,
    origin_message_id: int | None,
    origin_text: str | None,
) -> None:
    db.execute(
        query("telegram", "add_prompt"),
        {
            "chat_id": chat_id,
            "message_id": message_id,
            "approval_id": approval.id,
            "version": approval.version,
            "action": action,
            "asked_by": asked_by,
            "origin_message_id": origin_message_id,
            "origin_text": origin_text,
        },
    )


def use_prompt(db: Executor, *, chat_id: int, message_id: int) -> Prompt | None:
    """The prompt ``message_id`` was, taken for this reply; None if it is no prompt or was answered already."""
    row = db.execute(query("telegram", "use_prompt"), {"chat_id": chat_id, "message_id": message_id}).first()
    if row is None:
        return None
    return Prompt(
        int(row.approval_id),
        int(row.version),
        str(row.action),
        int(row.asked_by),
        row.origin_message_id,
        row.origin_text,
    )


def approval_of_issue(db: Executor, issue_id: int) -> ApprovalRecord | None:
    """The issue's open approval (work before budget before escalation), if it has one."""
    row = db.execute(query("telegram", "approval_of_issue"), {"issue_id": issue_id}).first()
    return ApprovalRecord.of(row) if row is not None else None
