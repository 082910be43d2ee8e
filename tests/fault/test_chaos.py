"""Chaos: three `hq run` processes, one killed with SIGKILL and restarted every few seconds.

Whatever is killed mid-flight — a claim, a model call, a review, a deploy — every issue
settles, every issue's events form a legal path through the state machine, no issue has
model calls from more `execute` runs than its max_attempts (a run makes a few calls, all
under its run id), and the ledger adds up: each issue's spend is exactly its cost rows.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from pathlib import Path

import psycopg
import pytest

from tests.support.cli import run_hq
from tests.support.processes import (
    EXECUTORS,
    SHORT_LEASES,
    assert_legal_paths,
    settling,
    start,
    stop,
    unsettled,
    wait_for_progress,
)
from tests.support.rows import one

# A backstop against a hang only: the waits below fail on a stall, however long steady progress takes.
pytestmark = pytest.mark.timeout(3600)


def chaos(raw: psycopg.Connection, tmp_path: Path, issues: int, chaos_seconds: float) -> None:
    assert run_hq("agents", "sync").exit_code == 0
    for index in range(issues):
        slow = " [offline:slow]" if index % 8 == 0 else ""  # two-second model calls: kills land mid-call
        assert (
            run_hq(
                "issue",
                "create",
                f"Routine task {index}{slow}",
                "--assign",
                EXECUTORS[index % len(EXECUTORS)],
                "--priority",
                str(index % 10),
            ).exit_code
            == 0
        )
    rng = random.Random(7)
    workers = [start(tmp_path, f"w{n}-0", **SHORT_LEASES) for n in range(3)]
    kills = Counter[int]()
    try:
        ends = time.monotonic() + chaos_seconds
        while time.monotonic() < ends and unsettled(raw):
            time.sleep(rng.uniform(1.5, 4.0))
            victim = rng.randrange(3)
            workers[victim].kill()
            workers[victim].wait()
            kills[victim] += 1
            workers[victim] = start(tmp_path, f"w{victim}-{kills[victim]}", **SHORT_LEASES)
        settled = wait_for_progress(lambda: settling(raw), lambda value: value[0] == 0, step=1)
        # Reservations of calls killed mid-flight outlive their TTL, then the sweeper charges them.
        wait_for_progress(
            lambda: one(raw.execute("SELECT count(*) FROM budget_reservations").fetchone())[0], lambda left: left == 0
        )
    finally:
        for worker in workers:
            stop(worker)
    statuses: dict[str, int] = dict(raw.execute("SELECT status, count(*) FROM issues GROUP BY 1").fetchall())
    assert settled, f"{settled}; statuses {statuses}"
    assert sum(kills.values()) >= 3, kills
    assert statuses.get("done", 0) >= issues * 0.9, statuses  # a few may end with a human after max_attempts
    assert_legal_paths(raw)
    over = raw.execute("""
        SELECT i.id, i.max_attempts, count(DISTINCT l.run_id) AS runs
          FROM issues i JOIN llm_calls l ON l.issue_id = i.id AND l.workflow = 'execute'
         GROUP BY i.id, i.max_attempts HAVING count(DISTINCT l.run_id) > i.max_attempts""").fetchall()
    assert over == [], over
    # Every reservation was settled, or charged in full by the sweeper; the ledger adds up.
    assert raw.execute("SELECT count(*) FROM budget_reservations").fetchone() == (0,)
    assert raw.execute("SELECT sum(reserved_usd) FROM issues").fetchone() == (0,)
    mismatched = raw.execute("""
        SELECT i.id, i.spent_usd, coalesce(sum(l.cost_usd), 0)
          FROM issues i LEFT JOIN llm_calls l ON l.issue_id = i.id
         GROUP BY i.id HAVING i.spent_usd <> coalesce(sum(l.cost_usd), 0)""").fetchall()
    assert mismatched == [], mismatched


def test_chaos_kill_small(db_url: str, raw: psycopg.Connection, tmp_path: Path) -> None:
    chaos(raw, tmp_path, issues=40, chaos_seconds=15)


@pytest.mark.slow
def test_chaos_kill_300_issues(db_url: str, raw: psycopg.Connection, tmp_path: Path) -> None:
    chaos(raw, tmp_path, issues=300, chaos_seconds=60)
