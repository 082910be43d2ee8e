"""The ledger is exact: after every step of any interleaving, money spent is the sum of the cost rows.

A Hypothesis state machine drives the real budget functions (reserve, settle,
a settlement retried, expire, sweep, a late settlement after the sweeper
charged the worst case) and checks, after each step, for every issue and every
agent's and the company's month:

* ``spent_usd`` equals the sum of ``llm_calls.cost_usd`` charged to it;
* ``reserved_usd`` equals the reservations still open;
* both equal what a plain model of the provider's usage says: the real cost of
  every settled call, and the reserved worst case of every call that never
  settled.
"""

from __future__ import annotations

import threading
import time
import uuid
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction

import psycopg
import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    MultipleResults,
    RuleBasedStateMachine,
    consumes,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import create_engine

from models.budget import BudgetExceeded, CallRow, Payer, Reservation, record, reserve
from tests.support.rows import new_issue, one

MICRO = Decimal("0.000001")
COMPANY_LIMIT = Decimal(100000)
money = st.decimals(min_value=Decimal("0.000001"), max_value=Decimal("0.5"), places=8)


def _sum(raw: psycopg.Connection, sql: str, params: tuple[object, ...] = ()) -> Decimal:
    return Decimal(one(raw.execute(sql, params).fetchone())[0] or 0)


def assert_exact(raw: psycopg.Connection) -> None:
    """Every ledger total against the rows behind it, in one snapshot."""
    with raw.transaction():
        raw.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        issues = raw.execute(
            "SELECT i.id, i.spent_usd, i.reserved_usd,"
            "       (SELECT coalesce(sum(cost_usd), 0) FROM llm_calls c WHERE c.issue_id = i.id),"
            "       (SELECT coalesce(sum(amount_usd), 0) FROM budget_reservations r WHERE r.issue_id = i.id)"
            "  FROM issues i"
        ).fetchall()
        for issue_id, spent, reserved, rows, open_ in issues:
            assert (spent, reserved) == (rows, open_), f"issue {issue_id}: {(spent, reserved)} != {(rows, open_)}"
        accounts = raw.execute(
            "SELECT a.scope, a.period, a.spent_usd, a.reserved_usd,"
            "       (SELECT coalesce(sum(c.cost_usd), 0) FROM llm_calls c LEFT JOIN agents g ON g.id = c.agent_id"
            "         WHERE c.budget_month = a.period AND (a.scope = 'company' OR a.scope = 'agent:' || g.slug)),"
            "       (SELECT coalesce(sum(r.amount_usd), 0) FROM budget_reservations r"
            "         WHERE r.period = a.period AND (a.scope = 'company' OR a.scope = r.agent_scope))"
            "  FROM budget_accounts a"
        ).fetchall()
        for scope, period, spent, reserved, rows, open_ in accounts:
            assert (spent, reserved) == (rows, open_), f"{scope} {period}: {(spent, reserved)} != {(rows, open_)}"


