"""Toolset `publish`: put a finished deliverable where people read it (the data dir's published/)."""

from __future__ import annotations

import hashlib
import mimetypes
import shutil
from typing import Annotated, Any

from pydantic import BaseModel, Field
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from agents.tools.context import ToolContext
from agents.tools.registry import tool
from config.errors import ToolError
from db.models import Artifact
from projects.workspace import Workspace


class PublishArgs(BaseModel):
    path: Annotated[str, Field(description="Workspace path of the finished deliverable.")]


@tool("publish", PublishArgs)
def publish(ctx: ToolContext, session: Session, args: PublishArgs) -> dict[str, Any]:
    """Publish a finished file from the workspace to the company's published folder."""
    workspace = Workspace(ctx.workspace_root())
    source = workspace.resolve(args.path)
    if not source.is_file():
        raise ToolError(f"no such file in the workspace: {args.path}")
    content = workspace.read(args.path)
    target_dir = ctx.published_root()
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / source.name
    shutil.copyfile(source, target)
    data = content.encode("utf-8")
    digest = hashlib.sha256(data).hexdigest()
    session.execute(
        insert(Artifact)
        .values(
            issue_id=ctx.issue_id,
            path=f"published/{source.name}",
            sha256=digest,
            size_bytes=len(data),
            content_type=mimetypes.guess_type(source.name)[0] or "text/plain",
            content=content,
            agent_id=ctx.agent.id,
            run_id=ctx.run_id,
        )
        .on_conflict_do_nothing()
    )
    published = target.relative_to(ctx.settings.data_path).as_posix()
    return {"published": published, "sha256": digest}
