"""The embedded PostgreSQL the tests share: its address, and databases of a test's own on it.

tests/conftest.py starts the server once per session (``pg_server``) and clones a migrated
template for each test that asks for ``db_url``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest


@dataclass
class PgServer:
    root: Path
    socket_dir: Path
    port: int

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@/{database}?host={self.socket_dir}&port={self.port}"

    def libpq(self, database: str) -> str:
        return f"postgresql://postgres@/{database}?host={self.socket_dir}&port={self.port}"

    def admin(self) -> psycopg.Connection:
        return psycopg.connect(self.libpq("postgres"), autocommit=True)


@contextlib.contextmanager
def own_database(
    pg: PgServer, monkeypatch: pytest.MonkeyPatch, name: str, *, owner: str | None = None, user: str = "postgres"
) -> Iterator[str]:
    """A new, empty database for one test, with DATABASE_URL pointing at it (as ``user``); dropped afterwards."""
    from config.settings import reset_settings
    from db.engine import dispose_engines

    with pg.admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"' + (f' OWNER "{owner}"' if owner else ""))
    monkeypatch.setenv("DATABASE_URL", pg.url(name).replace("postgres@", f"{user}@", 1))
    reset_settings()
    try:
        yield name
    finally:
        dispose_engines()
        reset_settings()
        with pg.admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
