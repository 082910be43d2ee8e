"""What a tool knows about the call it serves: who, on which issue, in which run."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, Field, TypeAdapter, ValidationError
from sqlalchemy.engine import Engine

from config.settings import Settings
from db.store.records import AgentRecord
from projects.document.project import workspace_path
from projects.watch import Limit

if TYPE_CHECKING:
    from projects.kinds import Work


class Blocked(BaseModel):
    """The agent says the issue cannot be finished: it blocks and escalates with this reason."""

    kind: Literal["blocked"] = "blocked"
    reason: str


class WaitingOnResearch(BaseModel):
    """The agent asked a research question: the issue waits until the research issue is done."""

    kind: Literal["waiting_on_research"] = "waiting_on_research"
    research_issue_id: int


Decision = Annotated[Blocked | WaitingOnResearch, Field(discriminator="kind")]
DECISION = TypeAdapter(Decision)


@dataclass
class ToolOutcome:
    """What the tools decided about the issue, for the workflow once the loop ends.

    A tool that decides returns its decision under ``"outcome"`` in its result, so a
    replayed call (its stored result) decides exactly as the first one did.
    """

    blocked: Blocked | None = None
    research: list[WaitingOnResearch] = field(default_factory=list)

    def absorb(self, result: dict[str, Any]) -> None:
        if "outcome" not in result:
            return
        try:
            decision = DECISION.validate_python(result["outcome"])
        except ValidationError:
            return  # not a decision any tool makes (a row stored before decisions were typed): no decision
        if isinstance(decision, Blocked):
            self.blocked = decision
        else:
            self.research.append(decision)

    @property
    def blocked_reason(self) -> str | None:
        return self.blocked.reason if self.blocked else None

    @property
    def research_issue_ids(self) -> list[int]:
        return [r.research_issue_id for r in self.research]


@dataclass
class ToolContext:
    agent: AgentRecord
    issue_id: int | None
    run_id: uuid.UUID
    workflow: str
    settings: Settings
    engine: Engine
    outcome: ToolOutcome = field(default_factory=ToolOutcome)
    work: Work | None = None  # set by execute: the run's hold on its project (a workspace, or a worktree)
    limit: Limit | None = None  # set by execute: HQ's limit on the run (its runtime's), which ends commands too

    @property
    def actor(self) -> str:
        return self.agent.actor

    def workspace_root(self) -> Path:
        if self.issue_id is None:
            raise ValueError("this tool needs an issue")
        if self.work is not None:
            return self.work.files.root
        return workspace_path(self.settings, self.issue_id)

    def published_root(self) -> Path:
        if self.issue_id is None:
            raise ValueError("this tool needs an issue")
        return self.settings.data_path / "published" / f"issue-{self.issue_id}"
