"""One heartbeat of one agent: take its lease, run its workflows in order (each once), record the beat.

The lease on the agents row is what makes any number of `hq run` processes on
any number of hosts safe: APScheduler does not coordinate processes, Postgres
does. A beat that cannot take the lease simply does not happen.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, update
from sqlalchemy.engine import Engine
from tenacity import Retrying, retry_if_exception, stop_after_delay, stop_when_event_set, wait_exponential

from agents.playbooks import PlaybookSet
from agents.roster import Roster
from config.errors import describe
from config.log import bound_contextvars, get_logger
from config.secrets import redact
from config.settings import Settings
from db import store
from db.engine import transaction
from db.errors import is_outage
from db.models import HeartbeatRun
from scheduler.outages import OutageLog
from workflows import registry
from workflows.lib.context import WorkflowContext

ACTOR = "system:scheduler"
FINISH_RETRY_SECONDS = 30

log = get_logger(__name__)


def _workflows() -> Mapping[str, Callable[[WorkflowContext], None]]:
    """Each registered workflow's run, by name; its module is imported when the beat first looks it up."""
    return registry.runners()


@dataclass
class BeatContext:
    """What every beat in a process shares."""

    settings: Settings
    engine: Engine
    roster: Roster
    worker: str
    stop: threading.Event = field(default_factory=threading.Event)
    router_factory: Any = None
    playbooks: PlaybookSet | None = None
    outages: OutageLog = field(init=False)

    def __post_init__(self) -> None:
        # Connections pooled before an outage are dead after a restart: drop them when one starts.
        self.outages = OutageLog(forget=self.engine.dispose)


@dataclass(frozen=True)
class BeatResult:
    slug: str
    outcome: str  # ok | idle | degraded | error | interrupted | skipped
    issues: tuple[int, ...] = ()


def run_beat(slug: str, runtime: BeatContext) -> BeatResult:
    settings = runtime.settings
    run_id = uuid.uuid4()
    ttl = settings.agent_lease_ttl_seconds
    with transaction(ACTOR, workflow="heartbeat", run_id=run_id, engine=runtime.engine) as session:
        agent_id = store.take_agent_lease(session, slug, run_id=run_id, ttl=ttl)
        if agent_id is None:
            return BeatResult(slug, "skipped")  # paused, or another process is beating it
        snapshot = store.get_agent(session, agent_id)
        assert snapshot is not None
        session.add(HeartbeatRun(run_id=run_id, agent_id=agent_id, worker=runtime.worker))
    ctx = WorkflowContext(
        agent=snapshot,
        roster=runtime.roster,
        settings=settings,
        engine=runtime.engine,
        beat_run_id=run_id,
        deadline=time.monotonic() + ttl,
        stop=runtime.stop,
        router_factory=runtime.router_factory,
        playbooks=runtime.playbooks,
        worker=runtime.worker,
    )
    outcome, error = "idle", None
    with bound_contextvars(agent=slug, run_id=str(run_id)):
        try:
            workflows = _workflows()
            for name in snapshot.workflows:
                if ctx.should_stop():
                    break
                ctx.workflow = name
                with bound_contextvars(workflow=name):
                    try:
                        workflows[name](ctx)
                    finally:
                        ctx.let_go()
            outcome = (
                "interrupted"
                if runtime.stop.is_set()
                else "degraded"
                if ctx.degraded
                else "ok"
                if ctx.touched
                else "idle"
            )
        except Exception as failure:
            outcome, error = "error", redact(describe(failure))
            if is_outage(failure):  # the lease brings the work back once the database does
                runtime.outages.failed("heartbeat", failure, workflow=ctx.workflow)
            else:
                log.exception("heartbeat.failed", workflow=ctx.workflow)
        finally:
            _finish(runtime, run_id, snapshot.id, outcome, error, ctx)
    return BeatResult(slug, outcome, tuple(ctx.touched))


def _finish(
    runtime: BeatContext, run_id: uuid.UUID, agent_id: int, outcome: str, error: str | None, ctx: WorkflowContext
) -> None:
    """Record the beat and free the agent, through a short outage too; the sweeper closes what is left as lost."""

    def pause(seconds: float) -> None:
        runtime.stop.wait(seconds)  # wakes early on stop

    retrying = Retrying(
        retry=retry_if_exception(is_outage),
        reraise=True,
        sleep=pause,
        stop=stop_after_delay(FINISH_RETRY_SECONDS) | stop_when_event_set(runtime.stop),
        wait=wait_exponential(multiplier=0.5, max=5),
    )
    retrying(_record_end, runtime, run_id, agent_id, outcome, error, ctx)


def _record_end(
    runtime: BeatContext, run_id: uuid.UUID, agent_id: int, outcome: str, error: str | None, ctx: WorkflowContext
) -> None:
    """A beat the sweeper already closed as ``lost`` stays closed: its lease had gone."""
    with transaction(ACTOR, workflow="heartbeat", run_id=run_id, engine=runtime.engine) as session:
        session.execute(
            update(HeartbeatRun)
            .where(HeartbeatRun.run_id == run_id, HeartbeatRun.finished_at.is_(None))
            .values(
                finished_at=func.clock_timestamp(),
                outcome=outcome,
                error=error,
                claims=ctx.claims,
                workflows=list(ctx.agent.workflows),
                issues_touched=ctx.touched,
            )
        )
        store.release_agent_lease(session, agent_id, run_id=run_id)
    if outcome != "idle":
        log.info("heartbeat.done", outcome=outcome, claims=ctx.claims, issues=ctx.touched)