class Ledger(RuleBasedStateMachine):
    """One company, two agents with monthly budgets, three issues; calls in every state of their life."""

    url: str = ""
    raw: psycopg.Connection

    reserved = Bundle("reserved")  # reservations whose call has not settled
    expired = Bundle("expired")  # ... and that the sweeper may now charge in full
    settled = Bundle("settled")  # (reservation, row) of calls that settled

    def __init__(self) -> None:
        super().__init__()
        self.engine = create_engine(self.url)
        self.run_id = uuid.uuid4()
        self.seq = 0
        self.agents = [self._agent() for _ in range(2)]
        self.issues = [new_issue(self.raw, budget_usd=budget) for budget in (1, 3, 50)]
        self.costs: dict[int, Decimal] = {}  # issue -> what the provider's usage says it was charged
        self.reservations: dict[uuid.UUID, tuple[int, Decimal]] = {}  # open or expired: (issue, amount)
        self.abandoned: dict[uuid.UUID, Decimal] = {}  # charged in full by the sweeper: the amount

    def _agent(self) -> tuple[int, str]:
        slug = f"agent-{uuid.uuid4().hex[:8]}"
        row = one(
            self.raw.execute(
                "INSERT INTO agents (slug, title, monthly_budget_usd) VALUES (%s, 'A', 40) RETURNING id", (slug,)
            ).fetchone()
        )
        return int(row[0]), slug

    def _row(self, agent_id: int, issue_id: int, cost: Decimal, outcome: str = "ok") -> CallRow:
        self.seq += 1
        return CallRow(
            run_id=self.run_id,
            seq=self.seq,
            issue_id=issue_id,
            agent_id=agent_id,
            workflow="execute",
            tier="execution",
            provider="offline",
            model="m",
            deployment="d",
            outcome=outcome,
            input_tokens=10,
            output_tokens=5,
            cost=cost,
        )

    def teardown(self) -> None:
        self.engine.dispose()

    # --- steps ------------------------------------------------------------------------------------
    @rule(target=reserved, issue=st.integers(0, 2), agent=st.integers(0, 1), amount=money)
    def reserve(
        self, issue: int, agent: int, amount: Decimal
    ) -> tuple[Reservation, int] | MultipleResults[tuple[Reservation, int]]:
        agent_id, slug = self.agents[agent]
        payer = Payer(self.issues[issue], slug, Decimal(40), COMPANY_LIMIT)
        try:
            taken = reserve(self.engine, payer, amount, self.run_id, ttl_seconds=3600)
        except BudgetExceeded:
            return multiple()  # refused: nothing was reserved anywhere (the invariants check it)
        self.reservations[taken.id] = (self.issues[issue], amount)
        return (taken, agent_id)

    @rule(target=settled, held=consumes(reserved), fraction=st.fractions(0, 1))
    def settle(self, held: tuple[Reservation, int], fraction: Fraction) -> tuple[Reservation, CallRow]:
        return self._settle(held, fraction)

    def _settle(self, held: tuple[Reservation, int], fraction: Fraction) -> tuple[Reservation, CallRow]:
        reservation, agent_id = held
        issue_id, amount = self.reservations.pop(reservation.id)
        cost = (amount * Decimal(fraction.numerator) / Decimal(fraction.denominator)).quantize(Decimal("1e-8"))
        row = self._row(agent_id, issue_id, cost)
        assert record(self.engine, self._failed_attempt(agent_id, issue_id))
        assert record(self.engine, row, reservation)
        charged = cost.quantize(MICRO, rounding=ROUND_HALF_UP)  # as PostgreSQL's round() does
        if reservation.id in self.abandoned:  # late: the real cost replaces the worst case charged before
            charged -= self.abandoned.pop(reservation.id)
            event("settled after the sweeper charged it")
        self.costs[issue_id] = self.costs.get(issue_id, Decimal(0)) + charged
        return reservation, row

    def _failed_attempt(self, agent_id: int, issue_id: int) -> CallRow:
        return self._row(agent_id, issue_id, Decimal(0), outcome="error")

    @rule(done=settled)
    def settlement_retried(self, done: tuple[Reservation, CallRow]) -> None:
        """The database blinked after the commit: the same row again changes nothing."""
        reservation, row = done
        assert record(self.engine, row, reservation) is False

    @rule(target=expired, held=consumes(reserved))
    def expire(self, held: tuple[Reservation, int]) -> tuple[Reservation, int]:
        self.raw.execute(
            "UPDATE budget_reservations SET expires_at = now() - interval '1 second' WHERE id = %s", (held[0].id,)
        )
        return held

    @rule()
    def sweep(self) -> None:
        swept = self.raw.execute(
            "SELECT id, issue_id, amount_usd FROM budget_reservations WHERE expires_at < now()"
        ).fetchall()
        assert self.raw.execute("SELECT hq_abandon_reservations()").fetchone() == (len(swept),)
        for reservation_id, issue_id, amount in swept:
            self.abandoned[reservation_id] = amount
            self.costs[issue_id] = self.costs.get(issue_id, Decimal(0)) + amount

    @rule(target=settled, held=consumes(expired), fraction=st.fractions(0, 1))
    def settle_late(self, held: tuple[Reservation, int], fraction: Fraction) -> tuple[Reservation, CallRow]:
        """The call returns after its reservation expired: before or after a sweep charged it."""
        return self._settle(held, fraction)

    # --- what must hold after every step ---------------------------------------------------------
    @invariant()
    def ledger_is_exact(self) -> None:
        assert_exact(self.raw)

    @invariant()
    def usage_times_price(self) -> None:
        for issue_id in self.issues:
            spent = _sum(self.raw, "SELECT spent_usd FROM issues WHERE id = %s", (issue_id,))
            assert spent == self.costs.get(issue_id, Decimal(0)), issue_id
        for reservation_id in self.abandoned:
            rows = self.raw.execute("SELECT outcome FROM llm_calls WHERE reservation_id = %s", (reservation_id,))
            assert [r[0] for r in rows] == ["abandoned"]


