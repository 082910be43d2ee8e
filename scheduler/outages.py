"""Database outages in the log: one warning when the database goes away, one line when it is back.

During an outage every beat and system job fails the same way, many times a
second; a line for each buries the cause. The first failure is logged with
its cause, the rest are only counted, and the first success says how long it
lasted and how many failures it swallowed.

An outage also forgets the engine's idle connections (``forget``): they were
opened before it and are dead if the server restarted. Kept, the first
statements after the recovery would fail on them one by one, each a new
"outage" in the log right after the "available" line.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from config.errors import describe
from config.log import get_logger
from config.secrets import redact

log = get_logger(__name__)


class OutageLog:
    def __init__(self, forget: Callable[[], None] | None = None) -> None:
        self._forget = forget
        self._lock = threading.Lock()
        self._since: float | None = None
        self._failures = 0

    def failed(self, job: str, error: BaseException, **fields: Any) -> None:
        with self._lock:
            first = self._since is None
            if first:
                self._since = time.monotonic()
            self._failures += 1
        if first:
            log.warning("database.unavailable", job=job, error=redact(describe(error)), **fields)
            if self._forget is not None:
                self._forget()

    def succeeded(self) -> None:
        with self._lock:
            if self._since is None:
                return
            seconds, failures = time.monotonic() - self._since, self._failures
            self._since, self._failures = None, 0
        log.warning("database.available", down_seconds=round(seconds, 1), failures=failures)
