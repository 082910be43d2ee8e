"""Issues outside any lease: validated creation, dependencies, comments, lookups, owner hand-offs.

Shared by the CLI and the workflows so both create issues the same way. The
database enforces legality (the transition trigger); this module turns the
common failures into one-line messages before the database has to.

People fund the issues they open (``create_issue``); an agent's tool or
workflow never does: a sub-issue it opens is funded by ``create_funded_issue``,
which carves the child's budget out of the parent's in one compare-and-set,
to the cent, and the database gives back what the child leaves unused when it
ends (db/sql/carves.sql).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from decimal import ROUND_DOWN, Decimal
from typing import Annotated, Any

from pydantic import BaseModel, Field, ValidationError, field_validator

from config.errors import HQError, NotFoundError, UsageError, validation_problems
from config.settings import MAX_BUDGET_USD
from config.vocabulary import TERMINAL_STATUSES
from db.sqlfiles import query
from db.store.executor import Executor
from db.store.records import AgentRecord, IssueRecord

MAX_TITLE = 500
CENT = Decimal("0.01")
MAX_BODY = 200_000
LABEL = r"^[a-z0-9][a-z0-9:_-]{0,39}$"


def no_nul(value: str) -> str:
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
    labels: Annotated[list[Annotated[str, Field(pattern=LABEL)]], Field(max_length=20)] = Field(default_factory=list)

    @field_validator("title")
    @classmethod
    def _title(cls, value: str) -> str:
        value = no_nul(value).strip()
        if not value:
            raise ValueError("must not be empty")
        if any(ch in value for ch in "\r\n"):
            raise ValueError("must be a single line")
        return value

    @field_validator("body")
    @classmethod
    def _body(cls, value: str) -> str:
        return no_nul(value)


def validate_draft(**fields: Any) -> IssueDraft:
    """Build a draft or raise UsageError naming every bad field in one line."""
    try:
        return IssueDraft(**fields)
    except ValidationError as error:
        raise UsageError("invalid issue: " + "; ".join(validation_problems(error, "issue"))) from None


def get_issue(db: Executor, issue_id: int, *, lock: bool = False) -> IssueRecord:
    """The issue as it is now; with ``lock`` its row stays locked until the transaction ends."""
    row = db.execute(query("issues", "issue_for_update" if lock else "issue"), {"issue_id": issue_id}).first()
    if row is None:
        raise NotFoundError(f"issue {issue_id} does not exist")
    return IssueRecord.of(row)


def children(db: Executor, issue_id: int) -> list[IssueRecord]:
    return [IssueRecord.of(row) for row in db.execute(query("issues", "children"), {"issue_id": issue_id})]


def dependencies(db: Executor, issue_id: int) -> list[IssueRecord]:
    """The issues ``issue_id`` waits on."""
    return [IssueRecord.of(row) for row in db.execute(query("issues", "dependencies"), {"issue_id": issue_id})]


def research_question(db: Executor, research: IssueRecord) -> str:
    """What a research issue was asked (for one opened before questions were recorded apart, its body's)."""
    asked = db.execute(query("issues", "research_question"), {"issue_id": research.id}).scalar()
    return str(asked) if asked is not None else research.body.split("Question:\n", 1)[-1]


def initial_status(assignee: AgentRecord | None) -> str:
    """Work given to someone who does it is ready (`todo`); anything else waits in `backlog` for routing."""
    return "todo" if assignee is not None and assignee.does_the_work else "backlog"


def create_issue(
    db: Executor,
    draft: IssueDraft,
    *,
    actor: str,
    assignee: AgentRecord | None = None,
    default_budget_usd: Decimal | float = Decimal("2"),
    max_attempts: int = 3,
    parent_id: int | None = None,
    goal_id: int | None = None,
    playbook: str | None = None,
    module_key: str | None = None,
    idempotency_key: str | None = None,
    project_id: int | None = None,
) -> IssueRecord:
    """Insert an issue with its dependency edges; with an idempotency key a replay returns the first one.

    Without ``project_id`` a sub-issue inherits its parent's project (research questions excepted).
    """
    if idempotency_key is not None:
        existing = db.execute(query("issues", "issue_by_key"), {"key": idempotency_key}).first()
        if existing is not None:
            return IssueRecord.of(existing)
    missing = missing_issue_ids(db, draft.depends_on)
    if missing:
        raise NotFoundError(f"cannot depend on issue(s) that do not exist: {', '.join(map(str, missing))}")
    row = db.execute(
        query("issues", "create_issue"),
        {
            "title": draft.title,
            "body": draft.body,
            "priority": draft.priority,
            "status": initial_status(assignee),
            "assignee_id": assignee.id if assignee else None,
            "budget_usd": draft.budget_usd if draft.budget_usd is not None else Decimal(str(default_budget_usd)),
            "needs_approval": draft.needs_approval,
            "max_attempts": max_attempts,
            "labels": draft.labels,
            "parent_id": parent_id,
            "goal_id": goal_id,
            "playbook": playbook,
            "module_key": module_key,
            "created_by": actor,
            "idempotency_key": idempotency_key,
            "project_id": project_id,
        },
    ).first()
    if row is None:  # a concurrent replay inserted it between our look and our insert
        return IssueRecord.of(db.execute(query("issues", "issue_by_key"), {"key": idempotency_key}).one())
    issue = IssueRecord.of(row)
    if draft.depends_on:
        add_dependencies(db, issue.id, draft.depends_on)
        issue = get_issue(db, issue.id)  # unmet_deps changed with the edges
    return issue


class CarveRefused(HQError):
    """The parent cannot fund the sub-issue: its spent + reserved + the carve would pass its budget."""


def create_funded_issue(
    db: Executor,
    draft: IssueDraft,
    *,
    parent_id: int,
    amount_usd: Decimal,
    actor: str,
    idempotency_key: str,
    assignee: AgentRecord | None = None,
    max_attempts: int = 3,
    goal_id: int | None = None,
    module_key: str | None = None,
) -> IssueRecord:
    """A sub-issue of ``parent_id`` funded with ``amount_usd`` (to the cent, rounded down) out of the parent's budget.

    The child and its carve land together or not at all (a savepoint): raises
    CarveRefused, with nothing written, when the parent cannot cover the carve
    now. A replay of ``idempotency_key`` returns the child made the first time
    and carves nothing again.
    """
    existing = db.execute(query("issues", "issue_by_key"), {"key": idempotency_key}).first()
    if existing is not None:
        return IssueRecord.of(existing)
    amount = amount_usd.quantize(CENT, rounding=ROUND_DOWN)
    if amount <= 0:
        raise CarveRefused(f"issue {parent_id} has no budget left to fund a sub-issue ({amount_usd} asked)")
    with db.begin_nested():
        child = create_issue(
            db,
            draft.model_copy(update={"budget_usd": amount}),
            actor=actor,
            assignee=assignee,
            max_attempts=max_attempts,
            parent_id=parent_id,
            goal_id=goal_id,
            module_key=module_key,
            idempotency_key=idempotency_key,
        )
        outcome = db.execute(
            query("carves", "carve"), {"child_id": child.id, "parent_id": parent_id, "amount": amount}
        ).one()
        if not (outcome.carved or outcome.replayed):
            raise CarveRefused(
                f"issue {parent_id}'s budget cannot fund a sub-issue of {amount} USD: "
                "what it has spent and reserved plus that would pass its budget"
            )
    return child


def missing_issue_ids(db: Executor, ids: Iterable[int]) -> list[int]:
    wanted = sorted(set(ids))
    if not wanted:
        return []
    found = {row[0] for row in db.execute(query("issues", "existing_ids"), {"ids": wanted})}
    return [i for i in wanted if i not in found]


def add_dependencies(db: Executor, issue_id: int, depends_on: Iterable[int]) -> None:
    edges = sorted(set(depends_on))
    if edges:
        db.execute(query("issues", "add_dependencies"), {"issue_id": issue_id, "depends_on": edges})


def add_comment(
    db: Executor,
    issue_id: int,
    body: str,
    *,
    author: str,
    kind: str = "note",
    run_id: uuid.UUID | None = None,
    idempotency_key: str | None = None,
) -> int | None:
    """Append a comment; with an idempotency key a replay writes nothing and returns None."""
    return db.execute(
        query("issues", "add_comment"),
        {
            "issue_id": issue_id,
            "body": no_nul(body),
            "author": author,
            "kind": kind,
            "run_id": run_id,
            "idempotency_key": idempotency_key,
        },
    ).scalar()


def comment_exists(db: Executor, idempotency_key: str) -> bool:
    """Whether a comment with this idempotency key was written (a once-only step's marker)."""
    return bool(db.execute(query("issues", "comment_exists"), {"key": idempotency_key}).scalar())


def cost_so_far(db: Executor, issue_id: int) -> Decimal:
    """What the model calls for this issue have cost (settled rows in llm_calls)."""
    return db.execute(query("issues", "cost_so_far"), {"issue_id": issue_id}).scalar() or Decimal(0)


def reprioritise(db: Executor, issue_id: int, priority: int, *, goal_ids: Iterable[int]) -> bool:
    """Re-order an open issue of one of ``goal_ids``; False (nothing changed) for any other issue."""
    row = db.execute(
        query("issues", "reprioritise"),
        {
            "issue_id": issue_id,
            "priority": priority,
            "goal_ids": sorted(goal_ids),
            "terminal": sorted(TERMINAL_STATUSES),
        },
    ).first()
    return row is not None


def reassign_owned(db: Executor, issue: IssueRecord, *, owner_id: int, to: AgentRecord) -> IssueRecord | None:
    """Hand an unstarted issue its owner holds no lease on to ``to``; None if it changed meanwhile."""
    row = db.execute(
        query("issues", "reassign_owned"),
        {
            "issue_id": issue.id,
            "assignee_id": to.id,
            "owner_id": owner_id,
            "from_status": issue.status,
            "to_status": initial_status(to),
        },
    ).first()
    return IssueRecord.of(row) if row is not None else None
