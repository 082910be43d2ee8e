"""The database layer: embedded server reuse, migrations, and the ORM matching the SQL."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from db.embedded import running_server
from db.migrate import head_revision
from db.models import Base
from tests.conftest import PgServer, run_hq


def test_head_revision_matches_alembic() -> None:
    from alembic.script import ScriptDirectory

    from db.migrate import alembic_config

    assert ScriptDirectory.from_config(alembic_config()).get_current_head() == head_revision()


# Report summaries are written by triggers and read by views only: SQL owns them, the ORM never maps them.
SQL_ONLY_TABLES = {
    "alembic_version",
    "usage_daily",
    "usage_agent_monthly",
    "issue_flow_daily",
    "board_counts",
    "telegram_poller",  # Telegram's tables: named statements in db/sql/queries/telegram.sql only
    "telegram_updates",
    "telegram_prompts",
}


def test_orm_models_match_the_migrated_schema(db_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    engine = create_engine(db_url)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        diffs = [
            d
            for d in compare_metadata(context, Base.metadata)
            if not (isinstance(d, tuple) and d[0] in ("add_index", "remove_index"))
            and not (isinstance(d, tuple) and d[0] == "remove_table" and d[1].name in SQL_ONLY_TABLES)
        ]
    engine.dispose()
    assert diffs == []


def test_embedded_server_is_reused_not_restarted(pg_server: PgServer) -> None:
    from db.embedded import ensure_server

    first = running_server(pg_server.root / "pgdata")
    assert first is not None
    assert ensure_server(pg_server.root).pid == first.pid


def test_db_upgrade_is_idempotent_and_url_prints(db_url: str) -> None:
    result = run_hq("db", "upgrade")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == f"database at revision {head_revision()}"
    url = run_hq("db", "url")
    assert url.stdout.startswith("postgresql://postgres@/")


def test_embedded_default_starts_migrates_and_serves(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No DATABASE_URL: `hq` starts its own PostgreSQL under the data dir and migrates it."""
    from config.settings import reset_settings
    from db.embedded import stop_server
    from db.engine import dispose_engines

    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("HQ_DATA_DIR", str(tmp_path / "data"))
    reset_settings()
    try:
        created = run_hq("issue", "create", "first issue on a fresh machine")
        assert created.exit_code == 0, created.stderr
        assert (tmp_path / "data" / "pgdata" / "PG_VERSION").exists()
        listed = run_hq("issues", "--json")
        assert "first issue on a fresh machine" in listed.stdout
        status = run_hq("db", "status")
        assert "running" in status.stdout
    finally:
        dispose_engines()
        stop_server(tmp_path / "data")
        reset_settings()


def test_migrations_go_down_to_the_initial_schema_and_up_again(pg_server: PgServer) -> None:
    from alembic import command

    from db.migrate import alembic_config, upgrade

    name = "hq_test_down_up"
    with pg_server.admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    engine = create_engine(pg_server.url(name))

    def objects() -> tuple[Sequence[str], ...]:
        with engine.connect() as connection:
            return tuple(
                connection.exec_driver_sql(sql).scalars().all()
                for sql in (
                    "SELECT proname FROM pg_proc WHERE pronamespace = 'public'::regnamespace ORDER BY 1",
                    "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace ORDER BY 1",
                    "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1",
                )
            )

    try:
        upgrade(engine, "0001")
        initial = objects()
        upgrade(engine)
        with engine.begin() as connection:
            command.downgrade(alembic_config(connection), "0001")
        assert objects() == initial  # every later migration undoes itself completely
        assert upgrade(engine) == ("0001", head_revision())
    finally:
        engine.dispose()
        with pg_server.admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
