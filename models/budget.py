"""Reserve before, settle after: the only code that moves money between budget columns.

The rules live in SQL (db/sql/budget.sql): `hq_reserve` and `hq_record_call`
are single statements, run here in autocommit on a connection borrowed from a
small per-process pool (POOL_SIZE), so a model call pays two round trips for its
accounting and nothing else, and no number of threads can open more connections.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import psycopg
from sqlalchemy import text
from sqlalchemy.engine import Engine

from config.errors import HQError
from config.settings import get_settings
from config.urls import libpq_url
from db.engine import configure_session, driver_options

POOL_SIZE = 4  # connections per process and database: a budget statement holds one for one round trip
POOL_WAIT_SECONDS = 30.0  # longer than a statement may run (BUDGET_STATEMENT_TIMEOUT_MS), so waiting means trouble
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


class _Pool:
    """A few autocommit connections for budget statements, shared by every thread of the process.

    One connection per thread let any source of threads (a flood of gateway connections from a sandbox)
    open as many PostgreSQL connections as it liked and lock every other client of the database out. A
    statement borrows a connection for its one round trip and gives it back: POOL_SIZE connections at
    most, and a caller beyond that waits (never longer than POOL_WAIT_SECONDS) instead of connecting.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.idle: list[psycopg.Connection[Any]] = []
        self.opened = 0
        self.ready = threading.Condition()
        self.closed = False

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        conn = self._take()
        try:
            yield conn
        except psycopg.OperationalError:
            conn.close()  # the connection (or the server) broke: never lent again
            raise
        finally:
            self._give(conn)

    def _take(self) -> psycopg.Connection[Any]:
        deadline = time.monotonic() + POOL_WAIT_SECONDS
        with self.ready:
            while not self.idle and self.opened >= POOL_SIZE:
                left = deadline - time.monotonic()
                if left <= 0 or not self.ready.wait(left):
                    raise psycopg.OperationalError(f"no budget connection free within {POOL_WAIT_SECONDS:.0f} s")
            if self.idle:
                return self.idle.pop()
            self.opened += 1
        try:
            return self._connect()
        except BaseException:
            with self.ready:
                self.opened -= 1
                self.ready.notify()
            raise

    def _give(self, conn: psycopg.Connection[Any]) -> None:
        with self.ready:
            if conn.closed or self.closed:
                conn.close()
                self.opened -= 1
            else:
                self.idle.append(conn)
            self.ready.notify()

    def _connect(self) -> psycopg.Connection[Any]:
        settings = get_settings()
        options: dict[str, Any] = {**driver_options(settings), "application_name": "hq-budget"}
        conn = psycopg.connect(libpq_url(self.url), autocommit=True, **options)
        configure_session(conn, settings.model_copy(update={"statement_timeout_ms": BUDGET_STATEMENT_TIMEOUT_MS}))
        return conn

    def close(self) -> None:
        with self.ready:
            self.closed = True
            idle, self.idle = self.idle, []
        for conn in idle:
            conn.close()


_pools: weakref.WeakKeyDictionary[Engine, _Pool] = weakref.WeakKeyDictionary()
_pools_lock = threading.Lock()
_pools_pid = os.getpid()


def _pool(engine: Engine) -> _Pool:
    """The engine's budget pool in this process: a forked child never touches its parent's connections."""
    global _pools_pid
    with _pools_lock:
        if _pools_pid != os.getpid():  # forked: the parent's connections are its own, left alone
            _pools.clear()
            _pools_pid = os.getpid()
        pool = _pools.get(engine)
        if pool is None:
            pool = _pools[engine] = _Pool(engine.url.render_as_string(hide_password=False))
            weakref.finalize(engine, pool.close)  # a disposed engine's budget connections go with it
        return pool


def _one(engine: Engine, sql: str, params: tuple[Any, ...]) -> Any:
    """One statement on a pooled budget connection; a broken connection is dropped and tried once more."""
    for attempt in (1, 2):
        try:
            with _pool(engine).connection() as conn:
                row = conn.execute(sql, params).fetchone()
                return row[0] if row else None
        except psycopg.OperationalError:
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
