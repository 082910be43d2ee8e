"""Read models for people: plain dicts the CLI renders as tables or JSON."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.models import Agent, Comment, Issue, IssueDependency, IssueEvent, LLMCall
from db.sqlfiles import query
from db.store import Executor, cost_so_far, get_issue, get_project, latest_checks
from db.store.records import CheckRunRecord

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
    "project_id",
    "merged_sha",
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
        "working": working(session, issue_id),
        **issue_evidence(session, issue.id, issue.project_id),
    }


def working(db: Executor, issue_id: int) -> dict[str, Any] | None:
    """What the run holding the issue is doing now, since when, on which host; None when no run holds it."""
    row = db.execute(query("board", "working"), {"issue_id": issue_id}).first()
    return dict(row._mapping) if row is not None else None


def issue_evidence(db: Executor, issue_id: int, project_id: int | None) -> dict[str, Any]:
    """A project issue's code: its project and branch, the last recorded commit (diff stat), the latest checks.

    ``project`` and ``commit`` are None, ``checks`` empty, for an issue of the document project.
    """
    if project_id is None:
        return {"project": None, "commit": None, "checks": []}
    project = get_project(db, project_id)
    branch = f"hq/issue-{issue_id}"  # projects.repo.repository.issue_branch: the db layer does not import agents
    commit = None
    row = db.execute(query("projects", "latest_commit"), {"issue_id": issue_id}).first()
    if row is not None:
        header, _, stat = (row.content or "").partition("\n\n")
        lines = dict(line.split(" ", 1) for line in header.splitlines() if " " in line)
        stat = stat.strip("\n")
        commit = {
            "sha": row.commit_sha,
            "branch": lines.get("branch", branch),
            "base": lines.get("base"),
            "diff_stat": stat,
            "summary": diff_summary(stat),
            "recorded_at": row.created_at,
        }
    return {
        "project": {"id": project.id, "name": project.name, "base_branch": project.base_branch, "branch": branch},
        "commit": commit,
        "checks": [check_fields(check) for check in latest_checks(db, issue_id)],
    }


def diff_summary(stat: str) -> str:
    """The last line of ``git diff --stat`` ("2 files changed, 10 insertions(+)"), or "no changes"."""
    lines = [line.strip() for line in stat.splitlines() if line.strip()]
    return lines[-1] if lines else "no changes"


def check_fields(check: CheckRunRecord) -> dict[str, Any]:
    return {
        "id": check.id,
        "stage": check.stage,
        "command": check.command,
        "exit_code": check.exit_code,
        "ok": check.ok,
        "duration_ms": check.duration_ms,
        "sandbox": check.sandbox,
        "commit_sha": check.commit_sha,
        "output_tail": check.output_tail,
        "created_at": check.created_at,
    }


def check_verdicts(checks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each command's latest result among ``checks`` (check_fields dicts), in the order the commands first ran."""
    latest: dict[str, dict[str, Any]] = {}
    for check in checks:  # oldest first: a later run of a command replaces its result, keeping its place
        latest[check["command"]] = check
    return [{"command": c["command"], "ok": c["ok"], "exit_code": c["exit_code"]} for c in latest.values()]


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


def review_summary(db: Executor, issue_id: int, project_id: int | None) -> dict[str, Any]:
    """What `hq approvals` shows of a project issue: project, the diff stat's summary line, each check's verdict."""
    if project_id is None:
        return {"project": None, "changes": None, "checks": []}
    evidence = issue_evidence(db, issue_id, project_id)
    commit = evidence["commit"]
    return {
        "project": evidence["project"]["name"],
        "changes": commit["summary"] if commit is not None else None,
        "checks": check_verdicts(evidence["checks"]),
    }
