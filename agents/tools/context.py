"""What a tool knows about the call it serves: who, on which issue, in which run."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from config.settings import Settings


@dataclass(frozen=True)
class AgentRef:
    id: int
    slug: str
    toolsets: tuple[str, ...]
    workflows: tuple[str, ...]
    manager_id: int | None

    @property
    def actor(self) -> str:
        return f"agent:{self.slug}"


@dataclass
class ToolOutcome:
    """What the tools asked the workflow to do once the loop ends."""

    blocked_reason: str | None = None
    research_issue_ids: list[int] = field(default_factory=list)
    subissue_ids: list[int] = field(default_factory=list)
    published: list[str] = field(default_factory=list)

    def absorb(self, tool_name: str, result: dict[str, Any]) -> None:
        if tool_name == "mark_blocked":
            self.blocked_reason = str(result.get("reason", "blocked"))
        elif tool_name == "ask_research" and "research_issue_id" in result:
            self.research_issue_ids.append(int(result["research_issue_id"]))
        elif tool_name == "create_subissue" and "issue_id" in result:
            self.subissue_ids.append(int(result["issue_id"]))
        elif tool_name == "publish" and "published" in result:
            self.published.append(str(result["published"]))


@dataclass
class ToolContext:
    agent: AgentRef
    issue_id: int | None
    run_id: uuid.UUID
    workflow: str
    settings: Settings
    engine: Engine
    outcome: ToolOutcome = field(default_factory=ToolOutcome)

    @property
    def actor(self) -> str:
        return self.agent.actor

    def workspace_root(self) -> Path:
        if self.issue_id is None:
            raise ValueError("this tool needs an issue")
        return workspace_path(self.settings, self.issue_id)

    def published_root(self) -> Path:
        if self.issue_id is None:
            raise ValueError("this tool needs an issue")
        return self.settings.data_path / "published" / f"issue-{self.issue_id}"


def workspace_path(settings: Settings, issue_id: int) -> Path:
    return settings.data_path / "workspaces" / f"issue-{issue_id}"
