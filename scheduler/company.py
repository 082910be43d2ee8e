"""`hq run`: the company at work in this process — one APScheduler job per agent, plus system jobs.

Each agent's job fires on its heartbeat (scaled by ``heartbeat_scale``, with its
jitter), with ``coalesce`` and ``max_instances=1`` on a bounded thread pool.
Wake-ups from LISTEN move an agent's next run to now; a wake that arrives while
the agent is mid-beat is remembered and served right after. Any number of
processes can run this against one database.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from apscheduler.events import EVENT_JOB_MAX_INSTANCES
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import select

from agents.playbooks import load_playbooks
from agents.roster import Roster, load_roster
from agents.sync import sync_roster
from channels import notify
from config.errors import ConfigError
from config.log import ensure_configured, get_logger
from config.settings import Settings
from config.vocabulary import SWEEP_JOB
from db.engine import get_engine, listen_url, transaction
from db.errors import is_outage
from db.models import Agent
from models.config import resolve_models
from scheduler.embedded_guard import EmbeddedGuard
from scheduler.heartbeat import BeatContext, BeatResult, run_beat
from scheduler.listener import WakeListener
from workflows import sweep, upkeep

MIN_INTERVAL_SECONDS = 0.5
NOTIFY_SECONDS = 5.0
GUARD_SECONDS = 1.0
SYSTEM = "system"  # the executor of the jobs that are not beats
SYSTEM_THREADS = 4  # sweep, notify, upkeep and the guard each run alone (max_instances=1)
DEFAULT_THREADS = 8  # beats at once; a beat that works for half an hour holds one

log = get_logger(__name__)


def load_company(settings: Settings) -> Roster:
    """Validate the roster, playbooks and models file (refusing to start if any is invalid); sync the roster."""
    roster = load_roster(settings.roles_path)
    load_playbooks(settings.playbooks_path, set(roster.roles))
    resolve_models(settings)  # a broken models file stops the start, not every agent's first model call
    with transaction("system:roster", workflow="roster-sync", engine=get_engine(settings)) as session:
        sync_roster(session, roster)
    return roster


class Company:
    def __init__(self, settings: Settings, *, threads: int = DEFAULT_THREADS, router_factory: Any = None) -> None:
        ensure_configured()  # library loggers (APScheduler, psycopg) speak through structlog from here on
        self.settings = settings
        self.threads = threads
        self.roster = load_company(settings)
        self.engine = get_engine(settings)
        self.runtime = BeatContext(
            settings,
            self.engine,
            self.roster,
            f"{socket.gethostname()}:{os.getpid()}",
            router_factory=router_factory,
            playbooks=load_playbooks(settings.playbooks_path, set(self.roster.roles)),
        )
        self.scheduler: Any = None
        self.listener: WakeListener | None = None
        self.telegram: Any = None  # channels.poller.TelegramPoller, when a bot is configured
        self._lock = threading.Lock()
        self._running: dict[str, float] = {}  # slug -> when its beat started (time.monotonic())
        self._long: set[str] = set()  # beats already said to be long (one line each)
        self._rewake: set[str] = set()
        self.on_beat: Callable[[BeatResult], None] | None = None
        self.on_notification: notify.Show | None = None  # `hq run --once`: no bot, a person at the console

    @property
    def stop_event(self) -> threading.Event:
        return self.runtime.stop

    def _log_failure(self, job: str, error: Exception, **fields: Any) -> None:
        """A database outage is expected weather (logged once per outage; the job retries); anything else is a bug."""
        if is_outage(error):
            self.runtime.outages.failed(job, error, **fields)
        else:
            log.error(f"{job}.crashed", exc_info=error, **fields)

    # --- jobs ------------------------------------------------------------------------
    def beat(self, slug: str) -> BeatResult:
        with self._lock:
            self._running[slug] = time.monotonic()
        try:
            result = run_beat(slug, self.runtime)
            if result.outcome != "error":
                self.runtime.outages.succeeded()
        except Exception as error:
            self._log_failure("heartbeat", error, agent=slug)
            result = BeatResult(slug, "error")
        finally:
            with self._lock:
                self._running.pop(slug, None)
                self._long.discard(slug)
                again = slug in self._rewake
                self._rewake.discard(slug)
        if again:
            self.wake(slug)
        if self.on_beat is not None:
            self.on_beat(result)
        return result

    def sweep(self) -> None:
        try:
            sweep.run(self.settings, self.engine)
            self.runtime.outages.succeeded()
        except Exception as error:
            self._log_failure("sweep", error)

    def notify(self) -> None:
        try:
            notify.run(self.settings, self.engine, show=self.on_notification)
        except Exception as error:
            self._log_failure("notify", error)

    def upkeep(self) -> None:
        try:
            upkeep.run(self.settings, self.engine)
        except Exception as error:
            self._log_failure("upkeep", error)

    # --- one pass, for cron and tests ----------------------------------------------------
    def run_once(self) -> list[BeatResult]:
        """Every active agent's beat once, in chain-of-command order, then the system jobs."""
        results = [self.beat(role.slug) for _depth, role in self.roster.walk()]
        self.sweep()
        self.upkeep()
        self.notify()
        return results

    # --- continuous ---------------------------------------------------------------------
    def interval(self, agent: Agent) -> tuple[float, float]:
        scale = self.settings.heartbeat_scale
        seconds = max(MIN_INTERVAL_SECONDS, agent.heartbeat_seconds * scale)
        return seconds, min(agent.jitter_seconds * scale, seconds / 2)

    def start(self) -> None:
        self._check_runtimes()
        # Beats and the system jobs (sweep, notify, upkeep, the embedded server's guard) have pools of their own:
        # however many agents work for half an hour, the sweeper still reclaims, notifications still go out.
        self.scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(self.threads), SYSTEM: ThreadPoolExecutor(SYSTEM_THREADS)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
            timezone=dt.UTC,
        )
        self.scheduler.add_listener(self._still_running, EVENT_JOB_MAX_INSTANCES)
        now = dt.datetime.now(dt.UTC)
        with self.engine.connect() as connection:
            agents = connection.execute(select(Agent.slug, Agent.heartbeat_seconds, Agent.jitter_seconds)).all()
        for agent in agents:
            seconds, jitter = self.interval(agent)  # type: ignore[arg-type]
            first = now + dt.timedelta(seconds=random.uniform(0, min(seconds, 2.0)))
            self.scheduler.add_job(
                self.beat,
                IntervalTrigger(seconds=seconds, jitter=jitter or None),
                args=[agent.slug],
                id=agent.slug,
                name=f"heartbeat {agent.slug}",
                next_run_time=first,
            )
        sweep_every = IntervalTrigger(seconds=self.settings.sweep_interval_seconds)
        self.scheduler.add_job(self.sweep, sweep_every, id=SWEEP_JOB, next_run_time=now, executor=SYSTEM)
        notify_every = IntervalTrigger(seconds=NOTIFY_SECONDS)
        self.scheduler.add_job(self.notify, notify_every, id="_notify", next_run_time=now, executor=SYSTEM)
        upkeep_every = self.settings.upkeep_interval_seconds  # the first pass a minute in: restarts do not skip it
        first_upkeep = now + dt.timedelta(seconds=min(upkeep_every, 60.0))
        self.scheduler.add_job(
            self.upkeep,
            IntervalTrigger(seconds=upkeep_every),
            id="_upkeep",
            next_run_time=first_upkeep,
            executor=SYSTEM,
        )
        if self.settings.database_url is None:  # hq owns the embedded server: it keeps it up
            guard = EmbeddedGuard(self.settings.data_path)
            self.scheduler.add_job(
                guard.check,
                IntervalTrigger(seconds=GUARD_SECONDS),
                id="_embedded_guard",
                next_run_time=now,
                executor=SYSTEM,
            )
        self.scheduler.start()
        self.listener = WakeListener(listen_url(self.settings, self.engine), self.wake, self.stop_event)
        self.listener.start()
        if self.settings.telegram_bot_token is not None and self.settings.telegram_chat_id is not None:
            from channels.poller import TelegramPoller  # python-telegram-bot loads only with a bot

            self.telegram = TelegramPoller(self.settings, self.engine, self.runtime.worker)
            self.telegram.start()
        log.info(
            "company.started",
            agents=len(agents),
            threads=self.threads,
            worker=self.runtime.worker,
            sandbox=self.settings.sandbox,
        )
        if self.settings.sandbox == "none":
            log.warning(
                "sandbox.unconfined",
                detail="HQ_SANDBOX=none: project commands run as plain processes of this user, with its files "
                "and network; use bwrap unless this host holds nothing else",
            )

    def _check_runtimes(self) -> None:
        """A role on Claude Code that could not run here stops `hq run` at start, not at its first issue."""
        from models.config import resolve_models
        from runtimes.install import runtime_problems

        if resolve_models(self.settings).offline:
            return  # no provider the CLI can talk to: such roles work with the built-in loop
        problems = runtime_problems(self.settings, self.roster)
        if problems:
            raise ConfigError("; ".join(problems))

    def _still_running(self, event: Any) -> None:
        """A beat still working at its next turn (a long project command, a Claude Code session): one line per
        long beat, not one per skipped turn."""
        slug = event.job_id
        with self._lock:
            started = self._running.get(slug)
            if started is None or slug in self._long:
                return
            self._long.add(slug)
        log.info("heartbeat.long_run", agent=slug, running_seconds=round(time.monotonic() - started, 1))

    def wake(self, slug: str) -> None:
        """Run ``slug``'s beat now (coalesced: a running beat is re-run once it ends)."""
        if self.scheduler is None or self.stop_event.is_set():
            return
        with self._lock:
            if slug in self._running:
                self._rewake.add(slug)
                return
        job = self.scheduler.get_job(slug)
        if job is None:
            return
        now = dt.datetime.now(dt.UTC)
        if job.next_run_time is not None and job.next_run_time <= now + dt.timedelta(milliseconds=50):
            return  # already due: repeated wakes coalesce
        job.modify(next_run_time=now)

    def shutdown(self, wait: bool = True) -> None:
        """Stop taking new work; running workflows finish (bounded) and release their leases."""
        self.stop_event.set()
        if self.telegram is not None:
            self.telegram.stop()
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=wait)
        if self.listener is not None:
            self.listener.join(timeout=5)
        log.info("company.stopped", worker=self.runtime.worker)
