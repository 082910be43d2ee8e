"""The shapes workflow code sees: one frozen record per entity, built from the row a statement returned.

A record is a snapshot, never a handle: changing the row takes a named
statement in the store, so nothing can move an issue by assigning to an
attribute, and the ORM's identity map never hands two callers different
versions of the same issue.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Self

from sqlalchemy import Row


class _Record:
    """Builds the dataclass from a row's mapping, ignoring columns a later migration may add."""

    @classmethod
    def of(cls, row: Row[Any] | Mapping[str, Any]) -> Self:
        values = row._mapping if isinstance(row, Row) else row
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        return cls(**{name: values[name] for name in names if name in values})


@dataclass(frozen=True, slots=True)
class IssueRecord(_Record):
    id: int
    title: str
    body: str
    status: str
    priority: int
    assignee_id: int | None
    reviewer_id: int | None
    goal_id: int | None
    parent_id: int | None
    playbook: str | None
    module_key: str | None
    labels: list[str]
    needs_approval: bool
    budget_usd: Decimal
    spent_usd: Decimal
    reserved_usd: Decimal
    attempts: int
    max_attempts: int
    review_rounds: int
    quality_score: Decimal | None
    blocked_reason: str | None
    escalated_to_id: int | None
    escalation_chain: list[str]
    unmet_deps: int
    lease_owner: uuid.UUID | None
    lease_until: dt.datetime | None
    created_by: str
    idempotency_key: str | None
    created_at: dt.datetime
    updated_at: dt.datetime
    status_changed_at: dt.datetime
    done_at: dt.datetime | None
    project_id: int | None = None
    merged_sha: str | None = None
    reviewed_sha: str | None = None  # the branch head a passing review saw (migration 0015)
    lease_worker: str | None = None  # host:pid of the run holding the lease (migration 0016)
    doing: str | None = None  # what that run is doing now; meaningful only while the lease is live
    doing_since: dt.datetime | None = None

    @property
    def budget_left(self) -> Decimal:
        """What the issue may still spend: its budget less what is spent and what in-flight calls reserved."""
        return max(self.budget_usd - self.spent_usd - self.reserved_usd, Decimal(0))


@dataclass(frozen=True, slots=True)
class ApprovalRecord(_Record):
    id: int
    issue_id: int
    kind: str
    status: str
    reason: str
    requested_by: str
    amount_usd: Decimal | None
    deadline: dt.datetime
    reminded_at: dt.datetime | None
    escalations: int
    decided_by: str | None
    decided_at: dt.datetime | None
    decision_note: str | None
    created_at: dt.datetime
    reminders_sent: int = 0

    @property
    def version(self) -> int:
        """Which issue of this approval a button was made for: a passed deadline re-issues it (escalations + 1)."""
        return self.escalations


@dataclass(frozen=True, slots=True)
class AgentRecord(_Record):
    """An agent as its row holds it: what a beat runs as, what the chain of command is made of."""

    id: int
    slug: str
    title: str
    tier: str
    status: str
    paused_reason: str | None
    workflows: tuple[str, ...]
    toolsets: tuple[str, ...]
    skills: tuple[dict[str, Any], ...]
    checklist: tuple[str, ...]
    monthly_budget_usd: Decimal | None
    manager_id: int | None
    reviewer_id: int | None

    def __post_init__(self) -> None:
        for name in ("workflows", "toolsets", "skills", "checklist"):  # lists from the row, frozen here
            object.__setattr__(self, name, tuple(getattr(self, name) or ()))

    @property
    def actor(self) -> str:
        return f"agent:{self.slug}"

    @property
    def active(self) -> bool:
        return self.status == "active"

    @property
    def delegates(self) -> bool:
        """Managers route work; their own `execute` only assembles what they decomposed."""
        return "assign" in self.workflows

    @property
    def does_the_work(self) -> bool:
        """Individual contributors execute; managers (who assign) only route and assemble."""
        return "execute" in self.workflows and "assign" not in self.workflows


@dataclass(frozen=True, slots=True)
class Claim:
    """An issue this run holds: the row as claimed, the lease's run id, and whether the claim counted an attempt."""

    issue: IssueRecord
    run_id: uuid.UUID
    counted: bool = False

    @property
    def id(self) -> int:
        return self.issue.id


@dataclass(frozen=True, slots=True)
class ProjectRecord(_Record):
    """A git repository the company works on: its remote and the branch work merges into."""

    id: int
    name: str
    repo: str
    base_branch: str
    created_by: str
    created_at: dt.datetime
    removed_at: dt.datetime | None
    team_id: int | None = None  # the manager whose reports take its issues (migration 0016)
    keep_branches: bool = False  # keep done issues' branches on the remote


@dataclass(frozen=True, slots=True)
class CheckRunRecord(_Record):
    """One project command's result against one exact commit: the evidence review and deploy rely on."""

    id: int
    issue_id: int
    project_id: int
    commit_sha: str
    stage: str
    command: str
    exit_code: int
    duration_ms: int
    output_tail: str
    sandbox: str
    run_id: uuid.UUID | None
    created_at: dt.datetime
    tree_sha: str | None = None  # the files it ran on (rows before migration 0015 have none)
    env_key: str | None = None  # the project's environment it ran against (None: the system's tools)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0
