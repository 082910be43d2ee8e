"""kill -9 in the middle of a project issue's execute run: another process, with its own data dir and its own
clone, takes the issue over from the branch the first one pushed.

Process A (data dir A) works the issue once: its code fails the gate and comes back, and that commit is on the
remote's ``hq/issue-<id>``. A's second execute run is killed with SIGKILL inside its slow first step. Process B
(data dir B, which has never seen the project) reclaims the issue once A's lease has expired, builds its
worktree from the pushed branch, and the corrected work is reviewed and merged: once.

Between the two processes (A is dead, B not started) a person posts the corrected file, as a fenced block
in a revision comment: that is where the offline engineer finds its rework. The offline model never takes
code from a command's output, so the gate's review comment cannot be the source.
"""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
import pytest

from tests.support.cli import run_hq
from tests.support.processes import SHORT_LEASES, assert_legal_paths, start, stop, wait_for_progress
from tests.support.projects import (
    BAD_MUL,
    ENGINEER,
    GOOD_MUL,
    add_comment,
    add_project,
    fenced,
    is_ancestor,
    make_remote,
    merges,
    needs_bwrap,
    project_issue,
    remote_branches,
    remote_file,
    remote_rev,
    sample_files,
)
from tests.support.rows import one

pytestmark = [pytest.mark.timeout(900), needs_bwrap]  # a backstop against a hang: the waits fail on a stall

# Short leases, but room for a project run (fetch, worktree, sandboxed tests, push) on a loaded machine.
LEASES = SHORT_LEASES | {"HQ_AGENT_LEASE_TTL_SECONDS": "24"}
PROGRESS = (
    "SELECT i.status, (SELECT count(*) FROM issue_events e WHERE e.issue_id = i.id),"
    " (SELECT count(*) FROM comments c WHERE c.issue_id = i.id AND c.kind = 'review')"
    " FROM issues i WHERE i.id = %s"
)


def _progress(raw: psycopg.Connection, issue: int) -> tuple[str, int, int]:
    """The issue's status, its event count (what moves when work is done) and its review comments."""
    status, events, reviews = one(raw.execute(PROGRESS, (issue,)).fetchone())
    return str(status), int(events), int(reviews)


def _story(raw: psycopg.Connection, issue: int) -> str:
    """The issue's comments, for a failure message."""
    rows = raw.execute("SELECT kind, body FROM comments WHERE issue_id = %s ORDER BY id", (issue,)).fetchall()
    return "\n".join(f"[{kind}] {body[:600]}" for kind, body in rows)


def test_kill_9_mid_execute_resumes_on_another_host_from_the_pushed_branch(
    db_url: str, raw: psycopg.Connection, tmp_path: Path
) -> None:
    assert run_hq("agents", "sync").exit_code == 0
    remote = make_remote(tmp_path / "shared", sample_files())
    base = remote_rev(remote)
    project = add_project(raw, remote)
    issue = project_issue(raw, project, "Add mul to calc [offline:slow]", fenced("calc.py", BAD_MUL))
    branch = f"hq/issue-{issue}"
    hosts = {name: tmp_path / f"host-{name}" for name in ("a", "b")}

    first = start(tmp_path, "a", HQ_DATA_DIR=str(hosts["a"]), **LEASES)
    try:
        # The first run's red code is reviewed (no model call) and sent back; the rework is claimed.
        reworking = wait_for_progress(
            lambda: _progress(raw, issue), lambda value: value[0] == "in_progress" and value[2] >= 1, step=0.1
        )
        assert reworking, f"{reworking}\n{_story(raw, issue)}"
        time.sleep(0.5)  # inside the slow first step of the second run
        first.kill()
        first.wait()
    finally:
        stop(first)
    assert _progress(raw, issue)[0] == "in_progress"
    review = one(raw.execute("SELECT body FROM comments WHERE issue_id = %s AND kind = 'review'", (issue,)).fetchone())
    assert "test: failed" in review[0]
    pushed = remote_rev(remote, branch)  # A's first run: the killed one pushed nothing after it
    assert remote_file(remote, "calc.py", branch) == BAD_MUL and remote_rev(remote, f"{branch}^") == base
    assert not hosts["b"].exists()
    add_comment(raw, issue, "mul multiplies:\n\n" + fenced("calc.py", GOOD_MUL))  # a person, while no host runs

    second = start(tmp_path, "b", HQ_DATA_DIR=str(hosts["b"]), **LEASES)
    try:
        # A's lease runs out; B reclaims the issue, works it from the pushed branch, reviews and merges it.
        finished = wait_for_progress(lambda: _progress(raw, issue), lambda value: value[0] in ("done", "blocked"))
        assert finished, f"{finished}\n{_story(raw, issue)}"
    finally:
        stop(second)
    assert one(raw.execute("SELECT status FROM issues WHERE id = %s", (issue,)).fetchone()) == ("done",)
    assert_legal_paths(raw)

    assert branch not in remote_branches(remote)  # deleted once shipped
    head = remote_rev(remote, "main^2")  # the branch as it was merged
    assert remote_rev(remote, f"{head}^") == pushed  # B's commit continues A's pushed one
    assert remote_file(remote, "calc.py") == GOOD_MUL
    assert is_ancestor(remote, pushed, "main")
    (merge,) = merges(remote)
    assert merge == remote_rev(remote) and remote_rev(remote, "main^1") == base and remote_rev(remote, "main^2") == head
    assert one(raw.execute("SELECT merged_sha FROM issues WHERE id = %s", (issue,)).fetchone()) == (merge,)
    # B's own clone did the rework, and removed its worktrees when its runs ended.
    assert (hosts["b"] / "projects" / f"{project}-calc" / "repo.git").is_dir()
    assert not list((hosts["b"] / "projects").glob("*/worktrees/*"))
    workers = raw.execute(
        "SELECT DISTINCT worker FROM heartbeat_runs h JOIN agents a ON a.id = h.agent_id"
        " WHERE a.slug = %s AND %s = ANY(h.issues_touched) AND h.claims > 0",
        (ENGINEER, issue),
    ).fetchall()
    assert len(workers) == 2, workers  # the engineer's claims came from both processes
    runs = one(
        raw.execute(
            "SELECT count(DISTINCT run_id) FROM llm_calls WHERE issue_id = %s AND workflow = 'execute'", (issue,)
        ).fetchone()
    )[0]
    assert runs >= 2  # A's first run and B's (the killed one may not have recorded its call)
