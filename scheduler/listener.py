"""Wake-ups: a dedicated LISTEN connection turns status changes into "run that agent now".

The trigger's payload already names the agents to wake, so nothing is looked up
here. The agent that caused a change is never woken for it. If the connection
drops, it reconnects with backoff; the heartbeats keep polling meanwhile, so a
lost wake-up only costs latency, never work.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable

import psycopg
from tenacity import Retrying, retry_if_exception_type, wait_exponential

from config.log import get_logger

CHANNEL = "hq_wake"

log = get_logger(__name__)


def targets(payload: str) -> list[str]:
    """The slugs a notification asks to wake, minus the actor that caused it."""
    try:
        data = json.loads(payload)
    except ValueError:
        return []
    actor = str(data.get("actor", ""))
    return [slug for slug in data.get("wake") or [] if f"agent:{slug}" != actor]


class WakeListener(threading.Thread):
    def __init__(self, conninfo: str, on_wake: Callable[[str], None], stop: threading.Event) -> None:
        super().__init__(name="hq-listener", daemon=True)
        self.conninfo = conninfo
        self.on_wake = on_wake
        self.stop = stop
        self.connected = threading.Event()

    def run(self) -> None:
        retrying = Retrying(retry=retry_if_exception_type(psycopg.OperationalError),
                            wait=wait_exponential(multiplier=0.5, max=15), sleep=self.stop.wait, reraise=False,
                            before_sleep=lambda state: log.warning("listener.reconnecting",
                                                                   attempt=state.attempt_number))
        while not self.stop.is_set():
            try:
                retrying(self._listen)
            except Exception:  # noqa: BLE001 - the listener is an optimisation; never let it die
                log.exception("listener.failed")
                self.stop.wait(1.0)

    def _listen(self) -> None:
        with psycopg.connect(self.conninfo, autocommit=True, application_name="hq-listener") as conn:
            conn.execute(f"LISTEN {CHANNEL}")
            self.connected.set()
            log.info("listener.connected")
            try:
                while not self.stop.is_set():
                    for notification in conn.notifies(timeout=1.0):
                        for slug in targets(notification.payload):
                            self.on_wake(slug)
                        if self.stop.is_set():
                            break
            finally:
                self.connected.clear()
