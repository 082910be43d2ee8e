"""The chain of command as workflow code reads it: agents as records, managers nearest first."""

from __future__ import annotations

from config.errors import NotFoundError
from db.sqlfiles import query
from db.store.executor import Executor
from db.store.records import AgentRecord


def all_agents(db: Executor) -> dict[int, AgentRecord]:
    return {a.id: a for a in map(AgentRecord.of, db.execute(query("agents", "all_agents")))}


def get_agent(db: Executor, agent_id: int) -> AgentRecord | None:
    row = db.execute(query("agents", "agent_by_id"), {"agent_id": agent_id}).first()
    return AgentRecord.of(row) if row is not None else None


def agent_by_slug(db: Executor, slug: str) -> AgentRecord | None:
    row = db.execute(query("agents", "agent_by_slug"), {"slug": slug}).first()
    return AgentRecord.of(row) if row is not None else None


def active_reports(db: Executor, agent_id: int) -> list[AgentRecord]:
    return [AgentRecord.of(r) for r in db.execute(query("agents", "active_reports"), {"agent_id": agent_id})]


def active_chain(db: Executor, agent_id: int | None) -> list[AgentRecord]:
    """The agent's active managers, nearest first; empty for the root or no agent."""
    if agent_id is None:
        return []
    return [AgentRecord.of(r) for r in db.execute(query("agents", "active_chain"), {"agent_id": agent_id})]


def next_manager(db: Executor, agent_id: int | None) -> AgentRecord | None:
    chain = active_chain(db, agent_id)
    return chain[0] if chain else None


def require_agent(db: Executor, slug: str) -> AgentRecord:
    """The agent named ``slug``, or a one-line error a person can act on."""
    agent = agent_by_slug(db, slug)
    if agent is None:
        raise NotFoundError(f"no agent named {slug!r} (see `hq agents`)")
    return agent
