"""The embedded PostgreSQL: one server reused, not restarted, and with no DATABASE_URL `hq` starts it,
migrates it and serves from it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from db.embedded import running_server
from tests.support.cli import run_hq
from tests.support.postgres import PgServer


def test_embedded_server_is_reused_not_restarted(pg_server: PgServer) -> None:
    from db.embedded import ensure_server

    first = running_server(pg_server.root / "pgdata")
    assert first is not None
    assert ensure_server(pg_server.root).pid == first.pid


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
