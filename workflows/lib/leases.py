"""The lease keeper: a working run's issue lease, and its beat's agent lease, live exactly as long as the work.

A claim takes an issue for HQ_LEASE_TTL_SECONDS. While the run works on it (a project command, a Claude Code
session, a model call, a long tool loop) a thread of its own renews the lease every third of that, a
compare-and-set on the lease the run holds (db/sql/queries/claims.sql ``renew_lease``), and writes on the
row what the run is doing, since when and on which host (`hq issues`, `hq issue show`). Nothing else
bounds a run by the lease any more: a command has its own timeout, a runtime its own limit
(projects/watch.py).

A renewal that finds the lease gone (it expired while the process was frozen or the database away, and
another worker took the issue) sets the run's ``Watch.stopped``: the running command is killed, the
runtime stops between steps, and the run pushes, comments and moves nothing. A process killed with
``kill -9`` renews nothing, so another host takes the issue back within one TTL, as before.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable

from sqlalchemy.engine import Engine

from config.errors import describe
from config.log import get_logger
from config.secrets import redact
from config.settings import Settings
from db import store
from db.errors import is_outage
from db.store import AgentRecord, Claim
from projects.watch import Watch

MIN_INTERVAL_SECONDS = 0.5
STOP_WAIT_SECONDS = 5.0

log = get_logger(__name__)


def renewal_interval(settings: Settings) -> float:
    """How often a working run renews: a third of the shorter lease, so two renewals may fail before it lapses."""
    return max(MIN_INTERVAL_SECONDS, min(settings.lease_ttl_seconds, settings.agent_lease_ttl_seconds) / 3)


class LeaseKeeper:
    """Renews one claim's lease (and the beat's agent lease) until stopped or the lease is found gone."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        held: Claim,
        *,
        agent: AgentRecord,
        beat_run_id: uuid.UUID,
        workflow: str,
        worker: str,
        agent_lease_lost: Callable[[], None],
    ) -> None:
        self.held = held
        self.watch = Watch(report=self._report)
        self._engine = engine
        self._agent_id, self._beat_run_id, self._worker = agent.id, beat_run_id, worker
        self._agent_lease_lost = agent_lease_lost
        self._ttl = settings.lease_ttl_seconds
        self._agent_ttl = settings.agent_lease_ttl_seconds
        self.interval = renewal_interval(settings)
        self._fields = {"issue_id": held.id, "run_id": str(held.run_id), "agent": agent.slug, "workflow": workflow}
        self._doing = workflow
        self._fresh = True
        self._wake = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._keep, name=f"lease-{held.id}", daemon=True)

    def start(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def stop(self) -> None:
        """The run is done with the issue (moved, released, or lost): no more renewals."""
        self._done.set()
        self._wake.set()
        if self._thread is not threading.current_thread():
            # Bounded: a renewal stuck on an unreachable database must not hold the beat. One that lands late
            # changes nothing, since the run's last move or release took the lease it compares with.
            self._thread.join(timeout=STOP_WAIT_SECONDS)

    def _report(self, what: str) -> None:
        if what != self._doing:
            self._doing = what
            self._wake.set()  # said now, not at the next renewal

    def _keep(self) -> None:
        """Renew every interval, or at once when the run says it does something new; a claim that ends sooner
        (most do: a routing, a review without a gate) costs no renewal at all."""
        while True:
            self._wake.wait(self.interval)
            self._wake.clear()
            if self._done.is_set():
                return
            self._renew()

    def _renew(self) -> None:
        try:
            with self._engine.begin() as conn:
                held = store.renew_lease(
                    conn, self.held, ttl=self._ttl, worker=self._worker, doing=self._doing, fresh=self._fresh
                )
                agent = store.renew_agent_lease(conn, self._agent_id, run_id=self._beat_run_id, ttl=self._agent_ttl)
        except Exception as error:  # the next renewal tries again; a third of the TTL is the slack
            level = log.debug if is_outage(error) else log.warning
            level("lease.renewal_failed", error=redact(describe(error)), **self._fields)
            return
        self._fresh = False
        if not agent:
            self._agent_lease_lost()  # another process beats this agent now: no more claims this beat
        if not held and not self._done.is_set():
            self.watch.stopped.set()
            self._done.set()
            log.info("lease.gone", detail="the run stops and keeps nothing", **self._fields)
