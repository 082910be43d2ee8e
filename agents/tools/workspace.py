"""Toolset `workspace`: files in the issue's own git workspace, and nowhere else."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from agents.tools.context import ToolContext
from agents.tools.registry import tool
from projects.workspace import MAX_FILE_BYTES, Workspace


class PathArgs(BaseModel):
    path: Annotated[str, Field(description="A path relative to the issue workspace, e.g. 'notes/plan.md'.")]


class WriteArgs(PathArgs):
    content: Annotated[str, Field(description="The whole file content (UTF-8 text).", max_length=MAX_FILE_BYTES)]


class ListArgs(BaseModel):
    pattern: Annotated[
        str | None, Field(max_length=200, description="A glob such as '*.py' or 'src/**/*.ts'; all files if unset.")
    ] = None


def _workspace(ctx: ToolContext) -> Workspace:
    """The run's files (its worktree, or its document workspace); the issue's workspace outside a run."""
    return ctx.work.files if ctx.work is not None else Workspace(ctx.workspace_root())


@tool("workspace", PathArgs)
def read_file(ctx: ToolContext, session: Session, args: PathArgs) -> dict[str, Any]:
    """Read a text file from this issue's workspace."""
    return {"path": args.path, "content": _workspace(ctx).read(args.path)}


@tool("workspace", WriteArgs)
def write_file(ctx: ToolContext, session: Session, args: WriteArgs) -> dict[str, Any]:
    """Create or replace a text file in this issue's workspace. Deliverables belong here."""
    written = _workspace(ctx).write(args.path, args.content)
    return {"path": written.path, "sha256": written.sha256, "size_bytes": written.size_bytes}


@tool("workspace", ListArgs)
def list_files(ctx: ToolContext, session: Session, args: ListArgs) -> dict[str, Any]:
    """List the files in this issue's workspace (or those matching a glob)."""
    return {"files": _workspace(ctx).files(args.pattern)}
