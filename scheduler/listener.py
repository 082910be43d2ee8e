"""Wake-ups: a dedicated LISTEN connection turns status changes into "run that agent now".

The trigger's payload already names the agents to wake, so nothing is looked up
here. The agent that caused a change is never woken for it. If the connection
drops, it reconnects with backoff; the heartbeats keep polling meanwhile, so a
lost wake-up only costs latency, never work.

Any role that can connect may NOTIFY hq_wake (PostgreSQL has no privilege for
NOTIFY), so a payload is a hint and nothing more: it is parsed strictly, a
malformed one is ignored (logged once per kind of problem, never once per
message) and never costs the connection, and a woken agent still acts only on
what its claim query finds in the rows.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable

import psycopg
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_when_event_set, wait_exponential

from config.errors import describe
from config.log import get_logger
from config.secrets import redact
from config.vocabulary import SWEEP_JOB

CHANNEL = "hq_wake"
# A roster slug (agents/roster.py), or the sweeper job the trigger wakes for parents waiting on sub-issues.
_TARGET = re.compile(r"[a-z][a-z0-9-]{0,62}|" + re.escape(SWEEP_JOB))

log = get_logger(__name__)


def parse(payload: str) -> tuple[list[str], str | None]:
    """(slugs to wake, None) for a well-formed payload, else ([], the kind of problem). Never raises."""
    try:
        data = json.loads(payload)
    except (ValueError, RecursionError):
        return [], "not_json"
    if not isinstance(data, dict):
        return [], "not_an_object"
    actor = data.get("actor")
    if actor is not None and not isinstance(actor, str):
        return [], "actor_not_a_string"
    wake = data.get("wake")
    if wake is None:
        return [], None
    if not isinstance(wake, list):
        return [], "wake_not_a_list"
    if not all(isinstance(slug, str) and _TARGET.fullmatch(slug) for slug in wake):
        return [], "wake_not_slugs"
    return [slug for slug in dict.fromkeys(wake) if f"agent:{slug}" != actor], None


def targets(payload: str) -> list[str]:
    """The slugs a notification asks to wake, minus the actor that caused it ([] if malformed)."""
    return parse(payload)[0]


class WakeListener(threading.Thread):
    def __init__(self, conninfo: str, on_wake: Callable[[str], None], stop: threading.Event) -> None:
        super().__init__(name="hq-listener", daemon=True)
        self.conninfo = conninfo
        self.on_wake = on_wake
        self.stop = stop
        self.connected = threading.Event()
        self._outage_logged = False
        self._reported: set[str] = set()  # kinds of problem already logged: a flood logs each once

    def _report(self, problem: str, **fields: object) -> None:
        if problem not in self._reported:
            self._reported.add(problem)
            log.warning(
                "listener.bad_payload",
                problem=problem,
                note="ignored; later ones of this kind are not logged",
                **fields,
            )

    def handle(self, payload: str) -> None:
        """Wake whatever a well-formed payload names; ignore anything else. Never raises."""
        slugs, problem = parse(payload)
        if problem is not None:
            self._report(problem, payload=payload[:80], length=len(payload))
        for slug in slugs:
            try:
                self.on_wake(slug)
            except Exception as error:
                self._report(f"wake_failed:{type(error).__name__}", agent=slug, error=str(error)[:200])

    def _sleep(self, seconds: float) -> None:
        """Back off between reconnects, but wake at once on shutdown."""
        self.stop.wait(seconds)

    def run(self) -> None:
        retrying = Retrying(
            retry=retry_if_exception_type(psycopg.OperationalError),
            wait=wait_exponential(multiplier=0.5, max=15),
            sleep=self._sleep,
            stop=stop_when_event_set(self.stop),
            before_sleep=self._reconnecting,
            reraise=True,
        )
        while not self.stop.is_set():
            try:
                retrying(self._listen)
            except psycopg.OperationalError:
                return  # asked to stop while the database was away
            except Exception:
                log.exception("listener.failed")
                self.stop.wait(1.0)

    def _reconnecting(self, state: RetryCallState) -> None:
        """The first failure of each outage says why; the retries after it are quiet."""
        error = state.outcome.exception() if state.outcome is not None else None
        level = log.debug if self._outage_logged else log.warning
        self._outage_logged = True
        level("listener.reconnecting", attempt=state.attempt_number, error=redact(describe(error)) if error else None)

    def _listen(self) -> None:
        with psycopg.connect(self.conninfo, autocommit=True, application_name="hq-listener") as conn:
            conn.execute(f"LISTEN {CHANNEL}")
            self.connected.set()
            self._outage_logged = False
            log.info("listener.connected")
            try:
                while not self.stop.is_set():
                    for notification in conn.notifies(timeout=1.0):
                        self.handle(notification.payload)
                        if self.stop.is_set():
                            break
            finally:
                self.connected.clear()
