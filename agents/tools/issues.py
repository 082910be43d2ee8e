"""Toolset `issues`: talk about the current issue, say it is stuck, or ask for research.

A research question is paid for by the asking issue: its budget is carved out
of what the issue has left (``RESEARCH_SHARE`` of it, at most the default
issue budget) and what the researcher leaves unused comes back when the
research issue ends (db/store/issues.py ``create_funded_issue``). An issue
that cannot fund it gets a refusal, not a crash.
"""

from __future__ import annotations

import hashlib
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from agents.tools.context import Blocked, ToolContext, WaitingOnResearch
from agents.tools.registry import tool
from config.errors import ToolError, ToolRefused
from config.vocabulary import RESEARCH_ROLE
from db import store
from db.store import AgentRecord, CarveRefused, IssueDraft

RESEARCH_SHARE = Decimal("0.5")
"""Of what the asking issue has left, the most one question takes: the issue keeps the rest to finish its turn."""


class CommentArgs(BaseModel):
    body: Annotated[
        str,
        Field(min_length=1, max_length=20_000, description="Markdown comment for the humans and agents on this issue."),
    ]


class BlockedArgs(BaseModel):
    reason: Annotated[
        str, Field(min_length=3, max_length=2_000, description="What is missing and who could provide it.")
    ]


class ResearchArgs(BaseModel):
    question: Annotated[
        str,
        Field(
            min_length=10,
            max_length=2_000,
            description="One precise question the researcher should answer, with what the answer is for.",
        ),
    ]


def _current_issue_id(ctx: ToolContext) -> int:
    if ctx.issue_id is None:
        raise ToolError("this tool needs an issue to work on")
    return ctx.issue_id


def _digest(text: str) -> str:
    return hashlib.sha256(" ".join(text.lower().split()).encode()).hexdigest()[:16]


@tool("issues", CommentArgs)
def comment(ctx: ToolContext, session: Session, args: CommentArgs) -> dict[str, Any]:
    """Add a comment to the current issue."""
    issue_id = _current_issue_id(ctx)
    comment_id = store.add_comment(
        session,
        issue_id,
        args.body,
        author=ctx.actor,
        kind="note",
        run_id=ctx.run_id,
        idempotency_key=f"comment:{issue_id}:{ctx.run_id}:{_digest(args.body)}",
    )
    return {"comment_id": comment_id, "issue_id": issue_id}


@tool("issues", BlockedArgs)
def mark_blocked(ctx: ToolContext, session: Session, args: BlockedArgs) -> dict[str, Any]:
    """Say the current issue cannot be finished; it will be escalated to your manager with this reason."""
    issue_id = _current_issue_id(ctx)
    store.add_comment(
        session,
        issue_id,
        f"Blocked: {args.reason}",
        author=ctx.actor,
        kind="note",
        run_id=ctx.run_id,
        idempotency_key=f"blocked:{issue_id}:{ctx.run_id}",
    )
    return {"issue_id": issue_id, "reason": args.reason, "outcome": Blocked(reason=args.reason).model_dump()}


def find_researcher(session: Session) -> AgentRecord:
    """The research role if active, else the first active executor with a research skill."""
    agents = [a for a in store.all_agents(session).values() if a.active]
    for agent in agents:
        if agent.slug == RESEARCH_ROLE:
            return agent
    for agent in agents:
        if "execute" in agent.workflows and any("research" in str(s.get("name", "")) for s in agent.skills):
            return agent
    raise ToolError("no active researcher in the roster; mark the issue blocked instead")


@tool("issues", ResearchArgs, creates_issues=True)
def ask_research(ctx: ToolContext, session: Session, args: ResearchArgs) -> dict[str, Any]:
    """Ask the researcher a question. This issue pauses until the answer is in, then resumes with it."""
    issue_id = _current_issue_id(ctx)
    asking = store.get_issue(session, issue_id)
    researcher = find_researcher(session)
    budget = min(asking.budget_left * RESEARCH_SHARE, Decimal(str(ctx.settings.default_issue_budget_usd)))
    title = "Research: " + " ".join(args.question.split())
    draft = IssueDraft(
        title=title[:500],
        body=f"Asked by {ctx.actor} while working on issue #{issue_id}.\n\nQuestion:\n{args.question}",
        priority=max(0, asking.priority - 1),
        labels=["research"],
    )
    try:
        research = store.create_funded_issue(
            session,
            draft,
            parent_id=issue_id,
            amount_usd=budget,
            actor=ctx.actor,
            assignee=researcher,
            max_attempts=ctx.settings.max_attempts,
            goal_id=asking.goal_id,
            idempotency_key=f"research:{issue_id}:{_digest(args.question)}",
        )
    except CarveRefused as refused:
        raise ToolRefused(f"no research issue opened: {refused.message}") from None
    # The question as asked, kept apart from the body so the answer can be paired with it (prompts.py).
    store.add_comment(
        session,
        research.id,
        args.question,
        author=ctx.actor,
        kind="research",
        run_id=ctx.run_id,
        idempotency_key=f"research-question:{research.id}",
    )
    store.add_dependencies(session, issue_id, [research.id])
    return {
        "research_issue_id": research.id,
        "assignee": researcher.slug,
        "note": "This issue will resume once the research issue is done.",
        "outcome": WaitingOnResearch(research_issue_id=research.id).model_dump(),
    }
