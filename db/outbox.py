"""The notification outbox: one row per event worth telling a human.

Rows are written in the same transaction as the change that caused them, so an
event is notified if and only if it happened. ``dedupe_key`` is derived from the
event itself (issue, status-event id, approval id) and never from the clock, so
replaying a workflow cannot enqueue the same notification twice.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from config.secrets import redact_obj
from db.models import Issue, IssueEvent, LLMCall, Notification
from db.sqlfiles import query
from db.store.agents import get_agent
from db.store.records import ApprovalRecord, IssueRecord


def enqueue(
    session: Session, event: str, dedupe_key: str, payload: dict[str, Any], issue_id: int | None = None
) -> bool:
    """Add a pending notification; False if this exact event was already enqueued."""
    row = session.scalar(
        insert(Notification)
        .values(event=event, dedupe_key=dedupe_key[:400], issue_id=issue_id, payload=redact_obj(payload))
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
        .returning(Notification.id)
    )
    return row is not None


def _last_event_id(session: Session, issue_id: int) -> int:
    return session.scalar(select(func.max(IssueEvent.id)).where(IssueEvent.issue_id == issue_id)) or 0


def _issue(issue: IssueRecord) -> dict[str, Any]:
    return {"id": issue.id, "title": issue.title, "status": issue.status, "priority": issue.priority}


def _approval(approval: ApprovalRecord) -> dict[str, Any]:
    """What an approval message's buttons are made from (channels/buttons.py)."""
    return {"approval_id": approval.id, "approval_kind": approval.kind, "approval_version": approval.version}


def cost_summary(session: Session, issue_id: int) -> dict[str, Any]:
    """Model spend for an issue and everything below it, by tier."""
    tree = select(Issue.id).where(Issue.id == issue_id).cte("tree", recursive=True)
    tree = tree.union_all(select(Issue.id).where(Issue.parent_id == tree.c.id))
    rows = session.execute(
        select(
            LLMCall.tier,
            func.count(),
            func.coalesce(func.sum(LLMCall.cost_usd), 0),
            func.coalesce(func.sum(LLMCall.input_tokens + LLMCall.output_tokens), 0),
        )
        .where(LLMCall.issue_id.in_(select(tree.c.id)))
        .group_by(LLMCall.tier)
        .order_by(LLMCall.tier)
    ).all()
    total = sum((Decimal(r[2]) for r in rows), Decimal(0))
    return {
        "total_usd": str(total.quantize(Decimal("0.000001"))),
        "calls": sum(r[1] for r in rows),
        "tokens": int(sum(r[3] for r in rows)),
        "by_tier": {r[0]: str(Decimal(r[2]).quantize(Decimal("0.000001"))) for r in rows},
    }


def pending_approval(session: Session, issue: IssueRecord, approval: ApprovalRecord) -> None:
    enqueue(
        session,
        "pending_approval",
        f"pending_approval:{issue.id}:{_last_event_id(session, issue.id)}",
        {
            "issue": _issue(issue),
            **_approval(approval),
            "quality_score": str(issue.quality_score or ""),
            "deadline": approval.deadline.isoformat(),
            "commands": [
                f"hq approve {issue.id}",
                f"hq reject {issue.id} --reason '...'",
                f"hq revise {issue.id} --note '...'",
            ],
        },
        issue.id,
    )


def _climbed(session: Session, issue: IssueRecord) -> list[str]:
    """The chain an escalation climbed, starting from the agent that owns the issue."""
    owner = get_agent(session, issue.assignee_id) if issue.assignee_id else None
    return ([owner.slug] if owner else []) + list(issue.escalation_chain)


def escalated(session: Session, issue: IssueRecord, *, reason: str, note: str) -> None:
    chain = _climbed(session, issue)
    enqueue(
        session,
        "escalated",
        f"escalated:{issue.id}:{_last_event_id(session, issue.id)}:{len(chain)}",
        {"issue": _issue(issue), "reason": reason, "note": note[:1000], "chain": chain},
        issue.id,
    )


def needs_human(session: Session, issue: IssueRecord, approval: ApprovalRecord) -> None:
    enqueue(
        session,
        "needs_human",
        f"needs_human:{approval.id}",
        {
            "issue": _issue(issue),
            **_approval(approval),
            "reason": approval.reason[:1000],
            "chain": _climbed(session, issue),
            "deadline": approval.deadline.isoformat(),
            "commands": [f"hq unblock {issue.id} --note '...'", f"hq cancel {issue.id} --reason '...'"],
        },
        issue.id,
    )


def budget_exhausted(session: Session, issue: IssueRecord, approval: ApprovalRecord) -> None:
    enqueue(
        session,
        "budget_exhausted",
        f"budget:{approval.id}",
        {
            "issue": _issue(issue),
            **_approval(approval),
            "budget_usd": str(issue.budget_usd),
            "spent_usd": str(issue.spent_usd),
            "needed_usd": str(approval.amount_usd),
            "commands": [f"hq budget {issue.id} --add USD"],
        },
        issue.id,
    )


def approval_deadline(session: Session, approval: ApprovalRecord, issue: IssueRecord, stage: str) -> None:
    enqueue(
        session,
        "approval_deadline",
        f"deadline:{approval.id}:{stage}:{approval.escalations}",
        {
            "issue": _issue(issue),
            **_approval(approval),
            "kind": approval.kind,
            "stage": stage,
            "deadline": approval.deadline.isoformat(),
        },
        issue.id,
    )


def done(session: Session, issue: IssueRecord) -> None:
    enqueue(
        session, "done", f"done:{issue.id}", {"issue": _issue(issue), "cost": cost_summary(session, issue.id)}, issue.id
    )


def provider_auth(
    session: Session, *, deployment: str, key_fingerprint: str, error: str, issue: IssueRecord | None
) -> bool:
    """Once per credentials (provider, endpoint, key): the provider refused them, and calls with them are paused."""
    return enqueue(
        session,
        "provider_auth",
        f"provider_auth:{key_fingerprint}",
        {
            "deployment": deployment,
            "error": error[:500],
            **({"issue": _issue(issue), "commands": [f"hq unblock {issue.id} --note '...'"]} if issue else {}),
        },
        issue.id if issue else None,
    )


def heartbeat_failing(session: Session, agent_slug: str, failures: int, first_run_id: str, error: str) -> None:
    enqueue(
        session,
        "heartbeat_failing",
        f"heartbeat:{agent_slug}:{first_run_id}",
        {"agent": agent_slug, "failures": failures, "error": error[:500]},
    )


def digest(session: Session, day: dt.date) -> bool:
    """The daily digest for ``day`` (UTC); once per day whatever runs it."""
    figures_row = session.execute(query("reports", "digest_figures"), {"day": day}).one()
    figures = {k: str(v) for k, v in figures_row._mapping.items()}
    return enqueue(session, "digest", f"digest:{day.isoformat()}", {"day": day.isoformat(), "figures": figures})
