"""Toolset `delegate`: hand work to the caller's own direct reports, and only to them.

A sub-issue's budget is carved out of the parent's (db/store/issues.py
``create_funded_issue``), never added to the company's money: asking for more
than the parent has left is refused, and what the child leaves unused comes
back to the parent when it ends.
"""

from __future__ import annotations

import hashlib
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from agents.tools.context import ToolContext
from agents.tools.registry import tool
from config.errors import ToolError, ToolRefused
from db import store
from db.store import AgentRecord, CarveRefused, IssueDraft


class SubissueArgs(BaseModel):
    title: Annotated[str, Field(min_length=1, max_length=500)]
    body: Annotated[str, Field(max_length=50_000)] = ""
    assignee: Annotated[str, Field(description="Slug of one of your direct reports.")]
    depends_on: Annotated[list[int], Field(description="Ids of issues that must finish first.")] = []
    budget_usd: Annotated[
        float | None, Field(ge=0, description="Share of the parent's budget; default a quarter of what is left.")
    ] = None


class AssignArgs(BaseModel):
    issue: Annotated[int, Field(gt=0, description="The issue id.")]
    slug: Annotated[str, Field(description="Slug of one of your direct reports.")]


def direct_report(session: Session, ctx: ToolContext, slug: str) -> AgentRecord:
    agent = store.agent_by_slug(session, slug)
    if agent is None or agent.manager_id != ctx.agent.id:
        raise ToolError(f"{slug!r} is not one of your direct reports; you can only delegate to them")
    if agent.status != "active":
        raise ToolError(f"{slug!r} is paused; pick another report")
    return agent


@tool("delegate", SubissueArgs, creates_issues=True)
def create_subissue(ctx: ToolContext, session: Session, args: SubissueArgs) -> dict[str, Any]:
    """Create a sub-issue of the current issue for one of your direct reports."""
    if ctx.issue_id is None:
        raise ToolError("create_subissue needs a current issue to be the parent")
    parent = store.get_issue(session, ctx.issue_id)
    assignee = direct_report(session, ctx, args.assignee)
    left = parent.budget_left
    budget = Decimal(str(args.budget_usd)) if args.budget_usd is not None else left / 4
    if budget > left:
        raise ToolRefused(f"budget {budget} exceeds what is left on the parent ({left})")
    draft = IssueDraft(title=args.title, body=args.body, priority=parent.priority, depends_on=args.depends_on)
    digest = hashlib.sha256(" ".join(args.title.lower().split()).encode()).hexdigest()[:16]
    try:
        child = store.create_funded_issue(
            session,
            draft,
            parent_id=parent.id,
            amount_usd=budget,
            actor=ctx.actor,
            assignee=assignee,
            goal_id=parent.goal_id,
            max_attempts=parent.max_attempts,
            idempotency_key=f"subissue:{parent.id}:{digest}",
        )
    except CarveRefused as refused:
        raise ToolRefused(f"no sub-issue opened: {refused.message}") from None
    return {"issue_id": child.id, "assignee": assignee.slug, "status": child.status}


@tool("delegate", AssignArgs)
def assign(ctx: ToolContext, session: Session, args: AssignArgs) -> dict[str, Any]:
    """Give an issue you own to one of your direct reports."""
    issue = store.get_issue(session, args.issue, lock=True)
    if issue.assignee_id != ctx.agent.id:
        raise ToolError(f"issue {issue.id} is not assigned to you")
    if issue.status not in ("backlog", "todo"):
        raise ToolError(f"issue {issue.id} is {issue.status}; only backlog or todo issues can be reassigned")
    report = direct_report(session, ctx, args.slug)
    moved = store.reassign_owned(session, issue, owner_id=ctx.agent.id, to=report)
    if moved is None:
        raise ToolError(f"issue {issue.id} changed meanwhile; not reassigned")
    return {"issue_id": issue.id, "assignee": report.slug, "status": moved.status}
