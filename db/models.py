"""Typed ORM models mirroring db/sql/schema.sql (a test keeps the two in step).

The SQL file is the definition; these classes are how Python reads and writes it.
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any, ClassVar

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    ForeignKey,
    Identity,
    Integer,
    Numeric,
    SmallInteger,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import DateTime

TIMESTAMPTZ = DateTime(timezone=True)
MONEY = Numeric(12, 4)
LEDGER = Numeric(14, 6)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dt.datetime: TIMESTAMPTZ,
        str: Text(),
        uuid.UUID: UUID(as_uuid=True),
        dict[str, Any]: JSONB,
        list[Any]: JSONB,
        list[str]: ARRAY(Text()),
    }


def _pk() -> Any:
    return mapped_column(BigInteger, Identity(always=True), primary_key=True)


class Agent(Base):
    __tablename__ = "agents"

    id: Mapped[int] = mapped_column(Integer, Identity(always=True), primary_key=True)
    slug: Mapped[str] = mapped_column(unique=True)
    title: Mapped[str]
    manager_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"))
    reviewer_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"))
    tier: Mapped[str] = mapped_column(server_default="execution")
    heartbeat_seconds: Mapped[int] = mapped_column(server_default="1800")
    jitter_seconds: Mapped[int] = mapped_column(server_default="0")
    workflows: Mapped[list[str]] = mapped_column(server_default="{}")
    toolsets: Mapped[list[str]] = mapped_column(server_default="{}")
    skills: Mapped[list[Any]] = mapped_column(server_default="[]")
    checklist: Mapped[list[Any]] = mapped_column(server_default="[]")
    monthly_budget_usd: Mapped[Decimal | None] = mapped_column(MONEY)
    status: Mapped[str] = mapped_column(server_default="active")
    paused_reason: Mapped[str | None]
    source_path: Mapped[str | None]
    definition_sha256: Mapped[str | None]
    lease_owner: Mapped[uuid.UUID | None]
    lease_until: Mapped[dt.datetime | None]
    last_beat_at: Mapped[dt.datetime | None]
    # Running totals kept by triggers (db/sql/rollups.sql) for the activity report.
    heartbeats: Mapped[int] = mapped_column(BigInteger, server_default="0")
    claims: Mapped[int] = mapped_column(BigInteger, server_default="0")
    failed_beats: Mapped[int] = mapped_column(BigInteger, server_default="0")
    productive_beats: Mapped[int] = mapped_column(BigInteger, server_default="0")
    created_at: Mapped[dt.datetime] = mapped_column(server_default="now()")
    updated_at: Mapped[dt.datetime] = mapped_column(server_default="now()")


class Goal(Base):
    __tablename__ = "goals"

    id: Mapped[int] = _pk()
    title: Mapped[str]
    description: Mapped[str] = mapped_column(server_default="")
    status: Mapped[str] = mapped_column(server_default="active")
    priority: Mapped[int] = mapped_column(SmallInteger, server_default="5")
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"))
    created_by: Mapped[str]
    created_at: Mapped[dt.datetime] = mapped_column(server_default="now()")
    updated_at: Mapped[dt.datetime] = mapped_column(server_default="now()")


class IssueStatus(Base):
    __tablename__ = "issue_statuses"

    name: Mapped[str] = mapped_column(primary_key=True)
    is_terminal: Mapped[bool] = mapped_column(Boolean, server_default="false")
    is_initial: Mapped[bool] = mapped_column(Boolean, server_default="false")
    position: Mapped[int] = mapped_column(SmallInteger, unique=True)


class IssueTransition(Base):
    __tablename__ = "issue_transitions"

    from_status: Mapped[str] = mapped_column(ForeignKey("issue_statuses.name"), primary_key=True)
    to_status: Mapped[str] = mapped_column(ForeignKey("issue_statuses.name"), primary_key=True)
    description: Mapped[str] = mapped_column(server_default="")


class Issue(Base):
    __tablename__ = "issues"

    id: Mapped[int] = _pk()
    title: Mapped[str]
    body: Mapped[str] = mapped_column(server_default="")
    status: Mapped[str] = mapped_column(ForeignKey("issue_statuses.name"), server_default="backlog")
    priority: Mapped[int] = mapped_column(SmallInteger, server_default="5")
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"))
    reviewer_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"))
    goal_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("goals.id"))
    parent_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("issues.id"))
    playbook: Mapped[str | None]
    module_key: Mapped[str | None]
    labels: Mapped[list[str]] = mapped_column(server_default="{}")
    needs_approval: Mapped[bool] = mapped_column(Boolean, server_default="false")
    budget_usd: Mapped[Decimal] = mapped_column(MONEY, server_default="2")
    spent_usd: Mapped[Decimal] = mapped_column(LEDGER, server_default="0")
    reserved_usd: Mapped[Decimal] = mapped_column(LEDGER, server_default="0")
    subtree_cost_usd: Mapped[Decimal] = mapped_column(LEDGER, server_default="0")  # kept by trigger: own + sub-issues'
    attempts: Mapped[int] = mapped_column(server_default="0")
    max_attempts: Mapped[int] = mapped_column(server_default="3")
    review_rounds: Mapped[int] = mapped_column(server_default="0")
    quality_score: Mapped[Decimal | None] = mapped_column(Numeric(4, 3))
    blocked_reason: Mapped[str | None]
    escalated_to_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"))
    escalation_chain: Mapped[list[str]] = mapped_column(server_default="{}")
    unmet_deps: Mapped[int] = mapped_column(server_default="0")
    lease_owner: Mapped[uuid.UUID | None]
    lease_until: Mapped[dt.datetime | None]
    created_by: Mapped[str]
    idempotency_key: Mapped[str | None] = mapped_column(unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(server_default="now()")
    updated_at: Mapped[dt.datetime] = mapped_column(server_default="now()")
    status_changed_at: Mapped[dt.datetime] = mapped_column(server_default="now()")
    done_at: Mapped[dt.datetime | None]
    project_id: Mapped[int | None] = mapped_column(ForeignKey("projects.id"))
    merged_sha: Mapped[str | None]
    reviewed_sha: Mapped[str | None]
    lease_worker: Mapped[str | None]  # host:pid of the run holding the lease (workflows/lib/leases.py)
    doing: Mapped[str | None]  # what that run is doing now, while the lease is live
    doing_since: Mapped[dt.datetime | None]


class Project(Base):
    __tablename__ = "projects"

    id: Mapped[int] = mapped_column(Integer, Identity(always=True), primary_key=True)
    name: Mapped[str]
    repo: Mapped[str]
    base_branch: Mapped[str] = mapped_column(server_default="main")
    created_by: Mapped[str]
    created_at: Mapped[dt.datetime] = mapped_column(server_default="now()")
    removed_at: Mapped[dt.datetime | None]
    team_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"))  # the manager whose reports take its issues
    keep_branches: Mapped[bool] = mapped_column(Boolean, server_default="false")


class CheckRun(Base):
    __tablename__ = "check_runs"

    id: Mapped[int] = _pk()
    issue_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("issues.id"))
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"))
    commit_sha: Mapped[str]
    stage: Mapped[str]
    command: Mapped[str]
    exit_code: Mapped[int]
    duration_ms: Mapped[int]
    output_tail: Mapped[str]
    sandbox: Mapped[str]
    run_id: Mapped[uuid.UUID | None]
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"))
    created_at: Mapped[dt.datetime] = mapped_column(server_default="now()")
    tree_sha: Mapped[str | None]
    env_key: Mapped[str | None]


class IssueDependency(Base):
    __tablename__ = "issue_dependencies"

    issue_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("issues.id"), primary_key=True)
    depends_on_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("issues.id"), primary_key=True)
    created_at: Mapped[dt.datetime] = mapped_column(server_default="now()")


class IssueEvent(Base):
    __tablename__ = "issue_events"

    id: Mapped[int] = _pk()
    issue_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("issues.id"))
    from_status: Mapped[str | None] = mapped_column(ForeignKey("issue_statuses.name"))
    to_status: Mapped[str] = mapped_column(ForeignKey("issue_statuses.name"))
    actor: Mapped[str]
    workflow: Mapped[str | None]
    run_id: Mapped[uuid.UUID | None]
    reason: Mapped[str | None]
    created_at: Mapped[dt.datetime] = mapped_column(server_default="clock_timestamp()")


class Comment(Base):
    __tablename__ = "comments"

    id: Mapped[int] = _pk()
    issue_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("issues.id"))
    author: Mapped[str]
    kind: Mapped[str] = mapped_column(server_default="note")
    body: Mapped[str]
    run_id: Mapped[uuid.UUID | None]
    idempotency_key: Mapped[str | None] = mapped_column(unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(server_default="now()")


class Artifact(Base):
    __tablename__ = "artifacts"
    __table_args__ = (UniqueConstraint("issue_id", "path", "sha256"),)

    id: Mapped[int] = _pk()
    issue_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("issues.id"))
    path: Mapped[str]
    sha256: Mapped[str]
    size_bytes: Mapped[int]
    content_type: Mapped[str] = mapped_column(server_default="text/markdown")
    content: Mapped[str | None]
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"))
    run_id: Mapped[uuid.UUID | None]
    commit_sha: Mapped[str | None]
    created_at: Mapped[dt.datetime] = mapped_column(server_default="now()")


class Approval(Base):
    __tablename__ = "approvals"

    id: Mapped[int] = _pk()
    issue_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("issues.id"))
    kind: Mapped[str]
    status: Mapped[str] = mapped_column(server_default="pending")
    reason: Mapped[str] = mapped_column(server_default="")
    requested_by: Mapped[str]
    amount_usd: Mapped[Decimal | None] = mapped_column(MONEY)
    deadline: Mapped[dt.datetime]
    reminded_at: Mapped[dt.datetime | None]
    escalations: Mapped[int] = mapped_column(server_default="0")
    reminders_sent: Mapped[int] = mapped_column(SmallInteger, server_default="0")
    decided_by: Mapped[str | None]
    decided_at: Mapped[dt.datetime | None]
    decision_note: Mapped[str | None]
    created_at: Mapped[dt.datetime] = mapped_column(server_default="now()")


class LLMCall(Base):
    __tablename__ = "llm_calls"
    __table_args__ = (UniqueConstraint("run_id", "call_seq"),)

    id: Mapped[int] = _pk()
    run_id: Mapped[uuid.UUID]
    call_seq: Mapped[int | None]  # NULL for abandoned and correction rows, which are keyed by their reservation
    issue_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("issues.id"))
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"))
    workflow: Mapped[str | None]
    tier: Mapped[str]
    provider: Mapped[str | None]
    model: Mapped[str | None]
    deployment: Mapped[str | None]
    input_tokens: Mapped[int] = mapped_column(server_default="0")
    output_tokens: Mapped[int] = mapped_column(server_default="0")
    cache_write_tokens: Mapped[int] = mapped_column(server_default="0")  # migration 0012
    cache_read_tokens: Mapped[int] = mapped_column(server_default="0")
    cost_usd: Mapped[Decimal] = mapped_column(Numeric(14, 8), server_default="0")
    reserved_usd: Mapped[Decimal] = mapped_column(Numeric(14, 8), server_default="0")
    latency_ms: Mapped[int | None]
    outcome: Mapped[str]
    error: Mapped[str | None]
    reservation_id: Mapped[uuid.UUID | None]
    budget_month: Mapped[dt.date | None] = mapped_column(Date)  # the month account this row was charged to
    created_at: Mapped[dt.datetime] = mapped_column(server_default="now()")


class BudgetAccount(Base):
    __tablename__ = "budget_accounts"

    scope: Mapped[str] = mapped_column(primary_key=True)
    period: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    limit_usd: Mapped[Decimal] = mapped_column(MONEY)
    spent_usd: Mapped[Decimal] = mapped_column(LEDGER, server_default="0")
    reserved_usd: Mapped[Decimal] = mapped_column(LEDGER, server_default="0")


class BudgetReservation(Base):
    __tablename__ = "budget_reservations"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    run_id: Mapped[uuid.UUID]
    issue_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("issues.id"))
    agent_scope: Mapped[str | None]
    period: Mapped[dt.date] = mapped_column(Date)
    amount_usd: Mapped[Decimal] = mapped_column(LEDGER)
    created_at: Mapped[dt.datetime] = mapped_column(server_default="now()")
    expires_at: Mapped[dt.datetime]


class BudgetCarve(Base):
    """A sub-issue's budget, carved out of its parent's; what the child leaves unused comes back (db/sql/carves.sql)."""

    __tablename__ = "budget_carves"

    child_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("issues.id"), primary_key=True)
    parent_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("issues.id"))
    amount_usd: Mapped[Decimal] = mapped_column(MONEY)
    returned_usd: Mapped[Decimal] = mapped_column(MONEY, server_default="0")
    created_at: Mapped[dt.datetime] = mapped_column(server_default="now()")
    returned_at: Mapped[dt.datetime | None]


class ToolCall(Base):
    __tablename__ = "tool_calls"

    id: Mapped[int] = _pk()
    run_id: Mapped[uuid.UUID]
    step: Mapped[int]
    issue_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("issues.id"))
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"))
    toolset: Mapped[str | None]
    tool: Mapped[str]
    arguments: Mapped[dict[str, Any]] = mapped_column(server_default="{}")
    outcome: Mapped[str]
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    error: Mapped[str | None]
    idempotency_key: Mapped[str] = mapped_column(unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(server_default="now()")


class HeartbeatRun(Base):
    __tablename__ = "heartbeat_runs"

    id: Mapped[int] = _pk()
    run_id: Mapped[uuid.UUID] = mapped_column(unique=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id"))
    worker: Mapped[str]
    started_at: Mapped[dt.datetime] = mapped_column(server_default="clock_timestamp()")
    finished_at: Mapped[dt.datetime | None]
    outcome: Mapped[str | None]
    workflows: Mapped[list[str]] = mapped_column(server_default="{}")
    issues_touched: Mapped[list[int]] = mapped_column(ARRAY(BigInteger), server_default="{}")
    claims: Mapped[int] = mapped_column(server_default="0")
    error: Mapped[str | None]


class Notification(Base):
    __tablename__ = "notifications"

    id: Mapped[int] = _pk()
    dedupe_key: Mapped[str] = mapped_column(unique=True)
    event: Mapped[str]
    issue_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("issues.id"))
    payload: Mapped[dict[str, Any]] = mapped_column(server_default="{}")
    status: Mapped[str] = mapped_column(server_default="pending")
    channel: Mapped[str | None]
    attempts: Mapped[int] = mapped_column(server_default="0")
    next_attempt_at: Mapped[dt.datetime] = mapped_column(server_default="now()")
    last_error: Mapped[str | None]
    created_at: Mapped[dt.datetime] = mapped_column(server_default="now()")
    sent_at: Mapped[dt.datetime | None]
