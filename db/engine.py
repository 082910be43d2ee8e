"""Engine and transactions: one engine per process and URL, one transaction per unit of work.

Every write happens inside ``transaction(actor=..., workflow=...)``, which sets
``hq.actor`` / ``hq.workflow`` / ``hq.run_id`` with SET LOCAL so the audit trigger
records who did it. Nothing else in the code base opens a session for writing.
"""

from __future__ import annotations

import functools
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, TextClause, create_engine, event, text
from sqlalchemy.engine import Engine

from config.secrets import register_secrets
from config.settings import Settings, get_settings
from config.urls import libpq_url, sqlalchemy_url

if TYPE_CHECKING:  # the ORM costs ~80 ms to load; the CLI's hot commands use Core connections only
    from sqlalchemy.orm import Session  # the ORM (~70 ms) loads for workflows, not for `hq approve`

_engines: dict[str, Engine] = {}
_lock = threading.Lock()


@functools.lru_cache(maxsize=8)
def _context_statement(schema: str, names: tuple[str, ...]) -> TextClause:
    """Who is acting, and (for a transaction pooler's sake) the session settings ``names``, in one round trip.

    ``hq_act_as`` is named with its schema: search_path is one of the settings being set.
    """
    settings = ", ".join(f"set_config('{name}', :{name}, true)" for name in names)
    return text(f'SELECT "{schema}".hq_act_as(:actor, :workflow, :run_id), {settings}')


def _set_context(conn: Connection | Session, actor: str, workflow: str | None, run_id: uuid.UUID | str | None) -> None:
    settings = get_settings()
    limits = session_settings(settings)
    conn.execute(
        _context_statement(settings.db_schema, tuple(limits)),
        {"actor": actor, "workflow": workflow or "", "run_id": str(run_id) if run_id else "", **limits},
    )


def database_url(settings: Settings) -> str:
    """The configured DATABASE_URL, or the embedded server's (started on demand)."""
    if settings.database_url is not None:
        url = settings.database_url.get_secret_value()
        register_secrets(url)
        return sqlalchemy_url(url)
    from db.embedded import ensure_server  # the embedded server's wheel loads only when it is the database

    return ensure_server(settings.data_path).url()


def session_settings(settings: Settings) -> dict[str, str]:
    """Limits on every session of hq's own, so a forgotten transaction cannot hold row locks (and claims) forever.

    They are set with SET after connecting (or SET LOCAL in each transaction behind a
    transaction pooler), never as startup ``options``: PgBouncer refuses that parameter,
    and a database-wide default would reach every other client of the database.
    """
    return {
        "search_path": f'"{settings.db_schema}"',
        "statement_timeout": str(settings.statement_timeout_ms),
        "idle_in_transaction_session_timeout": str(settings.idle_in_transaction_timeout_ms),
    }


def driver_options(settings: Settings) -> dict[str, object]:
    """psycopg connect() arguments: behind a transaction pooler, no server-side prepared statements
    (the next transaction may run on another server connection, which never saw them)."""
    options: dict[str, object] = {"application_name": "hq"}
    if settings.db_pooler == "transaction":
        options["prepare_threshold"] = None
    return options


def configure_session(dbapi_connection: Any, settings: Settings) -> None:
    """SET the session limits on a new connection; behind a transaction pooler they go per transaction instead."""
    if settings.db_pooler == "transaction":
        return
    values = session_settings(settings)
    with dbapi_connection.cursor() as cursor:
        cursor.execute(
            "SELECT " + ", ".join(["set_config(%s, %s, false)"] * len(values)),
            [part for item in values.items() for part in item],
        )
    if not dbapi_connection.autocommit:
        dbapi_connection.commit()


def listen_url(settings: Settings, engine: Engine) -> str:
    """The libpq URL for the LISTEN connection: HQ_LISTEN_DATABASE_URL, else the engine's own, password included."""
    if settings.listen_database_url is not None:
        url = settings.listen_database_url.get_secret_value()
        register_secrets(url)
        return libpq_url(url)
    return libpq_url(engine.url.render_as_string(hide_password=False))


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
                connect_args=driver_options(settings),
            )
            event.listen(
                engine, "connect", lambda dbapi_connection, _record: configure_session(dbapi_connection, settings)
            )
            if migrate:
                from db.migrate import ensure_schema  # db.migrate imports this module

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
    from sqlalchemy.orm import Session  # the ORM (~70 ms) loads for workflows, not for `hq approve`

    engine = engine or get_engine()
    with Session(engine, expire_on_commit=False, autoflush=True) as session, session.begin():
        _set_context(session, actor, workflow, run_id)
        yield session


@contextmanager
def read_only(engine: Engine | None = None) -> Iterator[Session]:
    """A session for reads: no actor, nothing committed. Closing it ends the transaction but
    keeps loaded objects readable (a rollback would expire them)."""
    from sqlalchemy.orm import Session  # the ORM (~70 ms) loads for workflows, not for `hq approve`

    engine = engine or get_engine()
    with Session(engine, expire_on_commit=False) as session:
        yield session


@contextmanager
def connection(actor: str, *, workflow: str | None = None, engine: Engine | None = None) -> Iterator[Connection]:
    """Like ``transaction`` but a Core connection: for the CLI commands that must start fast."""
    engine = engine or get_engine()
    with engine.begin() as conn:
        _set_context(conn, actor, workflow, None)
        yield conn


@contextmanager
def reading(engine: Engine | None = None) -> Iterator[Connection]:
    """A Core connection for reads (rolled back at the end)."""
    engine = engine or get_engine()
    with engine.connect() as conn:
        yield conn
