"""The dispatcher: the only way a model's tool call turns into an action.

It enforces the agent's toolsets (a call outside them is refused and recorded),
validates arguments against the tool's pydantic model, runs the tool inside a
savepoint, and writes one ``tool_calls`` row with redacted arguments and the
outcome — all in one transaction (a slow tool's work, a project command, runs
between two: see ``dispatch``). The row's idempotency key is ``run_id:step``:
replaying a step returns the stored result and runs nothing twice.

Calls are capped per run, counted from the run's ``tool_calls`` rows, so the
caps hold whatever drives the run (the built-in loop, or a coding agent and
anything in its sandbox through the MCP server): past ``MAX_TOOL_CALLS_PER_RUN``
a call is refused without a row (the audit trail stays bounded too); a tool
that opens issues past ``MAX_ISSUES_CREATED_PER_RUN`` is refused with one. A
tool's ToolRefused (a budget the issue cannot fund) is outcome ``refused``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from agents.tools.catalog import get_tool
from agents.tools.context import ToolContext
from agents.tools.registry import REGISTRY, Tool
from config.errors import HQError, ToolRefused
from config.log import get_logger
from config.secrets import redact_obj
from db.engine import read_only, transaction
from db.models import ToolCall
from db.storable import problem, storable, storable_text

STORED_STRING_LIMIT = 2000
MAX_TOOL_CALLS_PER_RUN = 200
"""A session calls HQ's tools a few dozen times (a command after each edit, a comment); a loop that goes on is a
model or sandboxed code hammering the database, and its rows and side effects stop here."""
MAX_ISSUES_CREATED_PER_RUN = 5
"""A run asks a question or two, or splits its work into a handful of parts (larger splits are a playbook's, with
a budget share each); each opened issue takes budget and a researcher's or report's time, so few are allowed."""

log = get_logger(__name__)


@dataclass(frozen=True)
class ToolResult:
    name: str
    outcome: str  # ok | refused | invalid | error
    result: dict[str, Any] | None
    error: str | None
    replayed: bool = False

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"

    def for_model(self) -> str:
        """What the model sees as the tool's answer."""
        payload = self.result if self.ok else {"error": self.error, "outcome": self.outcome}
        return json.dumps(redact_obj(payload), default=str, ensure_ascii=False)


class _LostRace(Exception):
    """Another process stored this step first; ours must not count."""


class _OverCap(Exception):
    """The run has made all the calls it may: refused, and not recorded."""


def _over_cap(ctx: ToolContext, session: Session, name: str) -> ToolResult | None:
    """The refusal for a call past the run's caps, or None; raises _OverCap past the cap on all calls."""
    creating = sorted(t.name for t in REGISTRY.values() if t.creates_issues)
    made, opened = session.execute(
        select(func.count(), func.count().filter(ToolCall.tool.in_(creating))).where(ToolCall.run_id == ctx.run_id)
    ).one()
    if made >= MAX_TOOL_CALLS_PER_RUN:
        raise _OverCap
    tool = get_tool(name)
    if tool is not None and tool.creates_issues and opened >= MAX_ISSUES_CREATED_PER_RUN:
        return ToolResult(
            name, "refused", None, f"this run has already asked to open {opened} issues, the most one run may"
        )
    return None


def _compact(value: Any) -> Any:
    """Long strings (file contents) are stored as a prefix plus their size and digest."""
    if isinstance(value, str) and len(value) > STORED_STRING_LIMIT:
        digest = hashlib.sha256(value.encode()).hexdigest()[:16]
        return value[:STORED_STRING_LIMIT] + f"… [{len(value)} chars, sha256 {digest}]"
    if isinstance(value, dict):
        return {k: _compact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_compact(v) for v in value]
    return value


def _audited(value: Any) -> Any:
    """A value as the audit row keeps it: compacted, redacted, and storable whatever the model sent."""
    return storable(redact_obj(_compact(value)))


def _stored(session: Session, key: str) -> ToolResult | None:
    row = session.scalar(select(ToolCall).where(ToolCall.idempotency_key == key))
    if row is None:
        return None
    return ToolResult(row.tool, row.outcome, row.result, row.error, replayed=True)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _parse(arguments: str | dict[str, Any] | None) -> dict[str, Any]:
    if arguments is None or arguments == "":
        return {}
    if isinstance(arguments, dict):
        return arguments
    try:
        parsed = json.loads(arguments, parse_constant=_no_constant)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    if not isinstance(parsed, dict):
        raise ValueError("arguments must be a JSON object")
    return parsed


