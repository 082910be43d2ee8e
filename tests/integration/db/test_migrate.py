"""Migrating: `hq db upgrade` is idempotent and prints where it went, and every migration goes down to the
initial schema and up again.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import create_engine

from db.migrate import head_revision
from tests.support.cli import run_hq
from tests.support.postgres import PgServer


def test_db_upgrade_is_idempotent_and_url_prints(db_url: str) -> None:
    result = run_hq("db", "upgrade")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == f"database at revision {head_revision()}"
    url = run_hq("db", "url")
    assert url.stdout.startswith("postgresql://postgres@/")


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
