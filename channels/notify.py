"""notify: deliver the outbox, in order, to Telegram (or to the console when no bot is configured).

Delivery guarantee, precisely: each row is marked ``sending`` (its attempt
counted) in one transaction before it is sent, and ``sent`` in another right
after Telegram accepts it. A row marked ``sent`` is never sent again. If the
process dies between Telegram accepting a row and the ``sent`` commit, that row
(the one in flight) is sent once more after ``HQ_NOTIFY_INFLIGHT_SECONDS``: the
only duplicate possible. Rows go out in id order; the first one that cannot be
delivered now stops the run, so a later event never overtakes an earlier one.

Failures: ``RetryAfter`` is waited out; network errors and 5xx back off
(tenacity) and then the row is retried on a later run; after
``HQ_NOTIFY_MAX_ATTEMPTS`` it is dead-lettered. A blocked bot (403) or a
missing chat (400) dead-letters at once with the reason. A rejected token
leaves every row pending: that is a configuration problem, not the event's.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Engine
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from channels.buttons import inline_markup, keyboard, signing_key
from channels.messages import plain, render, split
from config.log import get_logger
from config.secrets import redact
from config.settings import Settings
from db.engine import transaction
from db.store import outbox

NAME = "notify"
ACTOR = "system:notify"
BATCH = 50

log = get_logger(__name__)


class DeliveryFailed(Exception):
    def __init__(self, reason: str, *, permanent: bool, stop_all: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent
        self.stop_all = stop_all


@dataclass
class NotifyReport:
    sent: list[int] = field(default_factory=list)
    dead: list[int] = field(default_factory=list)
    deferred: list[int] = field(default_factory=list)
    error: str | None = None


def _claim(engine: Engine, settings: Settings, limit: int) -> list[tuple[int, str, dict[str, Any], int]]:
    """Take due rows (pending, or `sending` rows abandoned by a dead process) and mark them in flight."""
    with transaction(ACTOR, workflow=NAME, engine=engine) as session:
        rows = outbox.claim_notifications(session, limit=limit, inflight_seconds=settings.notify_inflight_seconds)
    return [(r.id, r.event, r.payload, r.attempts) for r in rows]


def _mark(engine: Engine, row_id: int, **values: Any) -> None:
    with transaction(ACTOR, workflow=NAME, engine=engine) as session:
        outbox.mark_notification(session, row_id, **values)


def _backoff(attempts: int) -> dt.timedelta:
    return dt.timedelta(seconds=min(3600, 5 * 2 ** max(attempts - 1, 0)))


Show = Callable[[int, str, str], None]
"""Where a person reads a notification when no bot is configured: (outbox row, event, plain text)."""


def run(settings: Settings, engine: Engine, *, limit: int = BATCH, show: Show | None = None) -> NotifyReport:
    """Deliver due rows: to Telegram, or (no bot) to the log, and to ``show`` when a person is at the console."""
    claimed = _claim(engine, settings, limit)
    report = NotifyReport()
    if not claimed:
        return report
    if settings.telegram_bot_token is None or settings.telegram_chat_id is None:
        for row_id, event, payload, _attempts in claimed:
            text = render(event, payload)
            log.info("notification.console", notification=event, row=row_id, text=text)
            if show is not None:
                show(row_id, event, plain(text))
            _mark(engine, row_id, status="sent", channel="console", sent_at=dt.datetime.now(dt.UTC), last_error=None)
            report.sent.append(row_id)
        return report
    asyncio.run(_deliver_telegram(settings, engine, claimed, report))
    if report.sent or report.dead or report.error:
        log.info(
            "notify.done",
            sent=len(report.sent),
            dead=len(report.dead),
            deferred=len(report.deferred),
            error=report.error,
            workflow=NAME,
        )
    return report


async def _deliver_telegram(
    settings: Settings, engine: Engine, claimed: list[tuple[int, str, dict[str, Any], int]], report: NotifyReport
) -> None:
    from telegram import Bot  # python-telegram-bot loads only when there is something to send
    from telegram.error import InvalidToken, TelegramError

    token = settings.telegram_bot_token.get_secret_value()  # type: ignore[union-attr]
    base = f"{settings.telegram_api_base}/bot" if settings.telegram_api_base else "https://api.telegram.org/bot"
    pending = list(claimed)
    try:
        async with Bot(token, base_url=base) as bot:
            while pending:
                row_id, event, payload, attempts = pending[0]
                buttons = _markup(settings, event, payload)
                try:
                    parts = split(render(event, payload))
                    for index, part in enumerate(parts):
                        markup = buttons if index == len(parts) - 1 else None
                        await send(
                            bot, settings.telegram_chat_id or "", part, settings.notify_send_retries, markup=markup
                        )
                except DeliveryFailed as failure:
                    if failure.permanent or attempts >= settings.notify_max_attempts:
                        _mark(engine, row_id, status="dead", channel="telegram", last_error=failure.reason)
                        report.dead.append(row_id)
                        log.warning("notification.dead", row=row_id, reason=failure.reason, workflow=NAME)
                        pending.pop(0)
                        continue
                    _mark(
                        engine,
                        row_id,
                        status="pending",
                        last_error=failure.reason,
                        next_attempt_at=dt.datetime.now(dt.UTC) + _backoff(attempts),
                    )
                    report.deferred.append(row_id)
                    pending.pop(0)
                    break  # keep the order: nothing overtakes the row that could not go out
                _mark(
                    engine, row_id, status="sent", channel="telegram", sent_at=dt.datetime.now(dt.UTC), last_error=None
                )
                report.sent.append(row_id)
                pending.pop(0)
    except InvalidToken as error:
        report.error = redact(f"Telegram rejected the bot token: {error}")
    except TelegramError as error:  # getMe failed for a reason that is not the token
        report.error = redact(f"Telegram is unreachable: {error}")
    finally:
        # Rows not attempted go back as they were: their attempt does not count.
        for row_id, _event, _payload, attempts in pending:
            _mark(
                engine,
                row_id,
                status="pending",
                attempts=attempts - 1,
                next_attempt_at=dt.datetime.now(dt.UTC),
                **({"last_error": report.error} if report.error else {}),
            )
            report.deferred.append(row_id)
    if report.error:
        log.error("notify.failed", error=report.error, workflow=NAME)


def _markup(settings: Settings, event: str, payload: dict[str, Any]) -> Any:
    """Decision buttons for a message about an open approval, when someone may press them."""
    return inline_markup(keyboard(signing_key(settings), event, payload) if settings.telegram_approvers else [])


def _is_transient(error: BaseException) -> bool:
    from telegram.error import BadRequest, NetworkError, RetryAfter, TimedOut

    return isinstance(error, (RetryAfter, TimedOut)) or (
        isinstance(error, NetworkError) and not isinstance(error, BadRequest)
    )


def _wait(state: RetryCallState) -> float:
    """Honour Telegram's retry_after; otherwise back off exponentially."""
    from telegram.error import RetryAfter

    error = state.outcome.exception() if state.outcome else None
    if isinstance(error, RetryAfter):
        value = error.retry_after
        return (value.total_seconds() if isinstance(value, dt.timedelta) else float(value)) + 0.1
    return min(8.0, 0.5 * 2 ** (state.attempt_number - 1))


