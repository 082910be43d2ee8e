"""`hq notifications` and `hq telegram test`: the outbox, and the channel it goes to."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from cli.arguments import NotificationId
from cli.common import JsonOption
from config.errors import ConfigError, HQError, NotFoundError, UsageError

STATUSES = ("pending", "sending", "sent", "dead")

notifications_app = typer.Typer(help="The notification outbox.", invoke_without_command=True)
telegram_app = typer.Typer(help="The Telegram channel.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(notifications_app, name="notifications")
    app.add_typer(telegram_app, name="telegram")


@notifications_app.callback()
def list_notifications(
    ctx: typer.Context,
    status: Annotated[str | None, typer.Option("--status", help="pending, sending, sent or dead.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=100_000)] = 50,
    as_json: JsonOption = False,
) -> None:
    """List outbox rows, newest first."""
    if ctx.invoked_subcommand is not None:
        return
    from sqlalchemy import select

    from db.engine import read_only
    from db.models import Notification

    if status is not None and status not in STATUSES:
        raise UsageError(f"--status: unknown status {status!r} (one of: {', '.join(STATUSES)})")
    with read_only() as session:
        statement = select(Notification).order_by(Notification.id.desc()).limit(limit)
        if status:
            statement = statement.where(Notification.status == status)
        rows: list[dict[str, Any]] = [
            {
                "id": n.id,
                "event": n.event,
                "issue_id": n.issue_id,
                "status": n.status,
                "channel": n.channel,
                "attempts": n.attempts,
                "created_at": n.created_at,
                "sent_at": n.sent_at,
                "last_error": n.last_error,
                "dedupe_key": n.dedupe_key,
            }
            for n in session.scalars(statement)
        ]
    if as_json:
        from cli.output import print_json

        print_json(rows)
        return
    from rich.table import Table

    from cli.output import console, safe, when

    table = Table(header_style="bold")
    for column in ("id", "event", "issue", "status", "channel", "tries", "created", "last error"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            str(row["id"]),
            row["event"],
            str(row["issue_id"] or "-"),
            row["status"],
            row["channel"] or "-",
            str(row["attempts"]),
            when(row["created_at"]),
            safe(row["last_error"] or "", limit=50),
        )
    console.print(table)


@notifications_app.command("retry")
def retry(
    notification_id: NotificationId = None,
    dead: Annotated[bool, typer.Option("--dead", help="Every dead-lettered row.")] = False,
) -> None:
    """Put a dead (or stuck) notification back in the queue."""
    from sqlalchemy import func, update

    from db.engine import transaction
    from db.models import Notification

    if (notification_id is None) == (not dead):
        raise UsageError("give a notification ID or --dead (not both)")
    with transaction("system:cli", workflow="cli:notifications") as session:
        statement = update(Notification).where(Notification.status.in_(("dead", "pending", "sending")))
        statement = (
            statement.where(Notification.id == notification_id)
            if notification_id
            else statement.where(Notification.status == "dead")
        )
        changed = session.execute(
            statement.values(status="pending", attempts=0, next_attempt_at=func.now(), last_error=None).returning(
                Notification.id
            )
        ).all()
    if notification_id is not None and not changed:
        raise NotFoundError(f"notification {notification_id} does not exist or was already sent")
    typer.echo(f"{len(changed)} notification(s) queued again")


@notifications_app.command("send")
def send_now() -> None:
    """Deliver what is due now (what `hq run` does every few seconds)."""
    from channels import notify
    from config.settings import get_settings
    from db.engine import get_engine

    report = notify.run(get_settings(), get_engine(), limit=1000)
    typer.echo(f"sent {len(report.sent)}, dead {len(report.dead)}, deferred {len(report.deferred)}")
    if report.error:
        raise HQError(report.error)


@telegram_app.command("test")
def telegram_test(message: Annotated[str, typer.Option("--message")] = "Heartbeat HQ test message") -> None:
    """Send a test message to TELEGRAM_CHAT_ID and say clearly what is wrong if it fails."""
    import asyncio
    from html import escape

    from channels.notify import DeliveryFailed, send
    from config.secrets import redact
    from config.settings import get_settings

    settings = get_settings()
    missing = [
        name
        for name, value in (
            ("TELEGRAM_BOT_TOKEN", settings.telegram_bot_token),
            ("TELEGRAM_CHAT_ID", settings.telegram_chat_id),
        )
        if value is None
    ]
    if missing:
        raise ConfigError(f"set {' and '.join(missing)} to use Telegram (notifications go to the console without it)")

    async def deliver() -> None:
        from telegram import Bot

        base = f"{settings.telegram_api_base}/bot" if settings.telegram_api_base else "https://api.telegram.org/bot"
        async with Bot(settings.telegram_bot_token.get_secret_value(), base_url=base) as bot:  # type: ignore[union-attr]
            await send(bot, settings.telegram_chat_id or "", escape(message), retries=2)

    from telegram.error import InvalidToken, TelegramError

    try:
        asyncio.run(deliver())
    except InvalidToken as error:
        raise ConfigError(redact(f"Telegram rejected TELEGRAM_BOT_TOKEN ({error})")) from None
    except DeliveryFailed as failure:
        raise (ConfigError if failure.permanent else HQError)(redact(failure.reason)) from None
    except TelegramError as error:
        raise HQError(redact(f"Telegram is unreachable: {error}")) from None
    typer.echo(f"sent a test message to chat {settings.telegram_chat_id}")