def test_any_interleaving_keeps_the_ledger_exact(db_url: str, raw: psycopg.Connection) -> None:
    Ledger.url, Ledger.raw = db_url, raw
    run_state_machine_as_test(
        Ledger,
        settings=settings(
            max_examples=40,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
            derandomize=True,  # the same 40 interleavings every run: CI cannot draw a set that misses a row kind
        ),
    )
    # The runs reached every kind of row, late settlements of swept reservations included.
    kinds: dict[str, int] = dict(raw.execute("SELECT outcome, count(*) FROM llm_calls GROUP BY 1").fetchall())
    assert {"ok", "error", "abandoned", "correction"} <= set(kinds), kinds


def test_concurrent_settlements_and_sweeps_keep_the_ledger_exact(db_url: str, raw: psycopg.Connection) -> None:
    """Real concurrency: workers reserve and settle (some late) while sweepers charge what expired."""
    engine = create_engine(db_url)
    issue = new_issue(raw, budget_usd=1000)
    run_id = uuid.uuid4()
    failures: list[BaseException] = []
    stop = threading.Event()

    def worker(index: int) -> None:
        try:
            payer = Payer(issue, None, None, COMPANY_LIMIT)
            for seq in range(40):
                taken = reserve(engine, payer, Decimal("0.01"), run_id, ttl_seconds=3600)
                if seq % 3 == 0:  # this one will be late: let a sweeper race its settlement
                    with engine.begin() as conn:
                        conn.exec_driver_sql(
                            "UPDATE budget_reservations SET expires_at = now() - interval '1 second'"
                            f" WHERE id = '{taken.id}'"
                        )
                row = CallRow(
                    run_id=run_id,
                    seq=index * 1000 + seq,
                    issue_id=issue,
                    agent_id=None,
                    workflow="w",
                    tier="execution",
                    provider=None,
                    model=None,
                    deployment=None,
                    outcome="ok",
                    cost=Decimal("0.00412345"),
                )
                assert record(engine, row, taken)
        except BaseException as error:
            failures.append(error)

    def sweeper() -> None:
        with psycopg.connect(raw.info.dsn, autocommit=True) as conn:
            while not stop.is_set():
                conn.execute("SELECT hq_abandon_reservations()")

    sweepers = [threading.Thread(target=sweeper) for _ in range(2)]
    workers = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for thread in [*sweepers, *workers]:
        thread.start()
    for thread in workers:
        thread.join()
    stop.set()
    for thread in sweepers:
        thread.join()
    engine.dispose()
    assert failures == []
    assert_exact(raw)
    # Every call ended charged at its real cost, however its settlement and the sweep interleaved.
    assert _sum(raw, "SELECT spent_usd FROM issues WHERE id = %s", (issue,)) == Decimal("0.004123") * 160


