"""Reserve before, settle after: the only code that moves money between budget columns.

See db/sql/queries/budget.sql for the guarded statements. A reservation that
cannot be made means no call: the router refuses before any token is spent.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy.orm import Session

from config.errors import HQError
from db.sqlfiles import query

COMPANY = "company"


class BudgetExceeded(HQError):
    """No reservation, no call. ``scope`` says whose budget ran out: issue, agent or company."""

    def __init__(self, scope: str, needed: Decimal, available: Decimal | None, issue_id: int | None) -> None:
        where = {"issue": f"issue {issue_id}", "agent": "the agent's monthly", "company": "the company's monthly"}[scope]
        left = f"{available:.6f}" if available is not None else "unknown"
        super().__init__(f"budget exhausted: {where} budget cannot cover {needed:.6f} USD (left: {left} USD)")
        self.scope = scope
        self.needed = needed
        self.available = available
        self.issue_id = issue_id


@dataclass(frozen=True)
class Reservation:
    id: uuid.UUID
    issue_id: int | None
    agent_scope: str | None
    period: dt.date
    amount: Decimal


@dataclass(frozen=True)
class Payer:
    """Who pays for a call: the issue (if any), the agent's month, the company's month."""

    issue_id: int | None
    agent_slug: str | None
    agent_monthly_limit: Decimal | None
    company_monthly_limit: Decimal


def reserve(session: Session, payer: Payer, amount: Decimal, run_id: uuid.UUID, ttl_seconds: int) -> Reservation:
    """Reserve ``amount`` against every scope, or raise BudgetExceeded (the caller rolls back)."""
    if payer.issue_id is not None:
        if session.execute(query("budget", "reserve_issue"), {"issue_id": payer.issue_id, "amount": amount}).first() is None:
            headroom = session.execute(query("budget", "issue_headroom"), {"issue_id": payer.issue_id}).first()
            raise BudgetExceeded("issue", amount, headroom.available if headroom else None, payer.issue_id)
    agent_scope = f"agent:{payer.agent_slug}" if payer.agent_slug and payer.agent_monthly_limit is not None else None
    period: dt.date | None = None
    accounts = [(agent_scope, payer.agent_monthly_limit, "agent")] if agent_scope else []
    accounts.append((COMPANY, payer.company_monthly_limit, "company"))
    for scope, limit, kind in accounts:
        period = session.scalar(query("budget", "ensure_account"), {"scope": scope, "limit_usd": limit})
        reserved = session.execute(query("budget", "reserve_account"),
                                   {"scope": scope, "period": period, "amount": amount}).first()
        if reserved is None:
            raise BudgetExceeded(kind, amount, None, payer.issue_id)
    assert period is not None
    reservation = Reservation(uuid.uuid4(), payer.issue_id, agent_scope, period, amount)
    session.execute(query("budget", "record_reservation"), {
        "id": reservation.id, "run_id": run_id, "issue_id": payer.issue_id, "agent_scope": agent_scope,
        "period": period, "amount": amount, "ttl_seconds": ttl_seconds,
    })
    return reservation


def settle(session: Session, reservation: Reservation, actual: Decimal) -> None:
    """Replace the reservation with the actual cost. If the sweeper already released the
    reservation (the call outlived its TTL), only the spend is added."""
    taken = session.execute(query("budget", "take_reservation"), {"id": reservation.id}).first()
    released = reservation.amount if taken is not None else Decimal(0)
    if reservation.issue_id is not None:
        session.execute(query("budget", "settle_issue"),
                        {"issue_id": reservation.issue_id, "reserved": released, "actual": actual})
    for scope in (reservation.agent_scope, COMPANY):
        if scope is not None:
            session.execute(query("budget", "settle_account"),
                            {"scope": scope, "period": reservation.period, "reserved": released, "actual": actual})
