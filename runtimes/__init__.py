"""How an agent acts on an issue: HQ's built-in tool loop (builtin.py), or the Claude Code CLI
with HQ's model gateway and MCP tool server (claude_code.py); HQ keeps the state and the money.

Both answer the one Runtime interface below, and ``runtimes.choose.runtime_for`` picks a role's:
execute neither knows nor asks which one worked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol

from agents.tools.context import ToolContext
from agents.tools.dispatch import ToolResult
from config.errors import HQError
from config.settings import Settings
from models.router import CallContext, Completion, ModelRouter
from projects.watch import Limit, Watch


class RuntimeFailed(HQError):
    """The coding agent ran but gave no result HQ can use: the attempt counts, with what it printed."""


@dataclass
class RunResult:
    """What a runtime's run came to: the agent's closing text, and each tool call it made."""

    text: str
    tool_results: list[ToolResult] = field(default_factory=list)
    completions: list[Completion] = field(default_factory=list)
    exhausted: bool = False  # out of steps or turns before the agent finished
    timed_out: bool = False  # the runtime's limit (RunRequest.limit) ended it
    stopped: bool = False  # its lease keeper stopped it: the issue is no longer the run's, nothing is kept

    @property
    def written(self) -> list[str]:
        """The files the run's tools wrote, as the tools reported them."""
        return [
            r.result["path"]
            for r in self.tool_results
            if r.name == "write_file" and r.ok and r.result and "path" in r.result
        ]


@dataclass(frozen=True)
class RunRequest:
    """One run of an agent on its issue: who pays (``call``), what it may do (``tools``), what it is asked."""

    settings: Settings
    router: ModelRouter
    call: CallContext
    tools: ToolContext
    tier: str
    system: str
    user: str
    remaining_usd: Decimal  # the budget left: a runtime with a fence of its own sets it from this
    limit: Limit  # HQ's limit on this runtime's run (HQ_TOOL_LOOP_MAX_SECONDS, HQ_CLAUDE_CODE_MAX_SECONDS)
    watch: Watch  # the run's lease keeper: told what the run is doing, and stops it once the issue is not its own


class Runtime(Protocol):
    def limit(self, settings: Settings) -> Limit:
        """How long one run may take, from now: the setting of its own that says so."""
        ...

    def instructions(self, project_instructions: str) -> str:
        """What the agent is told to do: the project kind's words, or the runtime's own for its tools."""
        ...

    def run(self, request: RunRequest) -> RunResult:
        """Raises the model door's failures for the failure policy, RuntimeFailed when nothing usable came back."""
        ...
