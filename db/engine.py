"""Engine and transactions: one engine per process and URL, one transaction per unit of work.

Every write happens inside ``transaction(actor=..., workflow=...)``, which sets
``hq.actor`` / ``hq.workflow`` / ``hq.run_id`` with SET LOCAL so the audit trigger
records who did it. Nothing else in the code base opens a session for writing.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from typing import TYPE_CHECKING

from sqlalchemy import Connection, create_engine, text
from sqlalchemy.engine import Engine

from config.secrets import register_secrets
from config.settings import Settings, get_settings
from db.urls import sqlalchemy_url

if TYPE_CHECKING:  # the ORM costs ~80 ms to load; the CLI's hot commands use Core connections only
    from sqlalchemy.orm import Session

_engines: dict[str, Engine] = {}
_lock = threading.Lock()

_SET_CONTEXT = text("SELECT hq_act_as(:actor, :workflow, :run_id)")


def database_url(settings: Settings) -> str:
    """The configured DATABASE_URL, or the embedded server's (started on demand)."""
    if settings.database_url is not None:
        url = settings.database_url.get_secret_value()
        register_secrets(url)
        return sqlalchemy_url(url)
    from db.embedded import ensure_server

    return ensure_server(settings.data_path).url()


def _session_options(settings: Settings) -> str:
    # A forgotten open transaction must not hold row locks (and block claims) forever.
    return (
        f"-c idle_in_transaction_session_timeout={settings.idle_in_transaction_timeout_ms}"
        f" -c statement_timeout={settings.statement_timeout_ms}"
    )


def get_engine(settings: Settings | None = None, *, migrate: bool = True) -> Engine:
    """The process-wide engine for the configured database, migrated to head on first use."""
    settings = settings or get_settings()
    url = database_url(settings)
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            engine = create_engine(
                url,
                # No pre-ping (it would add a round trip to every transaction): after a database
                # restart the first statement fails, SQLAlchemy invalidates the whole pool, and the
                # next heartbeat reconnects.
                pool_pre_ping=False,
                pool_size=8,
                max_overflow=16,
                pool_timeout=30,
                connect_args={"options": _session_options(settings), "application_name": "hq"},
            )
            if migrate:
                from db.migrate import ensure_schema

                ensure_schema(engine)
            _engines[url] = engine
    return engine


def dispose_engines() -> None:
    """Close every pooled connection (tests, and forked worker processes)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


@contextmanager
def transaction(
    actor: str,
    *,
    workflow: str | None = None,
    run_id: uuid.UUID | str | None = None,
    engine: Engine | None = None,
) -> Iterator[Session]:
    """A session inside one transaction that commits on success and rolls back on any error."""
    from sqlalchemy.orm import Session

    engine = engine or get_engine()
    with Session(engine, expire_on_commit=False, autoflush=True) as session, session.begin():
        session.execute(
            _SET_CONTEXT,
            {"actor": actor, "workflow": workflow or "", "run_id": str(run_id) if run_id else ""},
        )
        yield session


@contextmanager
def read_only(engine: Engine | None = None) -> Iterator[Session]:
    """A session for reads: no actor, nothing committed. Closing it ends the transaction but
    keeps loaded objects readable (a rollback would expire them)."""
    from sqlalchemy.orm import Session

    engine = engine or get_engine()
    with Session(engine, expire_on_commit=False) as session:
        yield session


@contextmanager
def connection(actor: str, *, workflow: str | None = None, engine: Engine | None = None) -> Iterator[Connection]:
    """Like ``transaction`` but a Core connection: for the CLI commands that must start fast."""
    engine = engine or get_engine()
    with engine.begin() as conn:
        conn.execute(_SET_CONTEXT, {"actor": actor, "workflow": workflow or "", "run_id": ""})
        yield conn


@contextmanager
def reading(engine: Engine | None = None) -> Iterator[Connection]:
    """A Core connection for reads (rolled back at the end)."""
    engine = engine or get_engine()
    with engine.connect() as conn:
        yield conn
