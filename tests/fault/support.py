"""What the fault tests share: real `hq run` processes, and the invariants every run must keep."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import defaultdict
from pathlib import Path

import psycopg

from tests.conftest import BIN

FAST = {"HQ_HEARTBEAT_SCALE": str(1 / 900), "HQ_SWEEP_INTERVAL_SECONDS": "1", "HQ_LOG_LEVEL": "warning",
        "HQ_LOG_FORMAT": "json"}
# Leases and budget reservations short enough that killed work comes back, and is charged, within seconds.
SHORT_LEASES = {"HQ_WORKFLOW_MAX_SECONDS": "6", "HQ_LEASE_TTL_SECONDS": "5", "HQ_AGENT_LEASE_TTL_SECONDS": "16",
                "HQ_RESERVATION_TTL_SECONDS": "8"}
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


# Statuses in which an agent still has something to do (a blocked issue with an agent to escalate to, too).
UNSETTLED = """
    SELECT count(*) FROM issues
     WHERE status IN ('backlog', 'todo', 'in_progress', 'in_review', 'approved', 'deploying')
        OR (status = 'blocked' AND escalated_to_id IS NOT NULL)
"""


def unsettled(raw: psycopg.Connection) -> int:
    return int(raw.execute(UNSETTLED).fetchone()[0])
