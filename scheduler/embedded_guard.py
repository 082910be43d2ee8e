"""Keep hq's own embedded PostgreSQL up while `hq run` runs: a crashed server is started again.

Only when hq owns the server (no DATABASE_URL): an external database is its
operator's to run. The check is a read of ``postmaster.pid`` and a signal 0,
cheap enough to run every second. An outage logs one line when it starts and
one when it ends; restarts back off (1 s, doubling, at most 30 s), since right
after a ``kill -9`` the old backends may still hold the shared memory and the
first tries fail.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from config.errors import describe
from config.log import get_logger
from config.secrets import redact
from db.embedded import ensure_server, pgdata_dir, running_server

FIRST_RETRY_SECONDS = 1.0
MAX_RETRY_SECONDS = 30.0

log = get_logger(__name__)


class EmbeddedGuard:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._lock = threading.Lock()
        self._down_since: float | None = None
        self._next_try = 0.0
        self._delay = FIRST_RETRY_SECONDS
        self._tries = 0

    def check(self) -> None:
        """One look (an APScheduler job): restart the server if it is down and a try is due."""
        if not self._lock.acquire(blocking=False):
            return  # a restart is in progress
        try:
            self._check()
        finally:
            self._lock.release()

    def _check(self) -> None:
        now = time.monotonic()
        if running_server(pgdata_dir(self.data_dir)) is not None:
            self._recovered(now)
            return
        if self._down_since is None:
            self._down_since, self._next_try = now, now
            log.warning(
                "embedded_postgres.down", pgdata=str(pgdata_dir(self.data_dir)), action="restarting it, with backoff"
            )
        if now < self._next_try:
            return
        self._tries += 1
        try:
            ensure_server(self.data_dir)
        except Exception as error:
            self._next_try = now + self._delay
            self._delay = min(self._delay * 2, MAX_RETRY_SECONDS)
            log.debug("embedded_postgres.restart_failed", error=redact(describe(error)), tries=self._tries)
            return
        self._recovered(time.monotonic())

    def _recovered(self, now: float) -> None:
        if self._down_since is not None:
            log.warning("embedded_postgres.restarted", down_seconds=round(now - self._down_since, 1), tries=self._tries)
        self._down_since, self._delay, self._tries = None, FIRST_RETRY_SECONDS, 0
