"""The outbox's rows as the notify job moves them: claimed in flight, then sent, deferred or dead.

Rows are added in the transaction of the change they announce (db/outbox.py); only the notify
job (channels/notify.py) moves them afterwards, through these two functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import update

from db.models import Notification
from db.sqlfiles import query
from db.store.executor import Executor


@dataclass(frozen=True)
class Claimed:
    """An outbox row taken for sending: ``attempts`` counts this one."""

    id: int
    event: str
    payload: dict[str, Any]
    attempts: int


def claim_notifications(db: Executor, *, limit: int, inflight_seconds: float) -> list[Claimed]:
    """Due rows, oldest first, marked in flight (claims.sql, claim_notifications)."""
    rows = db.execute(query("claims", "claim_notifications"), {"limit": limit, "inflight_seconds": inflight_seconds})
    return sorted((Claimed(r.id, r.event, dict(r.payload), r.attempts) for r in rows), key=lambda c: c.id)


def mark_notification(db: Executor, row_id: int, **values: Any) -> None:
    """What came of sending one row: its status, channel, error, next attempt or attempts given back."""
    db.execute(update(Notification).where(Notification.id == row_id).values(**values))
