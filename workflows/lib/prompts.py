"""What a model is told: the agent's AGENTS.md as the system prompt, the rows as JSON context.

Everything here reads rows; nothing writes. Long texts are cut so a prompt's
size (and so its reserved cost) stays bounded whatever people put in issues.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db import store
from db.models import Comment
from db.store import IssueRecord
from projects.document.project import latest_artifacts
from workflows.lib.context import WorkflowContext

BODY_LIMIT = 6000
COMMENT_LIMIT = 1500


def system_prompt(ctx: WorkflowContext, session: Session) -> str:
    agent = ctx.agent
    manager = store.get_agent(session, agent.manager_id) if agent.manager_id else None
    reports = [report.slug for report in store.active_reports(session, agent.id)]
    skills = "; ".join(f"{s.get('name')}: {s.get('description')}" for s in agent.skills)
    header = [
        f"You are {agent.title} ({agent.slug}) at Heartbeat HQ, an agent company whose state is rows in PostgreSQL.",
        f"You report to {manager.slug if manager else 'the board (humans)'}."
        + (f" Your direct reports: {', '.join(reports)}." if reports else ""),
        f"Your skills: {skills}",
        "Work only through your tools and the JSON answers you are asked for. Be concrete and brief.",
        "Never include credentials, keys or tokens in anything you write.",
    ]
    return "\n".join(header) + "\n\n" + ctx.instructions


def issue_brief(issue: IssueRecord) -> dict[str, Any]:
    return {
        "id": issue.id,
        "title": issue.title,
        "body": issue.body[:BODY_LIMIT],
        "priority": issue.priority,
        "labels": list(issue.labels),
        "parent_id": issue.parent_id,
        "needs_approval": issue.needs_approval,
        "attempts": issue.attempts,
        "review_rounds": issue.review_rounds,
    }


def comments(session: Session, issue_id: int, limit: int = 20) -> list[dict[str, Any]]:
    rows = session.scalars(select(Comment).where(Comment.issue_id == issue_id).order_by(Comment.id.desc()).limit(limit))
    return [{"author": c.author, "kind": c.kind, "body": c.body[:COMMENT_LIMIT]} for c in reversed(list(rows))]


def related(session: Session, issues: list[IssueRecord]) -> list[dict[str, Any]]:
    return [
        {
            "id": i.id,
            "title": i.title,
            "status": i.status,
            "labels": list(i.labels),
            "artifacts": latest_artifacts(session, i.id),
        }
        for i in issues
    ]


def research_answers(session: Session, issue: IssueRecord) -> list[dict[str, Any]]:
    """Finished research sub-issues of this issue: the question and what the researcher wrote."""
    answers = []
    for child in store.children(session, issue.id):
        if "research" in child.labels and child.status == "done":
            written = latest_artifacts(session, child.id, content_limit=3000)
            answers.append(
                {
                    "issue_id": child.id,
                    "question": store.research_question(session, child)[:1000],
                    "answer": "\n\n".join(a["excerpt"] for a in written),
                }
            )
    return answers


def work_context(ctx: WorkflowContext, session: Session, issue: IssueRecord, *, stitch: bool) -> dict[str, Any]:
    deps = [d for d in store.dependencies(session, issue.id) if "research" not in d.labels]
    context: dict[str, Any] = {
        "agent": {
            "slug": ctx.agent.slug,
            "title": ctx.agent.title,
            "checklist": list(ctx.agent.checklist),
            "skills": [s.get("name") for s in ctx.agent.skills],
        },
        "issue": issue_brief(issue),
        "round": issue.review_rounds + 1,
        "comments": comments(session, issue.id),
        "dependencies": related(session, deps),
        "research": research_answers(session, issue),
        "deliverable_path": f"{'final' if stitch else 'deliverable'}-{issue.id}.md",
    }
    if stitch:
        parts = [c for c in store.children(session, issue.id) if "research" not in c.labels]
        context["children"] = related(session, parts)
        context["playbook"] = issue.playbook
        playbook = ctx.playbooks.get(issue.playbook) if ctx.playbooks else None
        if playbook is not None:
            context["quality_checklist"] = list(playbook.quality_checklist)
    return context
