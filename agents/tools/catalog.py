"""Every toolset module, listed once: importing them registers their tools (agents/tools/registry.py).

Adding a tool: write it with ``@tool("<toolset>", Args)`` in one of these modules,
or add a module for a new toolset to TOOLSET_MODULES.
"""

from __future__ import annotations

from agents.tools import code, dashboards, delegate, issues, publish, release, workspace
from agents.tools.registry import REGISTRY, Tool

TOOLSET_MODULES = (code, dashboards, delegate, issues, publish, release, workspace)


def tools_for(toolsets: list[str] | tuple[str, ...]) -> list[Tool]:
    return [t for t in REGISTRY.values() if t.toolset in toolsets]


def get_tool(name: str) -> Tool | None:
    return REGISTRY.get(name)
