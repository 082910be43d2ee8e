"""Alembic environment: runs on the connection `hq` hands it, or on the configured database."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from db.models import Base

config = context.config


def run_on(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=Base.metadata, transaction_per_migration=False)
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    run_on(connection)
else:
    # Plain `alembic upgrade head` from the repo root (alembic.ini): use the settings.
    from db.engine import get_engine

    with get_engine(migrate=False).begin() as conn:
        run_on(conn)