async def send(bot: Any, chat_id: str, text: str, retries: int, *, markup: Any = None) -> None:
    """Send one message, retrying what may pass; raise DeliveryFailed with a clear reason otherwise."""
    from telegram.constants import ParseMode
    from telegram.error import BadRequest, ChatMigrated, Forbidden, InvalidToken, TelegramError

    try:
        async for attempt in AsyncRetrying(
            stop=stop_after_attempt(retries), wait=_wait, retry=retry_if_exception(_is_transient), reraise=True
        ):
            with attempt:
                await bot.send_message(
                    chat_id=chat_id,
                    text=text,
                    parse_mode=ParseMode.HTML,
                    disable_web_page_preview=True,
                    reply_markup=markup,
                )
    except Forbidden as error:
        raise DeliveryFailed(f"the bot may not post to chat {chat_id}: {error}", permanent=True) from error
    except InvalidToken:
        raise
    except ChatMigrated as error:
        raise DeliveryFailed(
            f"chat {chat_id} moved to {error.new_chat_id}; update TELEGRAM_CHAT_ID", permanent=True
        ) from error
    except BadRequest as error:
        raise DeliveryFailed(f"Telegram refused the message for chat {chat_id}: {error}", permanent=True) from error
    except TelegramError as error:
        raise DeliveryFailed(f"Telegram did not accept the message yet: {error}", permanent=False) from error
