"""Agents and issues as the store's records hold them, built without a database (for pure workflow logic)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from agents.roster import load_roster
from db.store import AgentRecord, IssueRecord
from tests.support.roster import ROLES


def company(paused: tuple[str, ...] = ()) -> dict[int, AgentRecord]:
    roster = load_roster(ROLES)
    ids = {slug: number for number, slug in enumerate(sorted(roster.roles), start=1)}
    agents = {}
    for slug, role in roster.roles.items():
        spec = role.spec
        agents[ids[slug]] = AgentRecord(
            id=ids[slug],
            slug=slug,
            title=spec.title,
            tier=spec.tier,
            status="paused" if slug in paused else "active",
            paused_reason=None,
            workflows=tuple(spec.workflows),
            toolsets=tuple(spec.toolsets),
            skills=tuple(s.model_dump() for s in spec.skills),
            checklist=tuple(spec.checklist),
            monthly_budget_usd=Decimal(spec.monthly_budget_usd),
            manager_id=ids[spec.reports_to] if spec.reports_to else None,
            reviewer_id=None,
        )
    return agents


def by_slug(agents: dict[int, AgentRecord], slug: str) -> AgentRecord:
    return next(a for a in agents.values() if a.slug == slug)


def reports(agents: dict[int, AgentRecord], manager: str) -> list[AgentRecord]:
    boss = by_slug(agents, manager)
    return sorted((a for a in agents.values() if a.manager_id == boss.id and a.active), key=lambda a: a.slug)


def issue(title: str, body: str = "", project_id: int | None = 1) -> IssueRecord:
    now = dt.datetime.now(dt.UTC)
    return IssueRecord(
        id=1, title=title, body=body, status="backlog", priority=5, assignee_id=None, reviewer_id=None, goal_id=None,
        parent_id=None, playbook=None, module_key=None, labels=[], needs_approval=False, budget_usd=Decimal(2),
        spent_usd=Decimal(0), reserved_usd=Decimal(0), attempts=0, max_attempts=3, review_rounds=0,
        quality_score=None, blocked_reason=None, escalated_to_id=None, escalation_chain=[], unmet_deps=0,
        lease_owner=None, lease_until=None, created_by="human:test", idempotency_key=None, created_at=now,
        updated_at=now, status_changed_at=now, done_at=None, project_id=project_id,
    )  # fmt: skip
