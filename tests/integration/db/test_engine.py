"""hq's sessions carry their own settings (no database-wide defaults), and hq can live in a schema of its own."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import text

from tests.support.cli import run_hq
from tests.support.postgres import PgServer, own_database

_counter = itertools.count()


@pytest.fixture()
def empty_db(pg_server: PgServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A database nothing has migrated yet; DATABASE_URL points at it."""
    with own_database(pg_server, monkeypatch, f"hq_sessions_{os.getpid()}_{next(_counter)}") as name:
        yield name


def test_no_database_wide_setting_and_hq_sessions_set_their_own(
    empty_db: str, pg_server: PgServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HQ_IDLE_IN_TRANSACTION_TIMEOUT_MS", "45000")
    monkeypatch.setenv("HQ_STATEMENT_TIMEOUT_MS", "25000")
    assert run_hq("db", "upgrade").exit_code == 0
    with pg_server.admin() as admin:
        database_wide = admin.execute(
            "SELECT setconfig FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase "
            "WHERE d.datname = %s AND s.setrole = 0",
            (empty_db,),
        ).fetchall()
    assert database_wide == []  # every other client of the database keeps its own defaults
    from config.settings import reset_settings
    from db.engine import get_engine, reading, transaction

    reset_settings()
    with reading(get_engine()) as conn:  # a pooled session, outside any hq transaction
        shown = conn.exec_driver_sql(
            "SELECT current_setting('idle_in_transaction_session_timeout'), current_setting('statement_timeout')"
        ).one()
    assert tuple(shown) == ("45s", "25s")
    with transaction("human:test") as session:
        assert session.execute(text("SHOW statement_timeout")).scalar() == "25s"


def test_hq_in_a_schema_of_its_own(empty_db: str, pg_server: PgServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HQ_DB_SCHEMA", "hq_own")
    upgraded = run_hq("db", "upgrade")
    assert upgraded.exit_code == 0, upgraded.stderr
    assert run_hq("agents", "sync").exit_code == 0
    created = run_hq("issue", "create", "Write the guide", "--assign", "technical-writer")
    assert created.exit_code == 0, created.stderr
    shown = run_hq("issue", "show", created.stdout.strip())
    assert shown.exit_code == 0 and "Write the guide" in shown.stdout
    report = run_hq("report", "issue_board", "--format", "csv")
    assert report.exit_code == 0 and "todo" in report.stdout, report.stderr
    with psycopg.connect(pg_server.libpq(empty_db), autocommit=True) as admin:
        tables: dict[str, int] = dict(
            admin.execute(
                "SELECT schemaname, count(*) FROM pg_tables WHERE schemaname IN ('public', 'hq_own') GROUP BY 1"
            ).fetchall()
        )
        assert "public" not in tables and tables["hq_own"] > 10
        assert admin.execute("SELECT count(*) FROM hq_own.issues").fetchone() == (1,)
        assert admin.execute("SELECT version_num FROM hq_own.alembic_version").fetchone() is not None
        views = admin.execute(
            "SELECT count(*) FROM information_schema.role_table_grants WHERE grantee = "
            "'hq_reporter' AND table_schema = 'hq_own' AND table_name LIKE 'report%%'"
        ).fetchone()
        assert views == (11,)  # the reporter's grants follow the schema