def _checked(ctx: ToolContext, name: str, raw: dict[str, Any]) -> tuple[Tool, BaseModel] | ToolResult:
    """The tool and its validated arguments, or why the call is refused (before any side effect)."""
    tool = get_tool(name)
    if tool is None:
        return ToolResult(name, "refused", None, f"there is no tool named {name!r}")
    if tool.toolset not in ctx.agent.toolsets:
        return ToolResult(
            name,
            "refused",
            None,
            f"{name} belongs to the {tool.toolset!r} toolset, which {ctx.agent.slug} does not have",
        )
    unstorable = problem(raw)
    if unstorable:  # refused before any side effect: nothing may be done that its audit row could not record
        return ToolResult(name, "invalid", None, f"invalid arguments for {name}: {unstorable}")
    try:
        return tool, tool.args.model_validate(raw)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'arguments'}: {e['msg']}" for e in error.errors())
        return ToolResult(name, "invalid", None, f"invalid arguments for {name}: {problems}")


def _outcome(name: str, work: Callable[[], dict[str, Any]]) -> ToolResult:
    """A tool's run as an outcome: its result, or the refusal or error it raised."""
    try:
        return ToolResult(name, "ok", work(), None)
    except ToolRefused as refused:
        return ToolResult(name, "refused", None, refused.message)
    except HQError as error:
        return ToolResult(name, "error", None, error.message)
    except Exception as error:
        log.exception("tool.crashed", tool=name)
        return ToolResult(name, "error", None, f"{name} failed: {type(error).__name__}")


def _run(ctx: ToolContext, session: Session, tool: Tool, args: BaseModel) -> ToolResult:
    def work() -> dict[str, Any]:
        with session.begin_nested():
            result: dict[str, Any] = tool.func(ctx, session, args)
            return result

    return _outcome(tool.name, work)


def _audit(
    session: Session, ctx: ToolContext, key: str, step: int, name: str, raw: dict[str, Any], outcome: ToolResult
) -> None:
    """The call's ``tool_calls`` row; raises _LostRace when another process stored this step first."""
    tool = get_tool(name)
    inserted = session.scalar(
        insert(ToolCall)
        .values(
            run_id=ctx.run_id,
            step=step,
            issue_id=ctx.issue_id,
            agent_id=ctx.agent.id,
            toolset=tool.toolset if tool else None,
            tool=storable_text(name[:200]),
            arguments=_audited(raw),
            outcome=outcome.outcome,
            result=_audited(outcome.result) if outcome.result is not None else None,
            error=storable_text(outcome.error) if outcome.error else None,
            idempotency_key=key,
        )
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
        .returning(ToolCall.id)
    )
    if inserted is None:
        raise _LostRace


def dispatch(ctx: ToolContext, name: str, arguments: str | dict[str, Any] | None, *, step: int) -> ToolResult:
    """Run one tool call for ``ctx.agent`` as step ``step`` of run ``ctx.run_id``.

    A slow tool (a project command: minutes) does its work between two transactions, holding no connection
    (PostgreSQL ends a session idle in a transaction for long); what it records, and the call's row, go in
    the second.
    """
    key = f"{ctx.run_id}:{step}"
    try:
        raw = _parse(arguments)
        bad_json = None
    except ValueError as error:
        raw, bad_json = {"_unparsed": str(arguments)[:STORED_STRING_LIMIT]}, f"arguments are not valid JSON: {error}"
    slow: tuple[Tool, BaseModel] | None = None
    try:
        with transaction(ctx.actor, workflow=ctx.workflow, run_id=ctx.run_id, engine=ctx.engine) as session:
            outcome = _stored(session, key) or _over_cap(ctx, session, name)
            if outcome is None:
                checked = ToolResult(name, "invalid", None, bad_json) if bad_json else _checked(ctx, name, raw)
                if isinstance(checked, ToolResult):
                    outcome = checked
                elif checked[0].slow:
                    slow = checked
                else:
                    outcome = _run(ctx, session, *checked)
            if outcome is not None and not outcome.replayed:
                _audit(session, ctx, key, step, name, raw, outcome)
        if slow is not None:
            tool, args = slow
            recorded: list[Callable[[Session], None]] = []

            def work() -> dict[str, Any]:
                result, record = tool.func(ctx, args)
                recorded.append(record)
                return dict(result)

            outcome = _outcome(name, work)
            with transaction(ctx.actor, workflow=ctx.workflow, run_id=ctx.run_id, engine=ctx.engine) as session:
                for record in recorded:
                    record(session)
                _audit(session, ctx, key, step, name, raw, outcome)
    except _OverCap:
        outcome = ToolResult(
            name, "refused", None, f"this run has made {MAX_TOOL_CALLS_PER_RUN} tool calls, the most one run may"
        )
    except _LostRace:
        with read_only(ctx.engine) as session:
            stored = _stored(session, key)
        assert stored is not None
        outcome = stored
    assert outcome is not None
    if outcome.ok and outcome.result is not None:
        ctx.outcome.absorb(outcome.result)
    log.info(
        "tool.called",
        tool=name,
        outcome=outcome.outcome,
        step=step,
        replayed=outcome.replayed,
        agent=ctx.agent.slug,
        issue_id=ctx.issue_id,
        run_id=str(ctx.run_id),
    )
    return outcome
