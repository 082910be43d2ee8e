"""Test fixtures: one embedded PostgreSQL per session, one fresh database per test.

Each test that asks for ``db_url`` gets its own database cloned from a migrated
template (CREATE DATABASE ... TEMPLATE), so tests are independent even when the
code under test commits, forks processes or LISTENs.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
import pytest

from tests.support.cli import Result, run_hq

if TYPE_CHECKING:
    from scheduler.heartbeat import BeatContext
from tests.support.postgres import PgServer

TEMPLATE = "hq_template"
_counter = itertools.count()

# Nothing a test runs may reach a real provider, bot or the network.
for _var in (
    "ANTHROPIC_API_KEY",
    "OPENAI_API_KEY",
    "GEMINI_API_KEY",
    "TELEGRAM_BOT_TOKEN",
    "TELEGRAM_CHAT_ID",
    "DATABASE_URL",
    "HQ_DATA_DIR",
    "HQ_ROLES_DIR",
    "HQ_MODELS_FILE",
):
    os.environ.pop(_var, None)
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
os.environ["HQ_LOG_FORMAT"] = "json"


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    from db.embedded import ensure_server, stop_server

    root = Path(tempfile.mkdtemp(prefix="hq-test-pg-"))
    server = ensure_server(root)
    pg = PgServer(root=root, socket_dir=server.socket_dir, port=server.port)
    with pg.admin() as conn:
        # Durability buys nothing in a throwaway test cluster; speed does.
        for setting in ("fsync = off", "synchronous_commit = off", "full_page_writes = off"):
            conn.execute(f"ALTER SYSTEM SET {setting}")
        conn.execute("SELECT pg_reload_conf()")
        conn.execute(f'CREATE DATABASE "{TEMPLATE}"')
    _migrate(pg.url(TEMPLATE))
    try:
        yield pg
    finally:
        from db.engine import dispose_engines

        dispose_engines()
        stop_server(root)
        shutil.rmtree(root, ignore_errors=True)


def _migrate(url: str) -> None:
    from sqlalchemy import create_engine

    from db.migrate import upgrade

    engine = create_engine(url)
    upgrade(engine)
    engine.dispose()


@pytest.fixture()
def db_url(pg_server: PgServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    """A fresh migrated database for this test; DATABASE_URL and HQ_DATA_DIR point at it."""
    from config.settings import reset_settings
    from db.engine import dispose_engines

    name = f"hq_test_{os.getpid()}_{next(_counter)}"
    with pg_server.admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE}" STRATEGY FILE_COPY')
    url = pg_server.url(name)
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("HQ_DATA_DIR", str(tmp_path / "var"))
    reset_settings()
    try:
        yield url
    finally:
        dispose_engines()
        reset_settings()
        with pg_server.admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture()
def raw(db_url: str) -> Iterator[psycopg.Connection]:
    """A plain autocommit psycopg connection to the test database, as psql would be."""
    from config.urls import libpq_url

    with psycopg.connect(libpq_url(db_url), autocommit=True) as conn:
        yield conn


@pytest.fixture()
def hq() -> Callable[..., Result]:
    return run_hq


@pytest.fixture()
def runtime(db_url: str) -> BeatContext:
    """What every beat of an `hq run` process shares, the roster synced: for driving beats in the test's process."""
    from config.settings import load_settings
    from scheduler.company import Company

    assert run_hq("agents", "sync").exit_code == 0
    return Company(load_settings(), threads=1).runtime
