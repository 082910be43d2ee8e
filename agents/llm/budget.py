"""Reserve before, settle after: the only code that moves money between budget columns.

The rules live in SQL (db/sql/budget.sql): `hq_reserve` and `hq_record_call`
are single statements, run here in autocommit on a pooled driver connection, so
a model call pays two round trips for its accounting and nothing else.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import psycopg
from sqlalchemy import text
from sqlalchemy.engine import Engine

from config.errors import HQError
from config.settings import get_settings
from db.engine import configure_session, driver_options
from db.urls import libpq_url

BUDGET_STATEMENT_TIMEOUT_MS = 10_000  # one budget statement is a few row locks: waiting longer means trouble
_RESERVE = "SELECT hq_reserve(%s, %s, %s, %s, %s, %s, %s, %s)"
_RECORD = "SELECT hq_record_call(" + ", ".join(["%s"] * 20) + ")"


class BudgetExceeded(HQError):
    """No reservation, no call. ``scope`` says whose budget ran out: issue, agent or company."""

    def __init__(self, scope: str, needed: Decimal, available: Decimal | None, issue_id: int | None) -> None:
        where = {"issue": f"issue {issue_id}", "agent": "the agent's monthly", "company": "the company's monthly"}[
            scope
        ]
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
    amount: Decimal


@dataclass(frozen=True)
class Payer:
    """Who pays for a call: the issue (if any), the agent's month, the company's month."""

    issue_id: int | None
    agent_slug: str | None
    agent_monthly_limit: Decimal | None
    company_monthly_limit: Decimal

    @property
    def agent_scope(self) -> str | None:
        return f"agent:{self.agent_slug}" if self.agent_slug and self.agent_monthly_limit is not None else None


_local = threading.local()


class _ThreadConnections(dict[str, "psycopg.Connection[Any]"]):
    """A thread's budget connections, closed when the thread ends and its locals go."""

    def __del__(self) -> None:
        for conn in self.values():
            conn.close()


def _connection(engine: Engine) -> psycopg.Connection[Any]:
    """This thread's autocommit connection for budget statements: no pool checkout, no ping, one round trip."""
    connections: _ThreadConnections | None = getattr(_local, "connections", None)
    if connections is None:
        connections = _local.connections = _ThreadConnections()
    key = engine.url.render_as_string(hide_password=False)
    conn = connections.get(key)
    if conn is None or conn.closed:
        settings = get_settings()
        options: dict[str, Any] = {**driver_options(settings), "application_name": "hq-budget"}
        conn = psycopg.connect(libpq_url(key), autocommit=True, **options)
        configure_session(conn, settings.model_copy(update={"statement_timeout_ms": BUDGET_STATEMENT_TIMEOUT_MS}))
        connections[key] = conn
    return conn


def _one(engine: Engine, sql: str, params: tuple[Any, ...]) -> Any:
    """One statement on this thread's budget connection; a broken connection is dropped and tried once more."""
    for attempt in (1, 2):
        conn = _connection(engine)
        try:
            row = conn.execute(sql, params).fetchone()
            return row[0] if row else None
        except psycopg.OperationalError:
            conn.close()
            if attempt == 2:
                raise
    return None  # pragma: no cover


def reserve(engine: Engine, payer: Payer, amount: Decimal, run_id: uuid.UUID, ttl_seconds: int) -> Reservation:
    """Reserve ``amount`` against every scope at once, or raise BudgetExceeded having reserved nothing."""
    reservation = Reservation(uuid.uuid4(), payer.issue_id, payer.agent_scope, amount)
    refused = _one(
        engine,
        _RESERVE,
        (
            reservation.id,
            run_id,
            payer.issue_id,
            payer.agent_scope,
            payer.agent_monthly_limit,
            payer.company_monthly_limit,
            amount,
            ttl_seconds,
        ),
    )
    if refused is None:
        return reservation
    available = None
    if refused == "issue":
        with engine.connect() as conn:
            available = conn.execute(
                text("SELECT budget_usd - spent_usd - reserved_usd FROM issues WHERE id = :id"), {"id": payer.issue_id}
            ).scalar()
    raise BudgetExceeded(refused, amount, available, payer.issue_id)


@dataclass(frozen=True)
class CallRow:
    """One llm_calls row, as the router knows it."""

    run_id: uuid.UUID
    seq: int
    issue_id: int | None
    agent_id: int | None
    workflow: str | None
    tier: str
    provider: str | None
    model: str | None
    deployment: str | None
    outcome: str
    input_tokens: int = 0
    output_tokens: int = 0
    cache_write_tokens: int = 0
    cache_read_tokens: int = 0
    cost: Decimal = Decimal(0)
    reserved: Decimal = Decimal(0)
    latency_ms: int | None = None
    error: str | None = None


def record(engine: Engine, row: CallRow, reservation: Reservation | None = None) -> bool:
    """Write one cost row; with ``reservation`` also settle it to ``row.cost``. False if it was already written."""
    return bool(
        _one(
            engine,
            _RECORD,
            (
                row.run_id,
                row.seq,
                row.issue_id,
                row.agent_id,
                row.workflow,
                row.tier,
                row.provider,
                row.model,
                row.deployment,
                row.input_tokens,
                row.output_tokens,
                row.cache_write_tokens,
                row.cache_read_tokens,
                row.cost,
                row.reserved,
                row.latency_ms,
                row.outcome,
                row.error,
                reservation.id if reservation else None,
                reservation.agent_scope if reservation else None,
            ),
        )
    )
