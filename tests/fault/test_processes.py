"""Real `hq run` processes sharing one database: no double claims, no overlapping beats, kill -9 survivable."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import defaultdict
from pathlib import Path

import psycopg
import pytest

from tests.conftest import BIN, run_hq

FAST = {"HQ_HEARTBEAT_SCALE": str(1 / 900), "HQ_SWEEP_INTERVAL_SECONDS": "1", "HQ_LOG_LEVEL": "warning",
        "HQ_LOG_FORMAT": "json"}
EXECUTORS = ("backend-engineer", "frontend-engineer", "data-analyst", "content-writer", "qa-engineer",
             "technical-writer", "ux-designer", "support-agent", "ml-engineer", "security-engineer")


def start(tmp_path: Path, name: str, **env: str) -> subprocess.Popen[bytes]:
    log = open(tmp_path / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
    return subprocess.Popen([str(BIN / "hq"), "run", "--threads", "4"], stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, **FAST, **env})


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def wait_until(predicate, timeout: float, step: float = 0.5) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def assert_legal_paths(raw: psycopg.Connection) -> None:
    legal = set(raw.execute("SELECT from_status, to_status FROM issue_transitions").fetchall())
    steps: dict[int, list[tuple[str | None, str]]] = defaultdict(list)
    for issue_id, source, target in raw.execute("SELECT issue_id, from_status, to_status FROM issue_events ORDER BY id"):
        steps[issue_id].append((source, target))
    for issue_id, path in steps.items():
        assert path[0][0] is None, (issue_id, path)
        for (_, previous), (source, target) in zip(path, path[1:]):
            assert source == previous and (source, target) in legal, (issue_id, path)


def assert_no_overlaps(raw: psycopg.Connection) -> None:
    """No agent beat twice at once, and no issue was executed by two runs at once."""
    beats: dict[int, list[tuple]] = defaultdict(list)
    for agent, started, finished in raw.execute(
            "SELECT agent_id, started_at, finished_at FROM heartbeat_runs WHERE finished_at IS NOT NULL ORDER BY 2"):
        beats[agent].append((started, finished))
    for agent, spans in beats.items():
        for (_, previous_end), (start_, _) in zip(spans, spans[1:]):
            assert start_ >= previous_end, f"agent {agent} beat twice at once"
    runs = raw.execute("SELECT issue_id, run_id, min(created_at), max(created_at) FROM llm_calls "
                       "WHERE workflow = 'execute' GROUP BY 1, 2 ORDER BY 1, 3").fetchall()
    by_issue: dict[int, list[tuple]] = defaultdict(list)
    for issue_id, _run, first, last in runs:
        by_issue[issue_id].append((first, last))
    for issue_id, spans in by_issue.items():
        for (_, previous_end), (start_, _) in zip(spans, spans[1:]):
            assert start_ >= previous_end, f"issue {issue_id} executed by two runs at once"


def test_two_processes_share_the_company(db_url: str, raw: psycopg.Connection, tmp_path: Path) -> None:
    assert run_hq("agents", "sync").exit_code == 0
    count = 150
    for index in range(count):
        assert run_hq("issue", "create", f"Routine task {index}", "--assign", EXECUTORS[index % len(EXECUTORS)],
                      "--priority", str(index % 10)).exit_code == 0
    workers = [start(tmp_path, "a"), start(tmp_path, "b")]
    try:
        settled = wait_until(lambda: raw.execute(
            "SELECT count(*) FROM issues WHERE status = 'done'").fetchone()[0] == count, timeout=240, step=1)
    finally:
        for worker in workers:
            stop(worker)
    statuses = dict(raw.execute("SELECT status, count(*) FROM issues GROUP BY 1").fetchall())
    assert settled, statuses
    assert_legal_paths(raw)
    assert_no_overlaps(raw)
    assert raw.execute("SELECT count(DISTINCT worker) FROM heartbeat_runs WHERE claims > 0").fetchone() == (2,)
    assert raw.execute("SELECT count(*) FROM agents WHERE lease_owner IS NOT NULL").fetchone() == (0,)


def test_kill_9_mid_execute_another_process_finishes(db_url: str, raw: psycopg.Connection, tmp_path: Path) -> None:
    assert run_hq("agents", "sync").exit_code == 0
    issue = int(run_hq("issue", "create", "Add a rate limiter [offline:slow]", "--assign", "backend-engineer").stdout)
    short = {"HQ_WORKFLOW_MAX_SECONDS": "6", "HQ_LEASE_TTL_SECONDS": "5", "HQ_AGENT_LEASE_TTL_SECONDS": "16"}
    first = start(tmp_path, "first", **short)
    try:
        assert wait_until(lambda: raw.execute("SELECT status FROM issues WHERE id = %s", (issue,)).fetchone()[0]
                          == "in_progress", timeout=60, step=0.1)
        time.sleep(0.5)  # inside the slow first model call
        first.kill()
        first.wait()
    finally:
        stop(first)
    assert raw.execute("SELECT status, attempts FROM issues WHERE id = %s", (issue,)).fetchone() == ("in_progress", 1)
    second = start(tmp_path, "second", **short)
    try:
        assert wait_until(lambda: raw.execute("SELECT status FROM issues WHERE id = %s", (issue,)).fetchone()[0]
                          == "done", timeout=90)
    finally:
        stop(second)
    assert_legal_paths(raw)
    path = [r[0] for r in raw.execute("SELECT to_status FROM issue_events WHERE issue_id = %s ORDER BY id", (issue,))]
    assert path[:2] == ["todo", "in_progress"] and path[-1] == "done"
    assert raw.execute("SELECT count(*) FROM artifacts WHERE issue_id = %s", (issue,)).fetchone()[0] >= 1
    runs = raw.execute("SELECT count(DISTINCT run_id) FROM llm_calls WHERE issue_id = %s AND workflow = 'execute'",
                       (issue,)).fetchone()[0]
    assert runs <= 3  # max_attempts


@pytest.fixture(autouse=True)
def _workspaces(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HQ_DATA_DIR", str(tmp_path / "var"))
