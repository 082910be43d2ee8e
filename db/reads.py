"""Read models for people: plain dicts the CLI renders as tables or JSON."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.models import Agent, Comment, Issue, IssueDependency, IssueEvent, LLMCall
from db.sqlfiles import query
from db.store import cost_so_far, get_issue

ISSUE_FIELDS = (
    "id",
    "title",
    "body",
    "status",
    "priority",
    "needs_approval",
    "budget_usd",
    "spent_usd",
    "reserved_usd",
    "attempts",
    "max_attempts",
    "review_rounds",
    "quality_score",
    "blocked_reason",
    "escalation_chain",
    "parent_id",
    "goal_id",
    "playbook",
    "module_key",
    "labels",
    "unmet_deps",
    "created_by",
    "created_at",
    "updated_at",
    "status_changed_at",
    "done_at",
)


def _slug_map(session: Session, ids: set[int | None]) -> dict[int, str]:
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    return {row.id: row.slug for row in session.execute(select(Agent.id, Agent.slug).where(Agent.id.in_(wanted)))}


def issue_detail(session: Session, issue_id: int) -> dict[str, Any]:
    issue = get_issue(session, issue_id)
    slugs = _slug_map(session, {issue.assignee_id, issue.reviewer_id, issue.escalated_to_id})
    fields = {name: getattr(issue, name) for name in ISSUE_FIELDS}
    fields.update(
        assignee=slugs.get(issue.assignee_id or 0),
        reviewer=slugs.get(issue.reviewer_id or 0),
        escalated_to=slugs.get(issue.escalated_to_id or 0),
    )
    dependencies = [
        dict(row._mapping)
        for row in session.execute(
            select(Issue.id, Issue.title, Issue.status)
            .join(IssueDependency, IssueDependency.depends_on_id == Issue.id)
            .where(IssueDependency.issue_id == issue_id)
            .order_by(Issue.id)
        )
    ]
    events = session.scalars(select(IssueEvent).where(IssueEvent.issue_id == issue_id).order_by(IssueEvent.id))
    comments = session.scalars(select(Comment).where(Comment.issue_id == issue_id).order_by(Comment.id))
    timeline = [
        {
            "at": e.created_at,
            "kind": "status",
            "change": f"{e.from_status or '(new)'} -> {e.to_status}",
            "actor": e.actor,
            "workflow": e.workflow,
            "note": e.reason,
        }
        for e in events
    ] + [
        {
            "at": c.created_at,
            "kind": "comment",
            "change": f"comment ({c.kind})",
            "actor": c.author,
            "workflow": None,
            "note": c.body,
        }
        for c in comments
    ]
    timeline.sort(key=lambda item: cast(dt.datetime, item["at"]))
    return {
        "issue": fields,
        "dependencies": dependencies,
        "timeline": timeline,
        "cost_usd": cost_so_far(session, issue_id),
    }


def issue_tree(session: Session, issue_id: int) -> list[dict[str, Any]]:
    """The issue and its sub-issues, depth-first, each with its own model cost."""
    return [dict(row._mapping) for row in session.execute(query("issues", "issue_tree"), {"root_id": issue_id})]


def month_spend(session: Session, agent_id: int) -> Decimal:
    """What an agent's model calls have cost since the first of this month (UTC)."""
    return session.scalar(
        select(func.coalesce(func.sum(LLMCall.cost_usd), 0)).where(
            LLMCall.agent_id == agent_id,
            LLMCall.created_at >= func.date_trunc("month", func.now()),
        )
    ) or Decimal(0)
