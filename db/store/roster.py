"""Open work after the chain of command changed: finding what points at the old chain, moving it.

The roster sync (agents/sync.py) decides who should hold an issue now; these are
the reads that find the few issues it must look at and the statements that move
them (db/sql/queries/roster.sql). The reads lock nothing, so a sync over a million
open issues never stalls a claim; each move is a compare-and-set on what the
decision was made from and returns None when the issue changed meanwhile.
"""

from __future__ import annotations

from typing import Any

from config.vocabulary import OPEN_STATUSES
from db.sqlfiles import query
from db.store.executor import Executor
from db.store.records import AgentRecord, IssueRecord


def lock_roster(db: Executor) -> None:
    """Serialise roster changes until the transaction ends, so two syncs never interleave their moves."""
    db.execute(query("roster", "lock_roster"))


def unstarted_work_of_removed(db: Executor) -> list[IssueRecord]:
    return _issues(db, "unstarted_work_of_removed")


def reviews_to_check(db: Executor) -> list[IssueRecord]:
    """Open issues whose reviewer may be stale; the caller decides, as the wanted reviewer can be a stand-in."""
    return _issues(db, "reviews_to_check", open=list(OPEN_STATUSES))


def escalations_off_chain(db: Executor) -> list[IssueRecord]:
    return _issues(db, "escalations_off_chain")


def retarget_assignee(db: Executor, issue: IssueRecord, to: AgentRecord) -> IssueRecord | None:
    """Hand unstarted work to ``to``; `todo` waits in `backlog` when ``to`` does not execute, to be routed again."""
    to_status = "backlog" if issue.status == "todo" and "execute" not in to.workflows else issue.status
    return _moved(
        db,
        "retarget_assignee",
        issue_id=issue.id,
        to_id=to.id,
        to_status=to_status,
        from_id=issue.assignee_id,
        from_status=issue.status,
    )


def retarget_reviewer(db: Executor, issue: IssueRecord, to: AgentRecord) -> IssueRecord | None:
    """Point the review at ``to``, chosen for the issue's current owner (the compare-and-set checks both)."""
    return _moved(
        db,
        "retarget_reviewer",
        issue_id=issue.id,
        to_id=to.id,
        from_id=issue.reviewer_id,
        owner_id=issue.assignee_id,
        open=list(OPEN_STATUSES),
    )


def retarget_escalation(db: Executor, issue: IssueRecord, to: AgentRecord) -> IssueRecord | None:
    """Move the escalation to ``to``, chosen from the owner's chain and the steps already climbed."""
    return _moved(
        db,
        "retarget_escalation",
        issue_id=issue.id,
        to_id=to.id,
        from_id=issue.escalated_to_id,
        owner_id=issue.assignee_id,
        climbed=list(issue.escalation_chain),
    )


def _issues(db: Executor, name: str, **params: Any) -> list[IssueRecord]:
    return [IssueRecord.of(row) for row in db.execute(query("roster", name), params)]


def _moved(db: Executor, name: str, **params: Any) -> IssueRecord | None:
    row = db.execute(query("roster", name), params).first()
    return IssueRecord.of(row) if row is not None else None
