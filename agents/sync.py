"""Roster → `agents` table: upsert by slug, pause what was removed, re-target open work.

A removed role is paused, never deleted, so history (events, cost rows) keeps
its references. After a reorganisation the sync itself moves open escalations,
reviewer assignments and unstarted work of removed roles to the new chain of
command, so no issue waits on someone who is no longer there.

A sync with nothing to do writes nothing: unchanged agent rows are not rewritten
and no issue is locked, so `hq run` starting (which syncs) never stalls claims and
a row's xmin only moves when its values did. The issue moves go through the store
(db/store/roster.py), the one door for writes to issues.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import func, or_, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from agents.roster import Roster, load_roster
from config.log import get_logger
from config.vocabulary import OPEN_STATUSES
from db.models import Agent
from db.store.agents import active_chain, all_agents, next_manager
from db.store.executor import Executor
from db.store.records import AgentRecord
from db.store.roster import (
    escalations_off_chain,
    lock_roster,
    retarget_assignee,
    retarget_escalation,
    retarget_reviewer,
    reviews_to_check,
    unstarted_work_of_removed,
)

ACTOR = "system:roster"
__all__ = ["ACTOR", "OPEN_STATUSES", "SyncReport", "ensure_roster", "retarget_open_work", "sync_roster"]

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
    lock_roster(session)
    existing = {a.slug: a for a in session.scalars(select(Agent))}
    for _depth, role in roster.walk():
        spec = role.spec
        values: dict[str, Any] = {
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
        if current is not None and all(getattr(current, column) == value for column, value in values.items()):
            continue  # not even an upsert: ON CONFLICT locks the row it leaves alone, and heartbeat leases wait
        statement = insert(Agent).values(slug=spec.slug, **values)
        changed = tuple_(*(getattr(Agent, c) for c in values)).is_distinct_from(
            tuple_(*(getattr(statement.excluded, c) for c in values))
        )
        session.execute(statement.on_conflict_do_update(index_elements=["slug"], set_=values, where=changed))
    ids = {slug: agent_id for slug, agent_id in session.execute(select(Agent.slug, Agent.id))}
    for slug, role in roster.roles.items():
        manager = role.spec.reports_to
        reviewer = roster.reviewer_of(slug)
        manager_id = ids[manager] if manager else None
        reviewer_id = ids[reviewer] if reviewer else None
        session.execute(
            update(Agent)
            .where(
                Agent.slug == slug,
                or_(Agent.manager_id.is_distinct_from(manager_id), Agent.reviewer_id.is_distinct_from(reviewer_id)),
            )
            .values(manager_id=manager_id, reviewer_id=reviewer_id)
        )
    for slug, agent in existing.items():
        if slug not in roster.roles and agent.paused_reason != "removed":
            session.execute(
                update(Agent)
                .where(Agent.id == agent.id, Agent.paused_reason.is_distinct_from("removed"))
                .values(status="paused", paused_reason="removed")
            )
            report.removed.append(slug)
    report.retargeted = retarget_open_work(session)
    if report.summary() != "unchanged":
        log.info("roster.synced", summary=report.summary())
    return report


def retarget_open_work(db: Executor) -> list[str]:
    """Point open escalations, reviews and unstarted work at the current chain of command.

    Returns one line per change (`#12 assignee a->b`), by issue, for `hq agents sync`
    to print. Unstarted work moves first, so the review and escalation rules then
    see the issue's new owner.
    """
    lock_roster(db)
    agents = all_agents(db)
    changes: list[tuple[int, int, str]] = []
    # Unstarted work of a removed role goes up to the nearest active manager for re-routing.
    for issue in unstarted_work_of_removed(db):
        owner = agents[_id(issue.assignee_id)]
        manager = next_manager(db, owner.id)
        if manager is not None and retarget_assignee(db, issue, manager) is not None:
            changes.append((issue.id, 0, f"#{issue.id} assignee {owner.slug}->{manager.slug}"))
    # A review waits on the author's current reviewer, and only an active one.
    for issue in reviews_to_check(db):
        owner = agents[_id(issue.assignee_id)]
        reviewer = agents.get(owner.reviewer_id) if owner.reviewer_id is not None else None
        if reviewer is not None and not reviewer.active:
            reviewer = next_manager(db, owner.id)
        if reviewer is None or reviewer.id == issue.reviewer_id:
            continue
        if retarget_reviewer(db, issue, reviewer) is not None:
            before = agents[_id(issue.reviewer_id)].slug
            changes.append((issue.id, 1, f"#{issue.id} reviewer {before}->{reviewer.slug}"))
    # An escalation must sit with an active manager in the owner's current chain.
    for issue in escalations_off_chain(db):
        chain = active_chain(db, issue.assignee_id)
        target = _next_unclimbed(chain, issue.escalation_chain)
        if target is None or target.id == issue.escalated_to_id:
            continue
        if retarget_escalation(db, issue, target) is not None:
            before = agents[_id(issue.escalated_to_id)].slug
            changes.append((issue.id, 2, f"#{issue.id} escalation {before}->{target.slug}"))
    return [line for _issue, _kind, line in sorted(changes)]


def _id(agent_id: int | None) -> int:
    """The queries only return issues whose agent columns are set; this says so to the type checker."""
    assert agent_id is not None
    return agent_id


def _next_unclimbed(chain: list[AgentRecord], climbed: list[str]) -> AgentRecord | None:
    """The nearest manager in the new chain the escalation has not already passed through."""
    return next((m for m in chain if m.slug not in climbed), chain[-1] if chain else None)


def ensure_roster(session: Session, roles_path: Path) -> None:
    """On a database that has never seen the roster, load it so agent slugs resolve."""
    if session.scalar(select(func.count()).select_from(Agent)) == 0:
        sync_roster(session, load_roster(roles_path))
