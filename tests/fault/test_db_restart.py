"""PostgreSQL restarts twice in the middle of a run: the `hq run` processes reconnect on their own.

The test runs its own embedded server (restarting the session's would cut every other
test's connections). Nothing in the processes is told about the restarts: pooled
connections, the budget connection and the LISTEN connection must all notice and recover,
and work interrupted mid-transaction must come back through its lease.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.support.cli import run_hq
from tests.support.processes import (
    DONE_SO_FAR,
    EXECUTORS,
    SHORT_LEASES,
    assert_legal_paths,
    settling,
    start,
    stop,
    wait_for_progress,
)
from tests.support.rows import one

# A backstop against a hang only: the waits below fail on a stall, however long steady progress takes.
pytestmark = pytest.mark.timeout(3600)


@pytest.fixture()
def own_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    from config.settings import reset_settings
    from db.embedded import ensure_server, stop_server
    from db.engine import dispose_engines

    # Not under pytest's tmp_path: another pytest session starting makes that tree private (0700),
    # and the server runs as a system user that must be able to reach its data dir.
    root = Path(tempfile.mkdtemp(prefix="hq-test-restart-"))
    server = ensure_server(root)
    monkeypatch.setenv("DATABASE_URL", server.url())
    reset_settings()
    try:
        yield root
    finally:
        dispose_engines()
        reset_settings()
        stop_server(root)
        shutil.rmtree(root, ignore_errors=True)


def query(root: Path, sql: str) -> tuple[Any, ...]:
    """One query on a fresh connection (the server comes and goes)."""
    from config.urls import libpq_url
    from db.embedded import running_server

    server = running_server(root / "pgdata")
    assert server is not None
    with psycopg.connect(libpq_url(server.url()), autocommit=True) as conn:
        return one(conn.execute(sql).fetchone())


def restart(root: Path) -> None:
    from db.embedded import ensure_server, stop_server

    assert stop_server(root)  # fast shutdown: every connection is cut mid-whatever
    time.sleep(1.0)
    ensure_server(root)


def test_database_restarts_twice_mid_run(own_server: Path, tmp_path: Path) -> None:
    assert run_hq("agents", "sync").exit_code == 0
    count = 60
    for index in range(count):
        assert (
            run_hq(
                "issue",
                "create",
                f"Routine task {index}",
                "--assign",
                EXECUTORS[index % len(EXECUTORS)],
                "--priority",
                str(index % 10),
            ).exit_code
            == 0
        )
    workers = [start(tmp_path, "a", **SHORT_LEASES), start(tmp_path, "b", **SHORT_LEASES)]
    try:
        first = wait_for_progress(lambda: query(own_server, DONE_SO_FAR), lambda value: value[0] >= 5)
        assert first, f"no work before the first restart: {first}"
        restart(own_server)
        before_second = query(own_server, DONE_SO_FAR)[0]
        second = wait_for_progress(lambda: query(own_server, DONE_SO_FAR), lambda value: value[0] >= before_second + 5)
        assert second, f"no progress after the first restart: {second}"
        restart(own_server)
        from config.urls import libpq_url
        from db.embedded import running_server

        server = running_server(own_server / "pgdata")
        assert server is not None
        with psycopg.connect(libpq_url(server.url()), autocommit=True) as raw:
            settled = wait_for_progress(lambda: settling(raw), lambda value: value[0] == 0, step=1)
            alive = [worker.poll() is None for worker in workers]
            statuses: dict[str, int] = dict(raw.execute("SELECT status, count(*) FROM issues GROUP BY 1").fetchall())
            assert settled, f"{settled}; statuses {statuses}"
            assert alive == [True, True], "a process died instead of reconnecting"
            assert statuses == {"done": count}, statuses
            assert_legal_paths(raw)
    finally:
        for worker in workers:
            stop(worker)
