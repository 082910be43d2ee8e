"""The Telegram poller: one `hq run` at a time receives updates and hands each to the desk.

It runs python-telegram-bot's ``Application`` without its ``Updater``, because
the Updater confirms updates to Telegram (by asking for the next offset) before
they are handled; a crash would lose them. Here the offset lives in the
database and moves in the same transaction as an update's decision, so each
getUpdates asks from the last committed update: one that was received but not
committed comes again, and one that was committed never does.

Only the holder of the database lease polls (Telegram itself refuses two
getUpdates at once). The lease is renewed before every long poll, which ends
well inside it; a process that stops renewing it loses it after
``HQ_TELEGRAM_LEASE_SECONDS`` and another takes over. A handler that fails
(the database away, the lease lost) stops the batch: the next poll starts again
from the committed offset.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import uuid
import warnings
from typing import Any

from sqlalchemy.engine import Engine

from channels.desk import Desk
from channels.webhook import WebhookServer, webhook_secret
from config.errors import describe
from config.log import get_logger
from config.secrets import redact
from config.settings import Settings
from db.engine import connection
from db.errors import is_outage
from db.store import telegram as desk_rows

WORKFLOW = "telegram"
ALLOWED_UPDATES = ["message", "callback_query"]
IDLE_SECONDS = 2.0  # how often a process without the lease looks again (capped by the lease)
MAX_BACKOFF_SECONDS = 30.0
DELIVER_SECONDS = 60.0  # a webhook request waits this long for its update's commit, then answers 500
RELEASE_AFTER = 5  # failures in a row (Telegram unreachable, the webhook not set) before the lease is given up
POISON_TRIES = 3  # an update that fails this often, for a reason other than an outage, is passed over

log = get_logger(__name__)


def read_update(data: dict[str, Any], bot: Any) -> Any:
    """The update as the desk handles it. One whose shape python-telegram-bot cannot read (a field missing
    or of another type) becomes a bare update with its id, which the desk records (as "other") and passes:
    refusing it would bring it back on every poll and hold up every decision after it."""
    from telegram import Update

    try:
        return Update.de_json(data, bot)
    except Exception as error:
        log.warning(
            "telegram.update_unreadable", update=data["update_id"], error=redact(describe(error)), workflow=WORKFLOW
        )
        return Update(update_id=data["update_id"])


class TelegramPoller(threading.Thread):
    def __init__(self, settings: Settings, engine: Engine, worker: str) -> None:
        super().__init__(name="hq-telegram", daemon=True)
        self.settings = settings
        self.engine = engine
        self.owner = f"{worker}:{uuid.uuid4().hex[:8]}"
        self.desk = Desk(settings, engine, self.owner)
        self.polling = threading.Event()  # set while this process holds the lease and polls
        self._stopping = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._failures = 0
        self._tries: dict[int, int] = {}  # failures of the update that is failing now
        self.webhook: WebhookServer | None = None  # while this process serves the webhook
        self._one_at_a_time = asyncio.Lock()  # webhook requests arrive on several threads

    def run(self) -> None:
        asyncio.run(self._main())

    def stop(self, timeout: float = 10.0) -> None:
        """Stop polling, give the lease back, and wait for the thread."""
        self._stopping.set()
        if self.is_alive() and self._loop is not None and self._task is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed since the check: nothing left to cancel
                self._loop.call_soon_threadsafe(self._task.cancel)
        self.join(timeout)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        try:
            while not self._stopping.is_set():
                try:
                    if not await self._serve():
                        return  # the token was refused: a configuration problem, logged; restarting cannot help
                except asyncio.CancelledError:
                    return
                except Exception as error:  # a bug: say so, give the lease up, and start over
                    log.error("telegram.crashed", error=redact(describe(error)), exc_info=error, workflow=WORKFLOW)
                    self.polling.clear()
                    self._release()
                    await asyncio.sleep(IDLE_SECONDS)
        except asyncio.CancelledError:
            pass
        finally:
            self.polling.clear()
            self._release()

    async def _serve(self) -> bool:
        """Receive until stopped; False when Telegram refused the token."""
        from telegram.error import InvalidToken
        from telegram.ext import Application

        token = self.settings.telegram_bot_token.get_secret_value()  # type: ignore[union-attr]
        base = self.settings.telegram_api_base or "https://api.telegram.org"
        application = Application.builder().token(token).base_url(f"{base}/bot").updater(None).build()
        application.add_handlers(self.desk.handlers())
        application.add_error_handler(self.desk.on_error)
        try:
            while not self._stopping.is_set():
                try:
                    await application.initialize()
                    break
                except InvalidToken as error:
                    log.error("telegram.token_rejected", error=redact(str(error)), workflow=WORKFLOW)
                    return False
                except Exception as error:
                    await self._pause("telegram.unreachable", error)
            self._failures = 0
            while not self._stopping.is_set():
                offset = self._lease()
                if offset is None:
                    self.polling.clear()
                    await asyncio.sleep(min(IDLE_SECONDS, self.settings.telegram_lease_seconds / 2))
                elif self.settings.telegram_webhook_url:
                    await self._serve_webhook(application, self.settings.telegram_webhook_url)
                else:
                    await self._poll(application, offset)
            return True
        finally:
            await application.shutdown()
            await application.bot.shutdown()  # its HTTP clients, also when initialize() failed half-way

    async def _poll(self, application: Any, offset: int) -> None:
        """One long poll from the committed offset, then each update in turn until one fails."""
        if not self.polling.is_set():
            # Polling and a webhook exclude each other at Telegram: a webhook left behind is removed.
            try:
                await application.bot.delete_webhook(drop_pending_updates=False)
            except Exception as error:
                await self._pause("telegram.unreachable", error)
                return
            self.polling.set()
            log.info("telegram.polling", owner=self.owner, workflow=WORKFLOW)
        try:
            updates = await application.bot.get_updates(
                offset=offset, timeout=self.settings.telegram_poll_seconds, allowed_updates=ALLOWED_UPDATES
            )
        except Exception as error:
            from telegram.error import Conflict, TelegramError

            if isinstance(error, TelegramError):
                if isinstance(error, Conflict):  # a webhook was set meanwhile: delete it before the next poll
                    self.polling.clear()
                await self._pause("telegram.poll_failed", error)
                return
            read = await self._read_each(application.bot, offset)  # the batch came; the library could not read it
            if read is None:
                return
            updates = read
        await self._handle(application, updates)

    async def _handle(self, application: Any, updates: Any) -> None:
        """Each update of a batch in turn, until one is not committed."""
        for update in updates:
            if not await self._deliver(application, update):
                await self._pause("telegram.update_not_handled", None, update=update.update_id)
                return  # its transaction failed: poll again from the committed offset
        self._failures = 0

    async def _read_each(self, bot: Any, offset: int) -> list[Any] | None:
        """The batch again, read raw and one update at a time (None: it could not be fetched).

        The library's get_updates refuses a whole batch when one update has a shape it cannot read, and the
        same batch would come back on every poll: polling would stall for good. Each update is read as the
        webhook reads it instead, so the unreadable one is recorded and passed and the rest are handled.
        """
        try:
            with warnings.catch_warnings():  # its hint to use get_updates, which is what just failed
                warnings.simplefilter("ignore", UserWarning)
                batch = await bot.do_api_request(
                    "getUpdates", {"offset": offset, "timeout": 0, "allowed_updates": ALLOWED_UPDATES}
                )
        except Exception as error:
            await self._pause("telegram.poll_failed", error)
            return None
        updates = []
        for data in batch if isinstance(batch, list) else []:
            if isinstance(data, dict) and type(data.get("update_id")) is int:
                updates.append(read_update(data, bot))
            else:
                log.warning("telegram.update_without_id", workflow=WORKFLOW)  # nothing to confirm or pass it by
        return updates

    async def _serve_webhook(self, application: Any, url: str) -> None:
        """Register the webhook and serve it while the lease holds; a lost lease stops the listener."""
        loop = asyncio.get_running_loop()
        secret = webhook_secret(self.desk.key)

        def deliver(data: dict[str, Any]) -> bool:
            update = read_update(data, application.bot)
            future = asyncio.run_coroutine_threadsafe(self._deliver(application, update), loop)
            try:
                return future.result(DELIVER_SECONDS)
            finally:
                future.cancel()

        try:  # listen first, so Telegram's first delivery finds the listener
            server = WebhookServer(self.settings.telegram_webhook_listen, url, secret, deliver)
        except OSError as error:
            await self._pause("telegram.webhook_failed", error)
            return
        server.start()
        try:
            try:
                await application.bot.set_webhook(
                    url, secret_token=secret, allowed_updates=ALLOWED_UPDATES, max_connections=1
                )
            except Exception as error:
                await self._pause("telegram.webhook_failed", error)
                return
            self._failures = 0
            self.webhook = server
            self.polling.set()
            log.info(
                "telegram.webhook", owner=self.owner, listen=self.settings.telegram_webhook_listen, workflow=WORKFLOW
            )
            while not self._stopping.is_set() and self._lease() is not None:  # renewed at once, then every third
                await asyncio.sleep(self.settings.telegram_lease_seconds / 3)
            if not self._stopping.is_set():
                log.warning("telegram.lease_lost", owner=self.owner, workflow=WORKFLOW)
        finally:
            self.polling.clear()
            self.webhook = None
            await asyncio.to_thread(server.stop)

    async def _deliver(self, application: Any, update: Any) -> bool:
        """Hand one update to the desk; True once it is committed (or passed over as unhandleable)."""
        async with self._one_at_a_time:
            self.desk.last_error = None
            await application.process_update(update)
            return self.desk.handled == update.update_id or self._passed_over(update)

    def _passed_over(self, update: Any) -> bool:
        """After POISON_TRIES failures that are not an outage, the update is recorded as failed and passed."""
        error = self.desk.last_error
        tries = self._tries.get(update.update_id, 0) + 1
        self._tries = {update.update_id: tries}
        if (error is not None and is_outage(error)) or tries < POISON_TRIES:
            return False
        try:
            self.desk.give_up(update, redact(describe(error)) if error else "not handled")
        except Exception as failure:
            log.error("telegram.skip_failed", error=redact(describe(failure)), workflow=WORKFLOW)
            return False
        return True

    def _lease(self) -> int | None:
        """Take or renew the lease: the offset to poll from, or None (another holds it, or the database is away)."""
        try:
            with connection("system:telegram", workflow=WORKFLOW, engine=self.engine) as db:
                return desk_rows.take_lease(db, self.owner, ttl=self.settings.telegram_lease_seconds)
        except Exception as error:
            (log.debug if is_outage(error) else log.error)(
                "telegram.lease_failed", error=redact(describe(error)), workflow=WORKFLOW
            )
            return None

    def _release(self) -> None:
        try:
            with connection("system:telegram", workflow=WORKFLOW, engine=self.engine) as db:
                desk_rows.release_lease(db, self.owner)
        except Exception as error:  # the lease simply expires
            log.warning("telegram.release_failed", error=redact(describe(error)), workflow=WORKFLOW)

    async def _pause(self, event: str, error: BaseException | None, **fields: Any) -> None:
        """Back off exponentially; the first failure of a run of them says why, the rest are quiet."""
        self._failures += 1
        level = log.warning if self._failures == 1 else log.debug
        level(
            event, error=redact(describe(error)) if error else None, attempt=self._failures, workflow=WORKFLOW, **fields
        )
        seconds = min(MAX_BACKOFF_SECONDS, 0.5 * 2 ** (self._failures - 1), self.settings.telegram_lease_seconds / 2)
        if self._failures % RELEASE_AFTER == 0:  # this host keeps failing: let another process try meanwhile
            self.polling.clear()
            self._release()
            seconds = max(seconds, 2 * IDLE_SECONDS)
        await asyncio.sleep(seconds)
