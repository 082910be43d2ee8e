"""Real `hq run` processes for the tests that start them (tests/fault/ above all), the waits for their
progress, and the invariants every run must keep."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

import psycopg

from tests.support.cli import BIN
from tests.support.rows import one

FAST = {
    "HQ_HEARTBEAT_SCALE": str(1 / 900),
    "HQ_SWEEP_INTERVAL_SECONDS": "1",
    "HQ_LOG_LEVEL": "warning",
    "HQ_LOG_FORMAT": "json",
}
# Leases and budget reservations short enough that killed work comes back, and is charged, within seconds.
SHORT_LEASES = {
    "HQ_LEASE_TTL_SECONDS": "5",
    "HQ_AGENT_LEASE_TTL_SECONDS": "16",
    "HQ_RESERVATION_TTL_SECONDS": "8",
}
EXECUTORS = (
    "backend-engineer",
    "frontend-engineer",
    "data-analyst",
    "content-writer",
    "qa-engineer",
    "technical-writer",
    "ux-designer",
    "support-agent",
    "ml-engineer",
    "security-engineer",
)


def start(tmp_path: Path, name: str, **env: str) -> subprocess.Popen[bytes]:
    # The child writes to its own copy of the descriptor: ours is closed as soon as it has started.
    with open(tmp_path / f"{name}.log", "wb") as log:
        return subprocess.Popen(
            [str(BIN / "hq"), "run", "--threads", "4"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **FAST, **env},
        )


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def wait_until(predicate: Callable[[], bool], timeout: float, step: float = 0.5) -> bool:
    """A wall-clock deadline: only for one event that must happen soon (a process exits, a server is back).

    Anything that waits for *work* uses ``wait_for_progress``: a fixed total fails on a loaded machine.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


STALL_SECONDS = float(os.environ.get("HQ_TEST_STALL_SECONDS", "60"))
"""How long a wait for work accepts no progress at all before it fails (any slower is a hang, not load)."""

T = TypeVar("T")


@dataclass
class Progress(Generic[T]):
    """How a ``wait_for_progress`` ended: truthy when done; otherwise it stalled on ``value``."""

    done: bool
    value: T
    elapsed: float
    changes: int
    stalled_for: float

    def __bool__(self) -> bool:
        return self.done

    def __str__(self) -> str:
        state = "done" if self.done else f"no progress for {self.stalled_for:.0f}s"
        return f"{state} after {self.elapsed:.0f}s and {self.changes} change(s); last measured {self.value!r}"


def wait_for_progress(
    measure: Callable[[], T],
    done: Callable[[T], bool],
    stall_seconds: float = STALL_SECONDS,
    step: float = 0.5,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Progress[T]:
    """Poll ``measure()`` until ``done(value)``; fail only when the value has not changed for ``stall_seconds``.

    The deadline follows the work, not the clock on the wall: a run that is slow but keeps moving (a loaded
    machine) waits as long as it keeps moving; one that stops moving fails ``stall_seconds`` after its last
    change. ``measure`` should change whenever work is done towards ``done`` (e.g. the settled count with the
    newest event id), so that a stuck run cannot look busy.
    """
    started = clock()
    value = measure()
    changed_at, changes = started, 0
    while not done(value):
        now = clock()
        if now - changed_at >= stall_seconds:
            return Progress(False, value, now - started, changes, now - changed_at)
        sleep(step)
        latest = measure()
        if latest != value:
            value, changed_at, changes = latest, clock(), changes + 1
    now = clock()
    return Progress(True, value, now - started, changes, now - changed_at)


def assert_legal_paths(raw: psycopg.Connection) -> None:
    legal = set(raw.execute("SELECT from_status, to_status FROM issue_transitions").fetchall())
    steps: dict[int, list[tuple[str | None, str]]] = defaultdict(list)
    for issue_id, source, target in raw.execute(
        "SELECT issue_id, from_status, to_status FROM issue_events ORDER BY id"
    ):
        steps[issue_id].append((source, target))
    for issue_id, path in steps.items():
        assert path[0][0] is None, (issue_id, path)
        for (_, previous), (source, target) in itertools.pairwise(path):
            assert source == previous and (source, target) in legal, (issue_id, path)


def assert_no_overlaps(raw: psycopg.Connection) -> None:
    """No agent beat twice at once, and no issue was executed by two runs at once."""
    beats: dict[int, list[tuple]] = defaultdict(list)
    for agent, started, finished in raw.execute(
        "SELECT agent_id, started_at, finished_at FROM heartbeat_runs WHERE finished_at IS NOT NULL ORDER BY 2"
    ):
        beats[agent].append((started, finished))
    for agent, spans in beats.items():
        for (_, previous_end), (start_, _) in itertools.pairwise(spans):
            assert start_ >= previous_end, f"agent {agent} beat twice at once"
    runs = raw.execute(
        "SELECT issue_id, run_id, min(created_at), max(created_at) FROM llm_calls "
        "WHERE workflow = 'execute' GROUP BY 1, 2 ORDER BY 1, 3"
    ).fetchall()
    by_issue: dict[int, list[tuple]] = defaultdict(list)
    for issue_id, _run, first, last in runs:
        by_issue[issue_id].append((first, last))
    for issue_id, spans in by_issue.items():
        for (_, previous_end), (start_, _) in itertools.pairwise(spans):
            assert start_ >= previous_end, f"issue {issue_id} executed by two runs at once"


# Statuses in which an agent still has something to do (a blocked issue with an agent to escalate to, too).
UNSETTLED = """
    SELECT count(*) FROM issues
     WHERE status IN ('backlog', 'todo', 'in_progress', 'in_review', 'approved', 'deploying')
        OR (status = 'blocked' AND escalated_to_id IS NOT NULL)
"""


def unsettled(raw: psycopg.Connection) -> int:
    return int(one(raw.execute(UNSETTLED).fetchone())[0])


# The newest transition: it moves whenever any issue moves, so "no new event" means "nothing happened".
LAST_EVENT = "SELECT coalesce(max(id), 0) FROM issue_events"
# Issues done so far, and the newest event: any transition is progress towards the next one done.
DONE_SO_FAR = f"SELECT (SELECT count(*) FROM issues WHERE status = 'done'), ({LAST_EVENT})"


def settling(raw: psycopg.Connection) -> tuple[int, int]:
    """What a wait for the company to settle watches: unsettled issues, and the newest event."""
    return unsettled(raw), int(one(raw.execute(LAST_EVENT).fetchone())[0])
