"""Runs that outlast their lease: a gate command three lease lifetimes long, with the issue's lease renewed by
the run that works it (workflows/lib/leases.py) — kept while the work goes on, given up on ``kill -9``, and a
run whose lease was taken stops without pushing.

Two real `hq run` processes share the database (data dirs of their own, like two hosts); the lease is 5 s, the
project's test command sleeps 16 s before its tests. Waits follow progress (the lease renewals move
``lease_until``), never a wall-clock total.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import psycopg
import pytest

from tests.support.cli import run_hq
from tests.support.processes import assert_legal_paths, start, stop, wait_for_progress
from tests.support.projects import (
    CALC,
    GOOD_MUL,
    TESTS,
    add_project,
    fenced,
    make_remote,
    merges,
    needs_bwrap,
    project_issue,
    remote_rev,
)
from tests.support.rows import one

pytestmark = [pytest.mark.timeout(900), needs_bwrap]

TTL = 5
# Three lease lifetimes by default; `HQ_TEST_LONG_RUN_SECONDS=600` tries a ten-minute suite.
SLOW_SECONDS = int(os.environ.get("HQ_TEST_LONG_RUN_SECONDS", 3 * TTL + 1))
LEASES = {
    "HQ_LEASE_TTL_SECONDS": str(TTL),
    "HQ_AGENT_LEASE_TTL_SECONDS": str(TTL),
    "HQ_RESERVATION_TTL_SECONDS": "8",
    "HQ_LOG_LEVEL": "info",
}
SLOW_PROJECT = (
    "commands:\n"
    f"  test: {{run: [sh, -c, 'sleep {SLOW_SECONDS} && exec python3 -m unittest -q'], "
    f"timeout_seconds: {SLOW_SECONDS + 300}}}\n"
    "gate: [test]\n"
)
STATE = (
    "SELECT status, lease_owner::text, extract(epoch FROM lease_until), doing, lease_worker FROM issues WHERE id = %s"
)


def _slow_issue(raw: psycopg.Connection, tmp_path: Path) -> tuple[Path, int]:
    """A project whose test command takes SLOW_SECONDS, and an issue that gives the right code: its remote, its id."""
    assert run_hq("agents", "sync").exit_code == 0
    remote = make_remote(
        tmp_path / "shared", {".hq/project.yaml": SLOW_PROJECT, "calc.py": CALC, "test_calc.py": TESTS}
    )
    project = add_project(raw, remote)
    return remote, project_issue(raw, project, "Add mul to calc", fenced("calc.py", GOOD_MUL))


def _state(raw: psycopg.Connection, issue: int) -> tuple[str, str | None, float | None, str | None, str | None]:
    status, owner, until, doing, worker = one(raw.execute(STATE, (issue,)).fetchone())
    return str(status), owner, float(until) if until is not None else None, doing, worker


def _worker(process: subprocess.Popen[bytes]) -> str:
    return f"{socket.gethostname()}:{process.pid}"


def _running_test(raw: psycopg.Connection, issue: int) -> tuple[str, str | None, float | None, str | None, str | None]:
    """Wait until a run is inside the slow test command; its state then."""
    running = wait_for_progress(lambda: _state(raw, issue), lambda value: value[3] == "command test", step=0.1)
    assert running, f"the test command never started: {running}"
    return running.value


def _claims(log: Path, issue: int) -> list[str]:
    """The claim queries the process took on ``issue``, from its JSON log."""
    found = []
    for line in log.read_text().splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if entry.get("event") == "claim.taken" and entry.get("issue_id") == issue:
                found.append(str(entry.get("query")))
    return found


def _events(log: Path) -> list[str]:
    return [json.loads(line).get("event") for line in log.read_text().splitlines() if line.startswith("{")]


def test_a_gate_command_three_leases_long_passes_and_no_one_else_claims_the_issue(
    db_url: str, raw: psycopg.Connection, tmp_path: Path
) -> None:
    remote, issue = _slow_issue(raw, tmp_path)
    hosts = [start(tmp_path, name, HQ_DATA_DIR=str(tmp_path / f"host-{name}"), **LEASES) for name in ("a", "b")]
    try:
        running = _running_test(raw, issue)
        # Work that arrives while one agent is deep in a long command: the company keeps beating for it.
        other = run_hq("issue", "create", "Write the release notes", "--assign", "technical-writer")
        assert other.exit_code == 0, other.stderr
        assert running[4] in {_worker(host) for host in hosts}, running  # which host works it, on the row
        board = run_hq("issues", "--json")
        assert '"doing": "command test"' in board.stdout, board.stdout
        # The lease lives exactly as long as the work: renewed past three lifetimes, never by anyone else.
        finished = wait_for_progress(lambda: _state(raw, issue), lambda value: value[0] in ("done", "blocked"))
        assert finished, finished
    finally:
        for host in hosts:
            stop(host)
    assert _state(raw, issue)[0] == "done"
    assert_legal_paths(raw)
    (merge,) = merges(remote)
    assert merge == remote_rev(remote)
    assert one(raw.execute("SELECT review_rounds FROM issues WHERE id = %s", (issue,)).fetchone()) == (1,)
    (seconds,) = one(
        raw.execute(
            "SELECT max(duration_ms) / 1000.0 FROM check_runs"
            " WHERE issue_id = %s AND command = 'test' AND exit_code = 0",
            (issue,),
        ).fetchone()
    )
    assert seconds >= SLOW_SECONDS  # the command really ran three lease lifetimes, and passed
    stages = raw.execute("SELECT stage FROM check_runs WHERE issue_id = %s ORDER BY id", (issue,)).fetchall()
    assert stages == [("work",)], stages  # once: review and merge reuse the engineer's run of the same files
    claims = _claims(tmp_path / "a.log", issue) + _claims(tmp_path / "b.log", issue)
    assert not [name for name in claims if name.startswith("reclaim")], claims  # nobody took it from its run
    # Other agents kept beating meanwhile: the writer's issue moved (a claim, not its creation) before the slow
    # command had ended and recorded its result.
    moved = one(
        raw.execute(
            "SELECT count(*) FROM issue_events WHERE issue_id = %s AND from_status IS NOT NULL"
            " AND created_at < (SELECT min(created_at) FROM check_runs WHERE issue_id = %s)",
            (int(other.stdout), issue),
        ).fetchone()
    )[0]
    assert moved > 0
    for name in ("a", "b"):  # one line per skipped beat would bury the log
        assert "maximum number of running instances" not in (tmp_path / f"{name}.log").read_text()


def test_kill_9_mid_command_is_reclaimed_within_one_lease_and_merged_once(
    db_url: str, raw: psycopg.Connection, tmp_path: Path
) -> None:
    remote, issue = _slow_issue(raw, tmp_path)
    first = start(tmp_path, "a", HQ_DATA_DIR=str(tmp_path / "host-a"), **LEASES)
    second: subprocess.Popen[bytes] | None = None
    try:
        _running_test(raw, issue)
        # B runs beside A from now on: while A renews, B never gets the issue.
        second = start(tmp_path, "b", HQ_DATA_DIR=str(tmp_path / "host-b"), **LEASES)
        first.kill()
        killed_at = time.monotonic()
        first.wait()
        owner, until_left = one(
            raw.execute(
                "SELECT lease_owner::text, extract(epoch FROM lease_until - now()) FROM issues WHERE id = %s", (issue,)
            ).fetchone()
        )
        assert float(until_left) <= TTL  # the dead run's lease ends within one TTL of the kill
        taken = wait_for_progress(
            lambda: _state(raw, issue), lambda value: value[1] != owner and value[4] == _worker(second), step=0.1
        )
        assert taken, taken
        reclaimed_after = time.monotonic() - killed_at
        if os.environ.get("HQ_TEST_MEASURE"):  # the closing note's number: `HQ_TEST_MEASURE=1 pytest -s ...`
            print(f"reclaimed {reclaimed_after:.2f} s after kill -9 (lease {TTL} s)")
        finished = wait_for_progress(lambda: _state(raw, issue), lambda value: value[0] in ("done", "blocked"))
        assert finished, finished
    finally:
        stop(first)
        if second is not None:
            stop(second)
    assert _state(raw, issue)[0] == "done"
    assert_legal_paths(raw)
    assert len(merges(remote)) == 1
    # B took the work over: reclaimed where it lay, or from `todo` where the sweeper put it back.
    assert {"reclaim_expired_work", "claim_todo"} & set(_claims(tmp_path / "b.log", issue))
    assert one(raw.execute("SELECT count(*) FROM issues WHERE merged_sha IS NOT NULL").fetchone()) == (1,)


def test_a_run_whose_lease_was_taken_stops_its_command_and_pushes_nothing(
    db_url: str, raw: psycopg.Connection, tmp_path: Path
) -> None:
    remote, issue = _slow_issue(raw, tmp_path)
    worker = start(tmp_path, "a", HQ_DATA_DIR=str(tmp_path / "host-a"), **LEASES)
    try:
        _running_test(raw, issue)
        comments_before = one(raw.execute("SELECT count(*) FROM comments WHERE issue_id = %s", (issue,)).fetchone())
        # Another worker took the issue (as after a lease that ran out while this process was frozen).
        (thief,) = one(
            raw.execute(
                "UPDATE issues SET lease_owner = gen_random_uuid(), lease_until = now() + interval '1 hour'"
                " WHERE id = %s RETURNING lease_owner::text",
                (issue,),
            ).fetchone()
        )
        stopped = wait_for_progress(lambda: "execute.stopped" in _events(tmp_path / "a.log"), lambda value: value)
        assert stopped, stopped
        assert worker.poll() is None  # the process goes on; only that run stopped
    finally:
        stop(worker)
    status, owner, _until, _doing, _worker_name = _state(raw, issue)
    assert (status, owner) == ("in_progress", thief)  # nothing moved it, and the thief's lease stands
    assert one(raw.execute("SELECT count(*) FROM comments WHERE issue_id = %s", (issue,)).fetchone()) == comments_before
    pushed = subprocess.run(
        ["git", "--git-dir", str(remote), "rev-parse", "--verify", "-q", f"refs/heads/hq/issue-{issue}"],
        capture_output=True,
        env={**os.environ, "GIT_CONFIG_NOSYSTEM": "1"},
    )
    assert pushed.returncode != 0, "the run pushed its branch after losing the issue"
    assert "lease.gone" in _events(tmp_path / "a.log")
    # The killed command left no evidence: a stopped command is no verdict on the code.
    assert one(raw.execute("SELECT count(*) FROM check_runs WHERE issue_id = %s", (issue,)).fetchone()) == (0,)
