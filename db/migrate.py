"""Schema migrations: alembic, with a fast path that costs one query when nothing is due.

`hq` commands check the schema on first use of the engine. Importing alembic
costs ~0.2 s, so the head revision is read from the migration file names and
alembic is loaded only when an upgrade is really due.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, text
from sqlalchemy.engine import Engine

from config.errors import ConfigError
from config.log import get_logger
from config.settings import get_settings
from db.notices import NoticeHandler, capture_notices

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_LOCK_KEY = 0x6871_6D69  # "hqmi": one migrator at a time across processes

log = get_logger(__name__)


def head_revision() -> str:
    """Revisions are numbered files (0001_initial.py has revision "0001"); the highest is head."""
    revisions = sorted(p.name.split("_", 1)[0] for p in (MIGRATIONS_DIR / "versions").glob("[0-9]*_*.py"))
    return revisions[-1]


def current_revision(connection: Connection) -> str | None:
    # to_regclass answers "no table yet" without an error (and so without a savepoint).
    if connection.execute(text("SELECT to_regclass('alembic_version')")).scalar() is None:
        return None
    return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


def alembic_config(connection: Connection | None = None) -> Config:
    from alembic.config import Config  # alembic loads only to migrate

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def upgrade(
    engine: Engine, revision: str = "head", on_notice: NoticeHandler | None = None
) -> tuple[str | None, str | None]:
    """Upgrade under an advisory lock; returns (before, after) revisions.

    What the migrations' SQL says it could not do (``RAISE NOTICE``, warnings) goes to
    ``on_notice``, one line each (default: the log); see db/notices.py.
    """
    from alembic import command  # alembic loads only to migrate

    with engine.begin() as connection, capture_notices(connection, on_notice):
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
        enter_schema(connection, get_settings().db_schema)
        before = current_revision(connection)
        command.upgrade(alembic_config(connection), revision)
        after = current_revision(connection)
    if before != after:
        log.info("db.migrated", before=before, after=after)
    return before, after


def enter_schema(connection: Connection, schema: str) -> None:
    """Make ``schema`` where this transaction's objects go, creating it if the role may.

    Beyond ``public``, the role's own default search_path in this database is set
    too, so every later session (through a transaction pooler as well, which
    cannot carry a SET) finds hq's tables. A role that may not create there is
    told what an admin must run, instead of PostgreSQL's bare "permission denied".
    """
    may_create = connection.execute(
        text("SELECT has_schema_privilege(CAST(:schema AS text), 'CREATE') FROM pg_namespace WHERE nspname = :schema"),
        {"schema": schema},
    ).scalar()
    role = connection.execute(text("SELECT current_user")).scalar()
    if may_create is None:
        if not connection.execute(text("SELECT has_database_privilege(current_database(), 'CREATE')")).scalar():
            raise ConfigError(
                f"schema {schema!r} does not exist and role {role!r} may not create it: an admin can "
                f"run CREATE SCHEMA {schema} AUTHORIZATION {role}, or set HQ_DB_SCHEMA to a schema "
                f"{role!r} owns"
            )
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))  # the name is a checked identifier (settings)
    elif not may_create:
        raise ConfigError(
            f"role {role!r} may not create objects in schema {schema!r} (PostgreSQL 15+ no longer "
            f"lets every role create in public): an admin can run CREATE SCHEMA hq AUTHORIZATION "
            f"{role} and you set HQ_DB_SCHEMA=hq, or run GRANT CREATE ON SCHEMA {schema} TO {role}"
        )
    connection.execute(text("SELECT set_config('search_path', :path, true)"), {"path": f'"{schema}"'})
    if schema != "public":
        statement = connection.execute(
            text(
                "SELECT format('ALTER ROLE %I IN DATABASE %I SET search_path = %I', current_user, current_database(), "
                "CAST(:schema AS text))"
            ),
            {"schema": schema},
        ).scalar()
        connection.exec_driver_sql(str(statement))


def ensure_schema(engine: Engine) -> None:
    with engine.connect() as connection:
        current = current_revision(connection)
        connection.rollback()
    if current != head_revision():
        upgrade(engine)
