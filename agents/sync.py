"""Roster → `agents` table: upsert by slug, pause what was removed, re-target open work.

A removed role is paused, never deleted, so history (events, cost rows) keeps
its references. After a reorganisation the sync itself moves open escalations,
reviewer assignments and unstarted work of removed roles to the new chain of
command, so no issue waits on someone who is no longer there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from agents.roster import Roster
from config.log import get_logger
from db.models import Agent, Issue

ACTOR = "system:roster"
OPEN_STATUSES = ("backlog", "todo", "in_progress", "in_review", "pending_approval", "approved", "deploying", "blocked")

log = get_logger(__name__)


@dataclass
class SyncReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    restored: list[str] = field(default_factory=list)
    retargeted: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = [f"{len(v)} {k}" for k, v in vars(self).items() if v]
        return ", ".join(parts) if parts else "unchanged"


def sync_roster(session: Session, roster: Roster) -> SyncReport:
    """Make the agents table match the roster. Call inside a transaction."""
    report = SyncReport()
    existing = {a.slug: a for a in session.scalars(select(Agent).with_for_update())}
    for _depth, role in roster.walk():
        spec = role.spec
        values = {
            "title": spec.title,
            "tier": spec.tier,
            "heartbeat_seconds": max(1, round(spec.heartbeat_seconds)),
            "jitter_seconds": round(spec.jitter_seconds),
            "workflows": list(spec.workflows),
            "toolsets": list(spec.toolsets),
            "skills": [s.model_dump() for s in spec.skills],
            "checklist": list(spec.checklist),
            "monthly_budget_usd": Decimal(str(spec.monthly_budget_usd)),
            "source_path": str(role.path),
            "definition_sha256": role.sha256,
        }
        current = existing.get(spec.slug)
        if current is None:
            report.created.append(spec.slug)
        elif current.definition_sha256 != role.sha256:
            report.updated.append(spec.slug)
        if current is not None and current.paused_reason == "removed":
            values.update(status="active", paused_reason=None)
            report.restored.append(spec.slug)
        statement = insert(Agent).values(slug=spec.slug, **values)
        session.execute(statement.on_conflict_do_update(index_elements=["slug"], set_=values))
    ids = dict(session.execute(select(Agent.slug, Agent.id)).tuples().all())
    for slug, role in roster.roles.items():
        manager = role.spec.reports_to
        reviewer = roster.reviewer_of(slug)
        session.execute(
            update(Agent)
            .where(Agent.slug == slug)
            .values(
                manager_id=ids[manager] if manager else None,
                reviewer_id=ids[reviewer] if reviewer else None,
            )
        )
    for slug, agent in existing.items():
        if slug not in roster.roles and agent.paused_reason != "removed":
            session.execute(update(Agent).where(Agent.id == agent.id).values(status="paused", paused_reason="removed"))
            report.removed.append(slug)
    session.flush()
    report.retargeted = retarget_open_work(session)
    if report.summary() != "unchanged":
        log.info("roster.synced", summary=report.summary())
    return report


def active_chain(session: Session, agent_id: int) -> list[Agent]:
    """The agent's managers that are active, nearest first (paused ones are skipped, not stops)."""
    agents = {a.id: a for a in session.scalars(select(Agent))}
    chain = []
    current = agents.get(agent_id)
    seen = set()
    while current is not None and current.manager_id is not None and current.id not in seen:
        seen.add(current.id)
        current = agents.get(current.manager_id)
        if current is not None and current.status == "active":
            chain.append(current)
    return chain


def retarget_open_work(session: Session) -> list[str]:
    """Point open escalations, reviews and unstarted work at the current chain of command."""
    agents = {a.id: a for a in session.scalars(select(Agent))}
    changes: list[str] = []

    def nearest_active_manager(agent_id: int | None) -> Agent | None:
        chain = active_chain(session, agent_id) if agent_id is not None else []
        return chain[0] if chain else None

    open_issues = session.scalars(
        select(Issue).where(Issue.status.in_(OPEN_STATUSES)).with_for_update(skip_locked=True)
    ).all()
    for issue in open_issues:
        owner = agents.get(issue.assignee_id) if issue.assignee_id else None
        # Unstarted work of a removed role goes up to the nearest active manager for re-routing.
        if owner is not None and owner.paused_reason == "removed" and issue.status in ("backlog", "todo"):
            manager = nearest_active_manager(owner.id)
            if manager is not None:
                issue.assignee_id = manager.id
                if issue.status == "todo" and "execute" not in manager.workflows:
                    issue.status = "backlog"
                changes.append(f"#{issue.id} assignee {owner.slug}->{manager.slug}")
                owner = manager
        # A review waits on the author's current reviewer, and only an active one.
        if owner is not None and issue.reviewer_id is not None:
            wanted = owner.reviewer_id
            reviewer = agents.get(wanted) if wanted else None
            if reviewer is not None and reviewer.status != "active":
                reviewer = nearest_active_manager(owner.id)
            if reviewer is not None and reviewer.id != issue.reviewer_id:
                changes.append(f"#{issue.id} reviewer {agents[issue.reviewer_id].slug}->{reviewer.slug}")
                issue.reviewer_id = reviewer.id
        # An escalation must sit with an active manager in the owner's current chain.
        if issue.status == "blocked" and issue.escalated_to_id is not None and owner is not None:
            chain = active_chain(session, owner.id)
            if issue.escalated_to_id not in {a.id for a in chain}:
                target = _next_unclimbed(chain, issue.escalation_chain)
                if target is not None and target.id != issue.escalated_to_id:
                    changes.append(f"#{issue.id} escalation {agents[issue.escalated_to_id].slug}->{target.slug}")
                    issue.escalated_to_id = target.id
    session.flush()
    return changes


def _next_unclimbed(chain: list[Agent], climbed: list[str]) -> Agent | None:
    """The nearest manager in the new chain the escalation has not already passed through."""
    return next((m for m in chain if m.slug not in climbed), chain[-1] if chain else None)


def ensure_roster(session: Session, roles_path) -> None:  # type: ignore[no-untyped-def]
    """On a database that has never seen the roster, load it so agent slugs resolve."""
    from sqlalchemy import func

    from agents.roster import load_roster

    if session.scalar(select(func.count()).select_from(Agent)) == 0:
        sync_roster(session, load_roster(roles_path))
