"""`hq run` keeps its own embedded PostgreSQL up: after a kill -9 of the postmaster it restarts it itself."""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.support.cli import run_hq_process
from tests.support.processes import FAST, Progress, start, stop, wait_for_progress, wait_until

# A backstop against a hang only: the waits for work fail on a stall, however long steady progress takes.
pytestmark = pytest.mark.timeout(1800)


@pytest.fixture()
def data_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A data dir of hq's own, outside pytest's private tmp tree (the server runs as a system user)."""
    from db.embedded import stop_server

    root = Path(tempfile.mkdtemp(prefix="hq-test-embedded-"))
    root.chmod(0o755)
    monkeypatch.setenv("HQ_DATA_DIR", str(root))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    try:
        yield root
    finally:
        stop_server(root)
        shutil.rmtree(root, ignore_errors=True)


def _progress(root: Path, issue: int) -> tuple[str, int] | None:
    """The issue's status and how many events it has, or None while the server is away."""
    from config.urls import libpq_url
    from db.embedded import pgdata_dir, running_server

    server = running_server(pgdata_dir(root))
    if server is None:
        return None
    try:
        with psycopg.connect(libpq_url(server.url()), autocommit=True, connect_timeout=2) as conn:
            row = conn.execute(
                "SELECT status, (SELECT count(*) FROM issue_events WHERE issue_id = i.id) FROM issues i WHERE id = %s",
                (issue,),
            ).fetchone()
    except psycopg.OperationalError:
        return None
    return None if row is None else (row[0], int(row[1]))


def _wait_done(root: Path, issue: int) -> Progress[tuple[str, int] | None]:
    """Until the issue is done, failing only if it stops moving (a wall-clock total fails under load)."""
    return wait_for_progress(lambda: _progress(root, issue), lambda value: value is not None and value[0] == "done")


def test_a_killed_embedded_server_is_restarted_by_hq_run(data_dir: Path, tmp_path: Path) -> None:
    from db.embedded import pgdata_dir, running_server

    env = {"HQ_DATA_DIR": str(data_dir), **FAST}
    assert run_hq_process("agents", "sync", env=env).returncode == 0
    first = run_hq_process("issue", "create", "Write the notes", "--assign", "technical-writer", env=env)
    assert first.returncode == 0, first.stderr
    worker = start(tmp_path, "run", HQ_DATA_DIR=str(data_dir), HQ_LOG_LEVEL="info")
    try:
        before_crash = _wait_done(data_dir, int(first.stdout))
        assert before_crash, f"no work before the crash: {before_crash}"
        before = running_server(pgdata_dir(data_dir))
        assert before is not None
        os.kill(before.pid, signal.SIGKILL)
        assert wait_until(
            lambda: (s := running_server(pgdata_dir(data_dir))) is not None and s.pid != before.pid, timeout=90
        ), "hq run did not restart the server"
        second = run_hq_process("issue", "create", "Write more notes", "--assign", "technical-writer", env=env)
        assert second.returncode == 0, second.stderr
        after_restart = _wait_done(data_dir, int(second.stdout))
        assert after_restart, f"no work after the restart: {after_restart}"
        assert worker.poll() is None
    finally:
        stop(worker)
    events = [
        json.loads(line).get("event")
        for line in (tmp_path / "run.log").read_text().splitlines()
        if line.startswith("{")
    ]
    assert events.count("embedded_postgres.down") == 1 and events.count("embedded_postgres.restarted") == 1
    assert events.count("database.unavailable") <= 1  # one line per outage, not one per failing beat
    warnings = [e for e in events if e and ("unavailable" in e or "reconnecting" in e or "crashed" in e)]
    assert len(warnings) <= 3, warnings
