"""Tools are plain functions with pydantic argument models, grouped into toolsets; ``@tool`` registers one.

A tool never decides whether it may run; the dispatcher does (toolset check,
argument validation, idempotency, the tool_calls row). Tools just do one thing.
This module imports no tool: agents/tools/catalog.py lists the toolset modules,
and importing them is what fills REGISTRY.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

ToolFunc = Callable[..., Any]


@dataclass(frozen=True)
class Tool:
    name: str
    toolset: str
    description: str
    args: type[BaseModel]
    func: ToolFunc
    creates_issues: bool = False  # opens funded issues: capped tighter per run (agents/tools/dispatch.py)
    # Works for minutes (a project command): called as ``func(ctx, args)`` outside any transaction, it returns
    # its result and what records it, which the dispatcher runs in the transaction that stores the call.
    slow: bool = False

    def schema(self) -> dict[str, Any]:
        """The OpenAI-style function schema LiteLLM passes to every provider."""
        parameters = self.args.model_json_schema()
        parameters.pop("title", None)
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": parameters},
        }


REGISTRY: dict[str, Tool] = {}


def tool(
    toolset: str, args: type[BaseModel], *, creates_issues: bool = False, slow: bool = False
) -> Callable[[ToolFunc], ToolFunc]:
    """Register ``func`` as a tool of ``toolset``; its docstring's first paragraph is the description.

    ``creates_issues`` marks a tool that opens issues, which the dispatcher caps tighter than other calls;
    ``slow`` one that works for minutes, and so holds no transaction meanwhile (see ``Tool.slow``).
    """

    def register(func: ToolFunc) -> ToolFunc:
        description = (func.__doc__ or func.__name__).strip().split("\n\n")[0].replace("\n", " ")
        if func.__name__ in REGISTRY:
            raise ValueError(f"tool {func.__name__} registered twice")
        REGISTRY[func.__name__] = Tool(func.__name__, toolset, description, args, func, creates_issues, slow)
        return func

    return register
