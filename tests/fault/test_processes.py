"""Real `hq run` processes sharing one database: no double claims, no overlapping beats, kill -9 survivable."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
import pytest

from tests.support.cli import run_hq
from tests.support.processes import (
    DONE_SO_FAR,
    EXECUTORS,
    SHORT_LEASES,
    assert_legal_paths,
    assert_no_overlaps,
    start,
    stop,
    wait_for_progress,
    wait_until,
)
from tests.support.rows import one

# A backstop against a hang only: the waits for work fail on a stall, however long steady progress takes.
pytestmark = pytest.mark.timeout(3600)


def test_two_processes_share_the_company(db_url: str, raw: psycopg.Connection, tmp_path: Path) -> None:
    assert run_hq("agents", "sync").exit_code == 0
    count = 150
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
    workers = [start(tmp_path, "a"), start(tmp_path, "b")]
    try:
        settled = wait_for_progress(
            lambda: one(raw.execute(DONE_SO_FAR).fetchone()), lambda value: value[0] == count, step=1
        )
    finally:
        for worker in workers:
            stop(worker)
    statuses: dict[str, int] = dict(raw.execute("SELECT status, count(*) FROM issues GROUP BY 1").fetchall())
    assert settled, f"{settled}; statuses {statuses}"
    assert_legal_paths(raw)
    assert_no_overlaps(raw)
    assert raw.execute("SELECT count(DISTINCT worker) FROM heartbeat_runs WHERE claims > 0").fetchone() == (2,)
    assert raw.execute("SELECT count(*) FROM agents WHERE lease_owner IS NOT NULL").fetchone() == (0,)


def test_kill_9_mid_execute_another_process_finishes(db_url: str, raw: psycopg.Connection, tmp_path: Path) -> None:
    assert run_hq("agents", "sync").exit_code == 0
    issue = int(run_hq("issue", "create", "Add a rate limiter [offline:slow]", "--assign", "backend-engineer").stdout)
    first = start(tmp_path, "first", **SHORT_LEASES)
    try:
        assert wait_until(
            lambda: (
                one(raw.execute("SELECT status FROM issues WHERE id = %s", (issue,)).fetchone())[0] == "in_progress"
            ),
            timeout=60,
            step=0.1,
        )
        time.sleep(0.5)  # inside the slow first model call
        first.kill()
        first.wait()
    finally:
        stop(first)
    assert raw.execute("SELECT status, attempts FROM issues WHERE id = %s", (issue,)).fetchone() == ("in_progress", 1)
    second = start(tmp_path, "second", **SHORT_LEASES)
    try:
        # Its lease runs out, the sweeper gives it back, the second process claims, reviews and deploys it.
        finished = wait_for_progress(
            lambda: one(
                raw.execute(
                    "SELECT status, (SELECT count(*) FROM issue_events WHERE issue_id = i.id)"
                    " FROM issues i WHERE id = %s",
                    (issue,),
                ).fetchone()
            ),
            lambda value: value[0] == "done",
        )
        assert finished, str(finished)
    finally:
        stop(second)
    assert_legal_paths(raw)
    path = [r[0] for r in raw.execute("SELECT to_status FROM issue_events WHERE issue_id = %s ORDER BY id", (issue,))]
    assert path[:2] == ["todo", "in_progress"] and path[-1] == "done"
    assert one(raw.execute("SELECT count(*) FROM artifacts WHERE issue_id = %s", (issue,)).fetchone())[0] >= 1
    runs = one(
        raw.execute(
            "SELECT count(DISTINCT run_id) FROM llm_calls WHERE issue_id = %s AND workflow = 'execute'", (issue,)
        ).fetchone()
    )[0]
    assert runs <= 3  # max_attempts
