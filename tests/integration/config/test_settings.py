"""Settings fail fast with every problem listed; secrets never reach output or logs."""

from __future__ import annotations

from decimal import Decimal

import psycopg
import pytest

from config.errors import ConfigError
from config.settings import (
    MAX_BUDGET_USD,
    MAX_ID,
    MAX_PG_TIMEOUT_MS,
    load_settings,
)
from tests.support.cli import run_hq, run_hq_process
from tests.support.secrets import ANTHROPIC_CANARY, TELEGRAM_CANARY


def test_bad_database_url_exits_2_and_names_the_variable() -> None:
    result = run_hq_process("issues", env={"DATABASE_URL": "not-a-url"})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "hq: error: invalid settings: DATABASE_URL: must be a postgresql:// URL"
    ]
    assert "Traceback" not in result.stderr


def test_config_check_masks_every_secret(db_url: str) -> None:
    password_url = db_url.replace("postgres@", "postgres:Sup3rSecretPw@")
    result = run_hq_process(
        "config",
        "check",
        env={
            "ANTHROPIC_API_KEY": ANTHROPIC_CANARY,
            "TELEGRAM_BOT_TOKEN": TELEGRAM_CANARY,
            "DATABASE_URL": password_url,
            "TELEGRAM_CHAT_ID": "-100123",
        },
    )
    assert result.returncode == 0, result.stderr
    everything = result.stdout + result.stderr
    for secret in (ANTHROPIC_CANARY, TELEGRAM_CANARY, "Sup3rSecretPw", "CANARYcanary"):
        assert secret not in everything
    assert "anthropic_api_key" in result.stdout and "settings: ok" in result.stdout


def test_config_check_in_process_lists_effective_settings(db_url: str) -> None:
    result = run_hq("config", "check")
    assert result.exit_code == 0, result.stderr
    assert "database_url = (set, hidden)" in result.stdout


def test_the_bounds_are_exactly_what_postgres_accepts(raw: psycopg.Connection) -> None:
    raw.execute(f"SET statement_timeout = {MAX_PG_TIMEOUT_MS}")
    raw.execute(f"SET idle_in_transaction_session_timeout = {MAX_PG_TIMEOUT_MS}")
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        raw.execute(f"SET statement_timeout = {MAX_PG_TIMEOUT_MS + 1}")
    assert raw.execute("SELECT %s::bigint", (MAX_ID,)).fetchone() == (MAX_ID,)
    with pytest.raises(psycopg.errors.NumericValueOutOfRange):
        raw.execute("SELECT %s::numeric::bigint", (MAX_ID + 1,))
    top = Decimal("99999999.9999")
    assert load_settings(company_monthly_budget_usd=str(top)).company_monthly_budget_usd == top
    assert raw.execute("SELECT %s::numeric(12, 4), %s::numeric(12, 4)", (top, MAX_BUDGET_USD)).fetchone() == (
        top,
        MAX_BUDGET_USD,
    )
    with pytest.raises(ConfigError, match="HQ_COMPANY_MONTHLY_BUDGET_USD"):
        load_settings(company_monthly_budget_usd=str(top + Decimal("0.0001")))


def test_largest_timeouts_still_connect(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HQ_STATEMENT_TIMEOUT_MS", str(MAX_PG_TIMEOUT_MS))
    monkeypatch.setenv("HQ_IDLE_IN_TRANSACTION_TIMEOUT_MS", str(MAX_PG_TIMEOUT_MS))
    result = run_hq("issues")
    assert result.exit_code == 0, result.stderr


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://hq:pw@localhost:notaport/hq",
        "postgresql://hq@localhost:0/hq",
        "postgresql://hq@host:65536/hq",
        "postgresql://hq@host:5432/hq?port=x",
        "postgresql://hq@h1:5432,h2:5433/hq",
    ],
)
def test_database_url_with_a_bad_port_is_a_usage_error(url: str) -> None:
    result = run_hq_process("config", "check", env={"DATABASE_URL": url})
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hq: error: invalid settings: DATABASE_URL: "), lines
    assert "port" in lines[0] and "pw@" not in lines[0] and "Traceback" not in result.stderr


def test_data_dir_problem_is_rc_2_in_a_real_process() -> None:
    result = run_hq_process("issues", env={"HQ_DATA_DIR": "/proc/nope"})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "hq: error: invalid settings: HQ_DATA_DIR: cannot create /proc/nope: No such file or directory"
    ]
