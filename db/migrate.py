"""Schema migrations: alembic, with a fast path that costs one query when nothing is due.

`hq` commands check the schema on first use of the engine. Importing alembic
costs ~0.2 s, so the head revision is read from the migration file names and
alembic is loaded only when an upgrade is really due.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Connection, text
from sqlalchemy.engine import Engine

from config.log import get_logger

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


def alembic_config(connection: Connection | None = None):  # type: ignore[no-untyped-def]
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def upgrade(engine: Engine, revision: str = "head") -> tuple[str | None, str | None]:
    """Upgrade under an advisory lock; returns (before, after) revisions."""
    from alembic import command

    with engine.begin() as connection:
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
        before = current_revision(connection)
        command.upgrade(alembic_config(connection), revision)
        after = current_revision(connection)
    if before != after:
        log.info("db.migrated", before=before, after=after)
    return before, after


def ensure_schema(engine: Engine) -> None:
    with engine.connect() as connection:
        current = current_revision(connection)
        connection.rollback()
    if current != head_revision():
        upgrade(engine)
