"""The context one workflow run sees: the agent (fresh from its row), the roster, the clock."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from agents.playbooks import PlaybookSet
from agents.roster import Roster
from agents.tools.context import AgentRef, ToolContext
from config.settings import Settings
from db.engine import transaction
from db.models import Agent

if TYPE_CHECKING:  # the router (and LiteLLM) load only when a workflow really calls a model
    from agents.llm.router import CallContext, ModelRouter


class WorkflowTimeout(Exception):
    """The run passed its maximum duration; the claim is released and the attempt counted."""


@dataclass(frozen=True)
class AgentRow:
    id: int
    slug: str
    title: str
    tier: str
    workflows: tuple[str, ...]
    toolsets: tuple[str, ...]
    skills: tuple[dict[str, Any], ...]
    checklist: tuple[str, ...]
    monthly_budget_usd: Decimal | None
    manager_id: int | None
    reviewer_id: int | None

    @classmethod
    def of(cls, agent: Agent) -> AgentRow:
        return cls(
            agent.id,
            agent.slug,
            agent.title,
            agent.tier,
            tuple(agent.workflows),
            tuple(agent.toolsets),
            tuple(agent.skills),
            tuple(agent.checklist),
            agent.monthly_budget_usd,
            agent.manager_id,
            agent.reviewer_id,
        )

    @property
    def actor(self) -> str:
        return f"agent:{self.slug}"

    @property
    def delegates(self) -> bool:
        """Managers route work; their own `execute` only assembles what they decomposed."""
        return "assign" in self.workflows


@dataclass
class WorkflowContext:
    agent: AgentRow
    roster: Roster
    settings: Settings
    engine: Engine
    beat_run_id: uuid.UUID
    deadline: float
    stop: threading.Event = field(default_factory=threading.Event)
    touched: list[int] = field(default_factory=list)
    claims: int = 0
    workflow: str = ""
    lease_lost: bool = False
    degraded: set[str] = field(default_factory=set)  # workflows that gave work back for a reason not its own
    lease_renewed_at: float = field(default_factory=time.monotonic)  # the beat took its lease just now
    router_factory: Any = None
    playbooks: PlaybookSet | None = None

    @property
    def actor(self) -> str:
        return self.agent.actor

    @property
    def instructions(self) -> str:
        role = self.roster.roles.get(self.agent.slug)
        return role.instructions if role else ""

    def router(self) -> ModelRouter:
        if self.router_factory is not None:
            return self.router_factory()  # type: ignore[no-any-return]
        from agents.llm.router import get_router

        return get_router(self.settings)

    @contextmanager
    def tx(self, run_id: uuid.UUID | None = None) -> Iterator[Session]:
        with transaction(self.actor, workflow=self.workflow, run_id=run_id, engine=self.engine) as session:
            yield session

    def call(self, issue_id: int | None, run_id: uuid.UUID) -> CallContext:
        from agents.llm.router import CallContext

        return CallContext(
            run_id=run_id,
            workflow=self.workflow,
            agent_id=self.agent.id,
            agent_slug=self.agent.slug,
            agent_monthly_limit=self.agent.monthly_budget_usd,
            issue_id=issue_id,
        )

    def tools(self, issue_id: int | None, run_id: uuid.UUID) -> ToolContext:
        ref = AgentRef(self.agent.id, self.agent.slug, self.agent.toolsets, self.agent.workflows, self.agent.manager_id)
        return ToolContext(
            agent=ref,
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

    def item_deadline(self) -> float:
        return min(time.monotonic() + self.settings.workflow_max_seconds, self.deadline)

    def touch(self, issue_id: int) -> None:
        if issue_id not in self.touched:
            self.touched.append(issue_id)
