"""notify: deliver pending outbox rows (console channel until Telegram is configured)."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from config.log import get_logger
from config.settings import Settings
from db.engine import transaction
from db.models import Notification

NAME = "notify"
log = get_logger(__name__)


def run(settings: Settings, engine: Engine) -> int:
    with transaction("system:notify", workflow=NAME, engine=engine) as session:
        rows = session.scalars(select(Notification).where(Notification.status == "pending")
                               .order_by(Notification.id).limit(100).with_for_update(skip_locked=True)).all()
        for row in rows:
            log.info("notification", notification=row.event, issue_id=row.issue_id, payload=row.payload, channel="console")
        session.execute(update(Notification).where(Notification.id.in_([r.id for r in rows]))
                        .values(status="sent", channel="console", attempts=Notification.attempts + 1))
    return len(rows)
