"""Issue rows: validated creation, compare-and-set transitions, comments and lookups.

Shared by the CLI and the workflows so both write issues the same way. The
database enforces legality (the transition trigger); this module turns the
common failures into one-line messages before the database has to.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, Field, ValidationError, field_validator
from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from config.errors import NotFoundError, StateError, UsageError, validation_problems
from config.settings import MAX_BUDGET_USD
from db.models import Agent, Comment, Issue, IssueDependency, LLMCall

MAX_TITLE = 500
MAX_BODY = 200_000


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL bytes")
    return value


class IssueDraft(BaseModel):
    """What a person or an agent may ask for when creating an issue."""

    title: Annotated[str, Field(max_length=MAX_TITLE)]
    body: Annotated[str, Field(max_length=MAX_BODY)] = ""
    priority: Annotated[int, Field(ge=0, le=9)] = 5
    budget_usd: Annotated[Decimal, Field(ge=0, le=MAX_BUDGET_USD, decimal_places=4)] | None = None
    needs_approval: bool = False
    depends_on: list[int] = Field(default_factory=list)
    labels: Annotated[list[Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9:_-]{0,39}$")]], Field(max_length=20)] = (
        Field(default_factory=list)
    )

    @field_validator("title")
    @classmethod
    def _title(cls, value: str) -> str:
        value = _no_nul(value).strip()
        if not value:
            raise ValueError("must not be empty")
        if any(ch in value for ch in "\r\n"):
            raise ValueError("must be a single line")
        return value

    @field_validator("body")
    @classmethod
    def _body(cls, value: str) -> str:
        return _no_nul(value)


def validate_draft(**fields: Any) -> IssueDraft:
    """Build a draft or raise UsageError naming every bad field in one line."""
    try:
        return IssueDraft(**fields)
    except ValidationError as error:
        raise UsageError("invalid issue: " + "; ".join(validation_problems(error, "issue"))) from None


def agent_by_slug(session: Session, slug: str) -> Agent:
    agent = session.scalar(select(Agent).where(Agent.slug == slug))
    if agent is None:
        raise NotFoundError(f"no agent named {slug!r} (see `hq agents`)")
    return agent


def get_issue(session: Session, issue_id: int, *, lock: bool = False) -> Issue:
    statement = select(Issue).where(Issue.id == issue_id)
    if lock:
        # FOR NO KEY UPDATE: we change columns, never the key, so rows referencing the
        # issue (events, comments, cost rows) can still be inserted meanwhile.
        statement = statement.with_for_update(key_share=True)
    issue = session.scalar(statement)
    if issue is None:
        raise NotFoundError(f"issue {issue_id} does not exist")
    return issue


def require_status(issue: Issue, *allowed: str, action: str) -> None:
    if issue.status not in allowed:
        expected = " or ".join(allowed)
        raise StateError(f"cannot {action} issue {issue.id}: it is {issue.status}, not {expected}")


def does_the_work(agent: Agent) -> bool:
    """Individual contributors execute; managers (who assign) only route and assemble."""
    workflows = agent.workflows or []
    return "execute" in workflows and "assign" not in workflows


def initial_status(assignee: Agent | None) -> str:
    """Work given to someone who does it is ready (`todo`); anything else waits in `backlog` for routing."""
    return "todo" if assignee is not None and does_the_work(assignee) else "backlog"


def create_issue(
    session: Session,
    draft: IssueDraft,
    *,
    actor: str,
    assignee: Agent | None = None,
    default_budget_usd: Decimal | float = Decimal("2"),
    max_attempts: int = 3,
    parent_id: int | None = None,
    goal_id: int | None = None,
    playbook: str | None = None,
    module_key: str | None = None,
    idempotency_key: str | None = None,
    status: str | None = None,
) -> Issue:
    """Insert an issue with its dependency edges; idempotent when given an idempotency key."""
    if idempotency_key is not None:
        existing = session.scalar(select(Issue).where(Issue.idempotency_key == idempotency_key))
        if existing is not None:
            return existing
    missing = missing_issue_ids(session, draft.depends_on)
    if missing:
        raise NotFoundError(f"cannot depend on issue(s) that do not exist: {', '.join(map(str, missing))}")
    issue = Issue(
        title=draft.title,
        body=draft.body,
        priority=draft.priority,
        status=status or initial_status(assignee),
        assignee_id=assignee.id if assignee else None,
        budget_usd=draft.budget_usd if draft.budget_usd is not None else Decimal(str(default_budget_usd)),
        needs_approval=draft.needs_approval,
        max_attempts=max_attempts,
        labels=draft.labels,
        parent_id=parent_id,
        goal_id=goal_id,
        playbook=playbook,
        module_key=module_key,
        created_by=actor,
        idempotency_key=idempotency_key,
    )
    session.add(issue)
    session.flush()
    add_dependencies(session, issue.id, draft.depends_on)
    return issue


def missing_issue_ids(session: Session, ids: Iterable[int]) -> list[int]:
    wanted = sorted(set(ids))
    if not wanted:
        return []
    found = set(session.scalars(select(Issue.id).where(Issue.id.in_(wanted))))
    return [i for i in wanted if i not in found]


def add_dependencies(session: Session, issue_id: int, depends_on: Iterable[int]) -> None:
    rows = [{"issue_id": issue_id, "depends_on_id": d} for d in sorted(set(depends_on))]
    if rows:
        session.execute(insert(IssueDependency).values(rows).on_conflict_do_nothing())
        session.flush()
        session.expire_all()  # unmet_deps changed under the ORM's feet


def transition(
    session: Session,
    issue_id: int,
    from_status: str | Sequence[str],
    to_status: str,
    *,
    expect_lease: uuid.UUID | None = None,
    **changes: Any,
) -> Issue | None:
    """Compare-and-set: move the issue only if it is still where the caller saw it.

    With ``expect_lease`` the caller must also still hold the lease; zero rows means
    the caller lost the race and must discard its result (returns None).
    """
    expected = [from_status] if isinstance(from_status, str) else list(from_status)
    conditions = [Issue.id == issue_id, Issue.status.in_(expected)]
    if expect_lease is not None:
        conditions.append(Issue.lease_owner == expect_lease)
    return session.scalars(
        update(Issue).where(*conditions).values(status=to_status, **changes).returning(Issue),
        execution_options={"synchronize_session": False, "populate_existing": True},
    ).first()


def add_comment(
    session: Session,
    issue_id: int,
    body: str,
    *,
    author: str,
    kind: str = "note",
    run_id: uuid.UUID | None = None,
    idempotency_key: str | None = None,
) -> int | None:
    """Append a comment; with an idempotency key a replay writes nothing and returns None."""
    statement = insert(Comment).values(
        issue_id=issue_id,
        body=_no_nul(body),
        author=author,
        kind=kind,
        run_id=run_id,
        idempotency_key=idempotency_key,
    )
    if idempotency_key is not None:
        statement = statement.on_conflict_do_nothing(index_elements=["idempotency_key"])
    return session.scalar(statement.returning(Comment.id))


def cost_so_far(session: Session, issue_id: int) -> Decimal:
    """What the model calls for this issue have cost (settled rows in llm_calls)."""
    return session.scalar(
        select(func.coalesce(func.sum(LLMCall.cost_usd), 0)).where(LLMCall.issue_id == issue_id)
    ) or Decimal(0)


def lock_timeout(session: Session, milliseconds: int) -> None:
    """Bound how long a human command waits on a row a worker holds."""
    session.execute(text("SELECT set_config('lock_timeout', :ms, true)"), {"ms": f"{milliseconds}ms"})