def test_cost_rows_and_events_are_append_only(db_url: str, raw: psycopg.Connection) -> None:
    issue = new_issue(raw)
    engine = create_engine(db_url)
    taken = reserve(engine, Payer(issue, None, None, COMPANY_LIMIT), Decimal("0.1"), uuid.uuid4(), 60)
    record(
        engine,
        CallRow(
            run_id=uuid.uuid4(),
            seq=1,
            issue_id=issue,
            agent_id=None,
            workflow="w",
            tier="execution",
            provider=None,
            model=None,
            deployment=None,
            outcome="ok",
            cost=Decimal("0.05"),
        ),
        taken,
    )
    engine.dispose()
    raw.execute("UPDATE issues SET status = 'todo' WHERE id = %s", (issue,))
    for statement in (
        "UPDATE llm_calls SET cost_usd = 1000",
        "DELETE FROM llm_calls",
        "TRUNCATE llm_calls",
        "TRUNCATE llm_calls CASCADE",
        "UPDATE issue_events SET actor = 'x'",
        "DELETE FROM issue_events",
        "TRUNCATE issue_events",
    ):
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            raw.execute(statement)
    assert _sum(raw, "SELECT sum(cost_usd) FROM llm_calls") == Decimal("0.05")
    assert raw.execute("SELECT count(*) FROM issue_events WHERE issue_id = %s", (issue,)).fetchone() == (2,)
    assert_exact(raw)


def test_a_sweep_takes_locks_in_the_reservations_order(db_url: str, raw: psycopg.Connection) -> None:
    """A reservation holding issue B waits for nothing the sweep holds: no deadlock, both finish."""
    for slug in ("lock-x", "lock-y"):
        raw.execute("INSERT INTO agents (slug, title, monthly_budget_usd) VALUES (%s, 'A', 40)", (slug,))
    issue_a, issue_b = new_issue(raw, budget_usd=10), new_issue(raw, budget_usd=10)
    engine = create_engine(db_url)
    for issue, slug in ((issue_a, "lock-y"), (issue_b, "lock-x")):
        reserve(engine, Payer(issue, slug, Decimal(40), COMPANY_LIMIT), Decimal("0.5"), uuid.uuid4(), 3600)
    engine.dispose()
    raw.execute("UPDATE budget_reservations SET expires_at = now() - interval '1 second'")
    swept: list[object] = []
    with psycopg.connect(raw.info.dsn) as holder, psycopg.connect(raw.info.dsn, autocommit=True) as sweeper:
        holder.execute("SET deadlock_timeout = '50ms'")
        holder.execute("UPDATE issues SET reserved_usd = reserved_usd WHERE id = %s", (issue_b,))  # as hq_reserve does
        thread = threading.Thread(
            target=lambda: swept.append(sweeper.execute("SELECT hq_abandon_reservations()").fetchone())
        )
        thread.start()
        # Wait until the sweep is blocked on issue B, then take the accounts as hq_reserve would next.
        while (
            thread.is_alive()
            and not one(
                raw.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND "
                    "query LIKE '%hq_abandon_reservations%'"
                ).fetchone()
            )[0]
        ):
            time.sleep(0.01)
        holder.execute(
            "UPDATE budget_accounts SET reserved_usd = reserved_usd WHERE scope IN ('agent:lock-x', 'company')"
        )
        holder.commit()
        thread.join()
    assert swept == [(2,)]
    assert_exact(raw)


def test_the_months_first_reservations_at_once_are_all_taken_when_the_limit_covers_them(
    raw: psycopg.Connection,
) -> None:
    """Eight calls opening a month's account at the same moment: each reserve saw no row, one created it, and one
    that looked again a moment later found it there and read that as "the account cannot cover it" (a gateway
    flood answered 400 'budget exhausted: company' with $500 unspent). Every one of them must be taken."""
    callers, rounds = 8, 40
    refused: list[str] = []
    barrier = threading.Barrier(callers)

    def caller() -> None:
        with psycopg.connect(raw.info.dsn, autocommit=True) as conn:
            for round_ in range(rounds):
                barrier.wait()
                (scope,) = one(
                    conn.execute(
                        "SELECT hq_reserve(gen_random_uuid(), gen_random_uuid(), NULL, %s, 1000, 1000, 0.01, 3600)",
                        (f"agent:first-{round_}",),
                    ).fetchone()
                )
                if scope is not None:
                    refused.append(f"round {round_}: {scope}")

    threads = [threading.Thread(target=caller) for _ in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert refused == []
    assert_exact(raw)
