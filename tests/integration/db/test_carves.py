"""Sub-issue budgets are carved out of the parent, never minted: a property of every interleaving.

A Hypothesis state machine drives the real paths (the store's carve, the
ledger's reserve and settle on parent and children, a child ending, a late
settlement on an ended child, an ended child touched again) and checks after
every step that the parent and its children together hold exactly the
parent's original budget (none minted, none lost), that nothing was charged
past it, and that each child has handed back what it left unused, to the
cent, exactly once.
"""

from __future__ import annotations

import uuid
from decimal import ROUND_DOWN, Decimal
from fractions import Fraction

import psycopg
from hypothesis import HealthCheck, settings
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

from db import store
from db.store import IssueDraft
from models.budget import BudgetExceeded, CallRow, Payer, Reservation, record, reserve
from tests.support.rows import new_issue, one

BUDGET = Decimal("1.00")
CENT = Decimal("0.01")
carves = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("0.60"), places=2)
costs = st.decimals(min_value=Decimal("0.000001"), max_value=Decimal("0.30"), places=6)


class Carving(RuleBasedStateMachine):
    url: str = ""
    raw: psycopg.Connection

    children = Bundle("children")
    open_calls = Bundle("open_calls")

    def __init__(self) -> None:
        super().__init__()
        self.engine = create_engine(self.url)
        self.run_id = uuid.uuid4()
        self.seq = 0
        self.parent = new_issue(self.raw, status="todo", budget_usd=BUDGET)
        self.carved: dict[int, Decimal] = {}  # child -> amount carved
        self.ended: set[int] = set()

    def teardown(self) -> None:
        self.engine.dispose()

    def _reserve(self, issue: int, amount: Decimal) -> Reservation | None:
        try:
            return reserve(
                self.engine, Payer(issue, None, None, Decimal(100000)), amount, self.run_id, ttl_seconds=3600
            )
        except BudgetExceeded:
            return None

    def _settle(self, issue: int, taken: Reservation, fraction: Fraction) -> None:
        self.seq += 1
        cost = (taken.amount * Decimal(fraction.numerator) / Decimal(fraction.denominator)).quantize(Decimal("1e-6"))
        row = CallRow(
            run_id=self.run_id,
            seq=self.seq,
            issue_id=issue,
            agent_id=None,
            workflow="execute",
            tier="execution",
            provider="offline",
            model="m",
            deployment="d",
            outcome="ok",
            input_tokens=1,
            output_tokens=1,
            cost=cost,
        )
        assert record(self.engine, row, taken)

    # --- steps ------------------------------------------------------------------------------------
    @rule(target=children, amount=carves)
    def carve(self, amount: Decimal) -> int | MultipleResults[int]:
        try:
            with self.engine.begin() as connection:
                child = store.create_funded_issue(
                    connection,
                    IssueDraft(title="part"),
                    parent_id=self.parent,
                    amount_usd=amount,
                    actor="agent:test",
                    idempotency_key=f"part:{uuid.uuid4()}",
                )
        except store.CarveRefused:
            return multiple()
        self.carved[child.id] = amount
        return child.id

    @rule(child=children, amount=costs, fraction=st.fractions(0, 1))
    def child_spends(self, child: int, amount: Decimal, fraction: Fraction) -> None:
        taken = self._reserve(child, amount)
        if taken is not None:
            self._settle(child, taken, fraction)

    @rule(target=open_calls, child=children, amount=costs)
    def child_reserves(self, child: int, amount: Decimal) -> tuple[int, Reservation] | MultipleResults[Reservation]:
        taken = self._reserve(child, amount)
        return multiple() if taken is None else (child, taken)

    @rule(call=consumes(open_calls), fraction=st.fractions(0, 1))
    def call_settles(self, call: tuple[int, Reservation], fraction: Fraction) -> None:
        """Settles while the child works, or late, after it ended: its unused part comes back then."""
        self._settle(call[0], call[1], fraction)

    @rule(amount=costs, fraction=st.fractions(0, 1))
    def parent_spends(self, amount: Decimal, fraction: Fraction) -> None:
        taken = self._reserve(self.parent, amount)
        if taken is not None:
            self._settle(self.parent, taken, fraction)

    @rule(child=children, how=st.sampled_from(["cancelled", "todo"]))
    def child_moves(self, child: int, how: str) -> None:
        status = one(self.raw.execute("SELECT status FROM issues WHERE id = %s", (child,)).fetchone())[0]
        if status == "cancelled":
            self.raw.execute("UPDATE issues SET budget_usd = budget_usd, priority = 3 WHERE id = %s", (child,))
            return  # an ended child touched again gives nothing back twice
        self.raw.execute("UPDATE issues SET status = %s WHERE id = %s", (how, child))
        if how == "cancelled":
            self.ended.add(child)

    # --- what must hold after every step ---------------------------------------------------------
    @invariant()
    def nothing_minted_nothing_lost_nothing_overspent(self) -> None:
        rows = self.raw.execute(
            "SELECT id, budget_usd, spent_usd, reserved_usd FROM issues WHERE id = %s OR parent_id = %s",
            (self.parent, self.parent),
        ).fetchall()
        assert sum(r[1] for r in rows) == BUDGET
        assert sum(r[2] + r[3] for r in rows) <= BUDGET
        for _, budget, spent, reserved in rows:
            assert spent + reserved <= budget

    @invariant()
    def every_unused_cent_returned_once(self) -> None:
        for child, amount in self.carved.items():
            budget, spent, reserved = one(
                self.raw.execute(
                    "SELECT budget_usd, spent_usd, reserved_usd FROM issues WHERE id = %s", (child,)
                ).fetchone()
            )
            carved, returned = one(
                self.raw.execute(
                    "SELECT amount_usd, returned_usd FROM budget_carves WHERE child_id = %s", (child,)
                ).fetchone()
            )
            assert carved == amount and budget + returned == amount
            if child in self.ended:  # what it can no longer use, to the cent, is the parent's again
                assert returned == (amount - spent - reserved).quantize(CENT, rounding=ROUND_DOWN)
            else:
                assert returned == 0


def test_carves_never_mint_or_lose_money(db_url: str, raw: psycopg.Connection) -> None:
    Carving.url = db_url
    Carving.raw = raw
    run_state_machine_as_test(
        Carving,
        settings=settings(
            max_examples=25,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        ),
    )
