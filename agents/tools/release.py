"""Toolset `release`: run the project's configured deploy and verify commands.

The model chooses only *when* to run them; what runs comes from settings. A tool
runs inside the agent's own execute run, on the host that holds the issue's
workspace, so it ships that live workspace (``{workspace}``): the work in hand,
not yet submitted. Approved work is shipped by the deploy_verify workflow from
what the database holds (projects/document/commands.py ``deploy_submission``).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from sqlalchemy.orm import Session

from agents.tools.context import ToolContext
from agents.tools.registry import tool
from config.errors import ToolError
from projects.document.commands import run_project_command


class NoArgs(BaseModel):
    pass


def _run(ctx: ToolContext, kind: str) -> dict[str, Any]:
    if ctx.issue_id is None:
        raise ToolError(f"{kind} needs an issue")
    result = run_project_command(kind, ctx.issue_id, ctx.settings, workspace=ctx.workspace_root())
    return {
        "ok": result.ok,
        "exit_code": result.returncode,
        "output": result.output,
        "seconds": round(result.seconds, 3),
    }


@tool("release", NoArgs)
def deploy(ctx: ToolContext, session: Session, args: NoArgs) -> dict[str, Any]:
    """Deploy the current issue's deliverables with the project's configured deploy command."""
    return _run(ctx, "deploy")


@tool("release", NoArgs)
def verify(ctx: ToolContext, session: Session, args: NoArgs) -> dict[str, Any]:
    """Verify the current issue's deployment with the project's configured verify command."""
    return _run(ctx, "verify")
