"""The context one workflow run sees: the agent (fresh from its row), the roster, the clock."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from agents.playbooks import PlaybookSet
from agents.roster import Roster
from agents.tools.context import ToolContext
from config.settings import Settings
from db.engine import transaction
from db.store import AgentRecord, Claim
from models.router import CallContext, ModelRouter, get_router
from projects.watch import Watch
from workflows.lib.leases import LeaseKeeper


@dataclass
class WorkflowContext:
    agent: AgentRecord
    roster: Roster
    settings: Settings
    engine: Engine
    beat_run_id: uuid.UUID
    deadline: float  # time.monotonic() after which the beat claims nothing new (work in hand goes on)
    stop: threading.Event = field(default_factory=threading.Event)
    touched: list[int] = field(default_factory=list)
    claims: int = 0
    workflow: str = ""
    lease_lost: bool = False
    degraded: set[str] = field(default_factory=set)  # workflows that gave work back for a reason not its own
    halted: set[str] = field(default_factory=set)  # workflows whose model call failed: no more claims this beat
    lease_renewed_at: float = field(default_factory=time.monotonic)  # the beat took its lease just now
    router_factory: Any = None
    playbooks: PlaybookSet | None = None
    worker: str = ""  # host:pid, written on the rows of the issues this process works
    keeper: LeaseKeeper | None = None  # the lease keeper of the claim being worked (workflows/lib/leases.py)

    @property
    def actor(self) -> str:
        return self.agent.actor

    @property
    def instructions(self) -> str:
        role = self.roster.roles.get(self.agent.slug)
        return role.instructions if role else ""

    def router(self) -> ModelRouter:
        if self.router_factory is not None:
            return self.router_factory()
        return get_router(self.settings)

    @contextmanager
    def tx(self, run_id: uuid.UUID | None = None) -> Iterator[Session]:
        with transaction(self.actor, workflow=self.workflow, run_id=run_id, engine=self.engine) as session:
            yield session

    def call(self, issue_id: int | None, run_id: uuid.UUID) -> CallContext:
        return CallContext(
            run_id=run_id,
            workflow=self.workflow,
            agent_id=self.agent.id,
            agent_slug=self.agent.slug,
            agent_monthly_limit=self.agent.monthly_budget_usd,
            issue_id=issue_id,
        )

    def tools(self, issue_id: int | None, run_id: uuid.UUID) -> ToolContext:
        return ToolContext(
            agent=self.agent,
            issue_id=issue_id,
            run_id=run_id,
            workflow=self.workflow,
            settings=self.settings,
            engine=self.engine,
        )

    def time_left(self) -> float:
        return self.deadline - time.monotonic()

    def should_stop(self) -> bool:
        """No new item once asked to stop, once the agent lease is gone, or once the beat's time is up."""
        return self.stop.is_set() or self.lease_lost or self.time_left() <= 0

    def keep(self, held: Claim) -> None:
        """From the claim on, ``held``'s lease is renewed while the run works (workflows/lib/leases.py); a beat
        works one claim at a time."""
        self.let_go()
        self.keeper = LeaseKeeper(
            self.settings,
            self.engine,
            held,
            agent=self.agent,
            beat_run_id=self.beat_run_id,
            workflow=self.workflow,
            worker=self.worker,
            agent_lease_lost=self._agent_lease_lost,
        ).start()

    def let_go(self) -> None:
        if self.keeper is not None:
            self.keeper.stop()
            self.keeper = None

    def watch(self, held: Claim) -> Watch:
        """The watch of ``held``'s keeper; a claim nobody keeps (a test's own) gets one that never stops."""
        keeper = self.keeper
        return keeper.watch if keeper is not None and keeper.held.run_id == held.run_id else Watch()

    def _agent_lease_lost(self) -> None:
        self.lease_lost = True

    def touch(self, issue_id: int) -> None:
        if issue_id not in self.touched:
            self.touched.append(issue_id)
