"""`hq config check` connects: server, schema, revision, hq_reporter, LISTEN; a failed check exits non-zero.

It used to validate the settings only, so a wrong password or a dead server passed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import create_engine

from db.migrate import head_revision, upgrade
from tests.support import ROOT
from tests.support.cli import run_hq, run_hq_process
from tests.support.postgres import PgServer, own_database

SECRET = "Sup3rSecretPw-check"


def _one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("hq: error: ") and "Traceback" not in stderr, stderr
    return lines[0]


def test_config_check_connects_and_reports_the_database(db_url: str) -> None:
    result = run_hq("config", "check")
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert "database: ok (PostgreSQL " in out and "as role postgres" in out
    assert "schema: public (HQ_DB_SCHEMA=public)" in out
    assert f"revision: {head_revision()} (head)" in out and "upgrade pending" not in out
    assert "hq_reporter: ready (login yes, read-only yes, SELECT on 11 of 11 report views, connection limit 10)" in out
    assert "listen: ok (via DATABASE_URL; the notification arrived in " in out
    assert result.stderr == ""


def test_config_check_stays_fast_no_model_router(db_url: str) -> None:
    script = (
        "import sys\nfrom cli.app import main\ntry:\n    main(['config', 'check'])\nexcept SystemExit as e:\n"
        "    code = e.code\nprint('litellm loaded' if 'litellm' in sys.modules else 'litellm not loaded', code)"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=60, env={**os.environ}
    )
    assert result.stdout.strip().endswith("litellm not loaded 0"), (result.stdout, result.stderr)


def test_a_database_nobody_listens_on_exits_1_with_one_line(db_url: str) -> None:
    url = db_url.replace("postgres@", f"postgres:{SECRET}@", 1).split("&port=")[0] + "&port=1"
    result = run_hq_process("config", "check", env={"DATABASE_URL": url})
    assert result.returncode == 1, (result.stdout, result.stderr)
    line = _one_error_line(result.stderr)
    assert line.startswith("hq: error: database unavailable: ") and ".s.PGSQL.1" in line, line
    assert SECRET not in result.stdout + result.stderr
    assert "settings: ok" in result.stdout  # the checks before it still ran and said so


def test_a_database_that_does_not_exist_exits_1_naming_it(db_url: str) -> None:
    result = run_hq_process("config", "check", env={"DATABASE_URL": db_url.replace("/hq_test_", "/hq_nope_", 1)})
    assert result.returncode == 1, (result.stdout, result.stderr)
    line = _one_error_line(result.stderr)
    assert "database unavailable" in line and "does not exist" in line, line


def test_a_listen_url_that_fails_fails_the_check_with_its_cause(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    dead = db_url.replace("postgres@", f"postgres:{SECRET}@", 1).split("&port=")[0] + "&port=1"
    monkeypatch.setenv("HQ_LISTEN_DATABASE_URL", dead)
    result = run_hq("config", "check")
    assert result.exit_code == 1, (result.stdout, result.stderr)
    line = _one_error_line(result.stderr)
    assert "config check failed: LISTEN failed (via HQ_LISTEN_DATABASE_URL): " in line and ".s.PGSQL.1" in line
    assert "database: ok" in result.stdout and "listen: FAILED" in result.stdout
    assert SECRET not in result.stdout + result.stderr


@pytest.fixture()
def at_0006(pg_server: PgServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A database an older hq migrated (revision 0006); DATABASE_URL points at it."""
    with own_database(pg_server, monkeypatch, f"hq_check_0006_{os.getpid()}") as name:
        engine = create_engine(pg_server.url(name))
        try:
            upgrade(engine, "0006")
        finally:
            engine.dispose()
        yield name


def test_a_pending_upgrade_is_reported_and_not_applied(at_0006: str, pg_server: PgServer) -> None:
    result = run_hq("config", "check")
    assert result.exit_code == 0, result.stderr
    assert f"revision: 0006, head {head_revision()}: upgrade pending: run hq db upgrade" in result.stdout
    assert "listen: ok" in result.stdout
    with psycopg.connect(pg_server.libpq(at_0006)) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone() == ("0006",)  # never migrates


def test_a_database_newer_than_this_hq_fails_the_check(db_url: str, raw: psycopg.Connection) -> None:
    raw.execute("UPDATE alembic_version SET version_num = '9999'")
    result = run_hq("config", "check")
    assert result.exit_code == 1, result.stdout
    line = _one_error_line(result.stderr)
    assert "database revision 9999 is newer than this hq" in line, line


def test_a_reporter_without_grants_is_reported_with_the_fix(db_url: str, raw: psycopg.Connection) -> None:
    """As where the migration ran before an admin created hq_reporter: the role exists, this database grants nothing.
    (The revoke is local to this test's database; the role is cluster-wide and stays as it is.)"""
    raw.execute("REVOKE SELECT ON ALL TABLES IN SCHEMA public FROM hq_reporter")
    result = run_hq("config", "check")
    assert result.exit_code == 0, result.stderr  # the company runs without its reporter
    assert "hq_reporter: not ready: SELECT on 0 of 11 report views" in result.stdout
    assert "  run: hq db grant-reporter" in result.stdout
