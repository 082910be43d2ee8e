"""The tool-use loop: a model works an issue with its toolset, one dispatched call at a time.

The system prompt is the agent's AGENTS.md; the tools are its toolsets as
function schemas; every call goes through the dispatcher (toolset enforcement,
tool_calls row, idempotency by run id and step). A step limit bounds a model
that will not stop.
"""

from __future__ import annotations

from typing import Any

from agents.tools.catalog import tools_for
from agents.tools.context import ToolContext
from agents.tools.dispatch import dispatch
from config.settings import Settings
from models.router import CallContext, ModelRouter
from projects.watch import Limit, Watch
from runtimes import RunRequest, RunResult

DEFAULT_MAX_STEPS = 8


class Builtin:
    """HQ's own tool loop: any model the router serves, the role's toolsets as functions."""

    def limit(self, settings: Settings) -> Limit:
        return Limit.of(settings.tool_loop_max_seconds, "HQ_TOOL_LOOP_MAX_SECONDS")

    def instructions(self, project_instructions: str) -> str:
        return project_instructions

    def run(self, request: RunRequest) -> RunResult:
        return run_tool_loop(
            request.router,
            request.call,
            request.tools,
            tier=request.tier,
            system=request.system,
            user=request.user,
            limit=request.limit,
            watch=request.watch,
        )


def run_tool_loop(
    router: ModelRouter,
    call: CallContext,
    tool_ctx: ToolContext,
    *,
    tier: str,
    system: str,
    user: str,
    max_steps: int = DEFAULT_MAX_STEPS,
    limit: Limit | None = None,
    watch: Watch | None = None,
) -> RunResult:
    """Run until the model answers without tool calls, the step limit, ``limit``, or ``watch`` says stop.

    Both are looked at between steps: a model call in flight is not cut (its own timeout bounds it)."""
    watch = watch or Watch()
    schemas = [tool.schema() for tool in tools_for(list(tool_ctx.agent.toolsets))]
    messages: list[dict[str, Any]] = [{"role": "system", "content": system}, {"role": "user", "content": user}]
    result = RunResult(text="")
    step = 0
    for turn in range(max_steps):
        if watch.stopped.is_set():
            result.stopped = True
            return result
        if limit is not None and limit.left() <= 0:
            result.timed_out = True
            return result
        watch.doing(f"model call {turn + 1} of at most {max_steps}")
        completion = router.complete(call, tier, messages, tools=schemas or None)
        result.completions.append(completion)
        if not completion.tool_calls:
            result.text = completion.text
            return result
        messages.append(
            {
                "role": "assistant",
                "content": completion.text or None,
                "tool_calls": [
                    {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                    for c in completion.tool_calls
                ],
            }
        )
        for request in completion.tool_calls:
            if watch.stopped.is_set():  # not one more write for an issue that is not the run's
                result.stopped = True
                return result
            step += 1
            outcome = dispatch(tool_ctx, request.name, request.arguments, step=step)
            result.tool_results.append(outcome)
            messages.append({"role": "tool", "tool_call_id": request.id, "content": outcome.for_model()})
    result.exhausted = True
    return result
