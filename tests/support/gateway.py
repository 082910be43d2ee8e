"""What the model gateway's tests share: the fake provider, a router priced on it, the run's agent, a socket path
short enough for AF_UNIX, and the ledger as the tests read it.

The fixtures are plain functions here; a test module takes them by name (``fake = gateway.fake``).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from models.config import Deployment
from models.router import ModelRouter
from tests.fakes.anthropic_server import FakeAnthropic
from tests.support.models import router_for, write_models
from tests.support.rows import one

MODEL = "claude-sonnet-4-6"  # the execution and reasoning tiers' deployment: what HQ tells the CLI to ask for
UTILITY = "claude-haiku-4-5"  # the utility tier's deployment (Claude Code's small, fast model)
PRICE = (2.5, 12.5)  # USD per million input / output tokens: half micro-dollars, so per-row rounding shows
MAX_TOKENS = 200  # every tier's max_output_tokens unless a test says otherwise
MICRO = Decimal("0.000001")
HI: list[Any] = [{"role": "user", "content": "Add mul(a, b) to calc.py."}]  # plain and beta calls alike


# --- fixtures and helpers -----------------------------------------------------------------------------------------
@pytest.fixture()
def fake() -> Iterator[FakeAnthropic]:
    server = FakeAnthropic().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture()
def boss(raw: psycopg.Connection) -> None:
    """The agent whose run the calls are for (``call_context`` looks it up)."""
    raw.execute("INSERT INTO agents (slug, title, workflows) VALUES ('boss', 'Boss', '{execute}')")


@pytest.fixture()
def socket_path() -> Iterator[Path]:
    """A socket path short enough for AF_UNIX (pytest's tmp_path can exceed its ~100 bytes)."""
    scratch = Path(tempfile.mkdtemp(prefix="hq-gw-"))
    try:
        yield scratch / "g.sock"
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def models(
    tmp_path: Path,
    fake: FakeAnthropic,
    tiers: dict[str, list[str]] | None = None,
    *,
    retries: int = 1,
    max_tokens: dict[str, int] | None = None,
) -> Path:
    """A priced models file on the fake; ``max_tokens`` overrides the tiers' max_output_tokens one by one."""
    tiers = tiers or {
        "reasoning": [f"anthropic/{MODEL}"],
        "execution": [f"anthropic/{MODEL}"],
        "utility": [f"anthropic/{UTILITY}"],
    }
    path = write_models(tmp_path / "models.yaml", fake, tiers, max_tokens=MAX_TOKENS, price=PRICE, retries=retries)
    if max_tokens:
        document = json.loads(path.read_text())
        document["max_output_tokens"].update(max_tokens)
        path.write_text(json.dumps(document))
    return path


@pytest.fixture()
def router(tmp_path: Path, fake: FakeAnthropic, monkeypatch: pytest.MonkeyPatch, db_url: str) -> ModelRouter:
    return router_for(models(tmp_path, fake), monkeypatch)


def calls(raw: psycopg.Connection, run_id: uuid.UUID) -> list[dict[str, Any]]:
    with raw.cursor(row_factory=dict_row) as cursor:
        return cursor.execute(
            "SELECT outcome, tier, deployment, model, input_tokens, output_tokens, cache_write_tokens,"
            " cache_read_tokens, cost_usd, reserved_usd, error FROM llm_calls WHERE run_id = %s ORDER BY call_seq",
            (run_id,),
        ).fetchall()


def money(raw: psycopg.Connection, issue: int) -> tuple[Decimal, Decimal, Decimal, int]:
    """The issue's budget, spent and reserved, and how many reservations are still open for it."""
    budget, spent, reserved = one(
        raw.execute("SELECT budget_usd, spent_usd, reserved_usd FROM issues WHERE id = %s", (issue,)).fetchone()
    )
    (open_reservations,) = one(
        raw.execute("SELECT count(*) FROM budget_reservations WHERE issue_id = %s", (issue,)).fetchone()
    )
    return budget, spent, reserved, open_reservations


def micro(amount: Decimal) -> Decimal:
    """Whole micro-dollars as the ledger rounds them (PostgreSQL's round: half away from zero)."""
    return amount.quantize(MICRO, rounding=ROUND_HALF_UP)


def billed(input_tokens: int, output_tokens: int, cache_write: int = 0, cache_read: int = 0) -> Decimal:
    """What the provider bills, from the models file's prices alone (cache writes 1.25x input, reads 0.1x)."""
    per_input, per_output = (Decimal(str(p)) / 1_000_000 for p in PRICE)
    return micro(
        per_input * input_tokens
        + per_output * output_tokens
        + per_input * Decimal("1.25") * cache_write
        + per_input * Decimal("0.1") * cache_read
    )


def deployment(router: ModelRouter, tier: str = "execution", order: int = 1) -> Deployment:
    return router.models.tiers[tier][order - 1]


def assert_settled(raw: psycopg.Connection, issue: int, rows: list[dict[str, Any]]) -> None:
    """Nothing left reserved, and the issue charged exactly its rows."""
    _, spent, reserved, open_reservations = money(raw, issue)
    assert (reserved, open_reservations) == (0, 0)
    assert spent == sum((r["cost_usd"] for r in rows), Decimal(0))
