"""The company on an operator's PostgreSQL: TCP, SCRAM passwords, a non-superuser app role, PgBouncer in
transaction mode in front, LISTEN on a direct URL; and the reporter reading its views."""

from __future__ import annotations

import json
import signal
import time
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from tests.support.cli import run_hq_process
from tests.support.external_pg import (
    APP_PASSWORD,
    APP_ROLE,
    REPORTER_PASSWORD,
    SCHEMA,
    External,
    external_server,  # noqa: F401 - the `external` fixture: pytest finds it among this module's names
)
from tests.support.processes import FAST, start, stop, wait_until
from tests.support.rows import one


def _env(external: External, tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "DATABASE_URL": external.url(via_bouncer=True),
        "HQ_DB_POOLER": "transaction",
        "HQ_LISTEN_DATABASE_URL": external.url(via_bouncer=False),
        "HQ_DATA_DIR": str(tmp_path / "var"),
        "HQ_DB_SCHEMA": SCHEMA,
        "HQ_LOG_FORMAT": "json",
        **extra,
    }


def _hq(env: dict[str, str], *args: str) -> str:
    result = run_hq_process(*args, env=env, timeout=120)
    assert result.returncode == 0, (args, result.stderr[-2000:])
    assert APP_PASSWORD not in result.stdout + result.stderr
    return result.stdout.strip()


def _status(external: External, issue: int) -> str:
    with external.admin() as admin:
        return str(one(admin.execute(f"SELECT status FROM {SCHEMA}.issues WHERE id = %s", (issue,)).fetchone())[0])


def _first_beats_done(external: External, since: object) -> bool:
    with external.admin() as admin:
        row = admin.execute(
            f"SELECT count(DISTINCT h.agent_id) = (SELECT count(*) FROM {SCHEMA}.agents WHERE status = 'active')"
            f"  FROM {SCHEMA}.heartbeat_runs h WHERE h.started_at >= %s AND h.finished_at IS NOT NULL",
            (since,),
        ).fetchone()
        return bool(one(row)[0])


def _events(log: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]


def test_the_company_works_through_pgbouncer_in_transaction_mode(external: External, tmp_path: Path) -> None:
    env = _env(external, tmp_path)
    _hq(env, "db", "upgrade")
    _hq(env, "agents", "sync")
    plain = int(_hq(env, "issue", "create", "Write the onboarding guide", "--assign", "technical-writer"))
    gated = int(
        _hq(env, "issue", "create", "Write the release notes", "--assign", "technical-writer", "--needs-approval")
    )
    worker = start(tmp_path, "fast", **{**env, **FAST})
    try:
        assert wait_until(
            lambda: _status(external, plain) == "done" and _status(external, gated) == "pending_approval",
            timeout=180,
            step=0.5,
        ), (_status(external, plain), _status(external, gated))
    finally:
        stop(worker)
    # Real heartbeats (minutes apart): only a wake-up can bring the deployer within seconds.
    with external.admin() as admin:
        since = one(admin.execute("SELECT now()").fetchone())[0]
    worker = start(tmp_path, "slow", **{**env, "HQ_LOG_LEVEL": "info"})
    try:
        assert wait_until(
            lambda: any(e.get("event") == "listener.connected" for e in _events(tmp_path / "slow.log")), timeout=60
        ), "the LISTEN connection never came up"
        # Every agent's first beat of this process is over: the next ones are minutes away.
        assert wait_until(lambda: _first_beats_done(external, since), timeout=120), "the first beats never ended"
        _hq(env, "approve", str(gated), "--note", "ship it")
        assert wait_until(lambda: _status(external, gated) == "done", timeout=30), _status(external, gated)
    finally:
        stop(worker)
    with external.admin() as admin:
        approved, deploying = one(
            admin.execute(
                "SELECT min(created_at) FILTER (WHERE to_status = 'approved'),"
                f"       min(created_at) FILTER (WHERE to_status = 'deploying') FROM {SCHEMA}.issue_events"
                " WHERE issue_id = %s",
                (gated,),
            ).fetchone()
        )
    assert (deploying - approved).total_seconds() < 10  # woken (polling would take minutes)
    events = _events(tmp_path / "slow.log") + _events(tmp_path / "fast.log")
    assert not [e for e in events if e.get("event") in ("listener.reconnecting", "listener.failed")]
    assert not [e for e in events if "prepared statement" in json.dumps(e)]
    # The reporter (created by an admin; the app role only grants it the views) reads its views, nothing else.
    reporter = f"postgresql://hq_reporter:{REPORTER_PASSWORD}@127.0.0.1:{external.port}/hq"
    with psycopg.connect(reporter, autocommit=True) as conn:
        # The app role may not set another role's search_path: the reporter names the schema.
        board: dict[str, Decimal] = dict(
            conn.execute(f"SELECT status, sum(issues) FROM {SCHEMA}.report_issue_board GROUP BY 1").fetchall()
        )
        assert board.get("done") == 2
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(f"SELECT title FROM {SCHEMA}.issues")


def test_a_listener_that_cannot_log_in_says_why_once_and_stops_promptly(external: External, tmp_path: Path) -> None:
    env = _env(
        external,
        tmp_path,
        HQ_LISTEN_DATABASE_URL=external.url(via_bouncer=False, password="wrong-Pw"),
        HQ_LOG_LEVEL="info",
    )
    _hq(env, "db", "upgrade")
    _hq(env, "agents", "sync")
    worker = start(tmp_path, "run", **env)
    try:
        assert wait_until(
            lambda: any(e.get("event") == "listener.reconnecting" for e in _events(tmp_path / "run.log")), timeout=60
        )
        time.sleep(2)
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
    finally:
        stop(worker)
    warnings = [
        e
        for e in _events(tmp_path / "run.log")
        if e.get("event") == "listener.reconnecting" and e.get("level") == "warning"
    ]
    assert len(warnings) == 1, warnings
    assert "password authentication failed" in str(warnings[0].get("error"))
    assert "wrong-Pw" not in (tmp_path / "run.log").read_text()
    server_log = (external.root / "server.log").read_text()
    assert server_log.count("password authentication failed") < 20  # backed off, not ~800 tries in 5 s


def test_a_role_that_may_not_create_in_the_schema_is_told_the_fix(external: External, tmp_path: Path) -> None:
    env = _env(external, tmp_path, HQ_DB_SCHEMA="public")  # PUBLIC may not create in public here
    result = run_hq_process("db", "upgrade", env=env, timeout=120)
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "may not create objects in schema 'public'" in lines[0]
    assert f"CREATE SCHEMA hq AUTHORIZATION {APP_ROLE}" in lines[0] and "HQ_DB_SCHEMA" in lines[0]
    with external.admin() as admin:
        assert admin.execute("SELECT to_regclass('public.issues')").fetchone() == (None,)
