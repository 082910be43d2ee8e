"""Evidence by tree (issue 25): a gate result is for the files it ran on, so no tree is tested twice and the
same red evidence is never paid for twice. The counts here are check_runs rows: one per command actually run."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from scheduler.heartbeat import BeatContext
from tests.support.projects import (
    BAD_MUL,
    DEVOPS,
    ENGINEER,
    GOOD_MUL,
    LEAD,
    add_comment,
    add_project,
    check_rows,
    comments,
    drive,
    fenced,
    make_remote,
    model_calls,
    needs_bwrap,
    project_issue,
    push_change,
    status,
)
from tests.support.rows import one

pytestmark = [pytest.mark.usefixtures("db_url"), needs_bwrap]


def execute_runs(raw: psycopg.Connection, issue: int) -> int:
    """How many execute runs asked a model about the issue."""
    row = raw.execute(
        "SELECT count(DISTINCT run_id) FROM llm_calls WHERE issue_id = %s AND workflow = 'execute'", (issue,)
    ).fetchone()
    return int(one(row)[0])


def test_a_one_round_issue_on_a_moved_base_runs_the_gate_twice(
    runtime: BeatContext, raw: psycopg.Connection, tmp_path: Path
) -> None:
    """The engineer's run is the review's evidence; the base moved before the merge, so the merge holds new files
    and is gated once more: two runs of the suite from execute to done, never three."""
    remote = make_remote(tmp_path)
    project = add_project(raw, remote)
    issue = project_issue(raw, project, "Add mul to calc", fenced("calc.py", GOOD_MUL))
    assert drive(runtime, raw, issue, until={"approved"}) == "approved"
    (work,) = [check_id for (check_id,) in raw.execute("SELECT id FROM check_runs WHERE issue_id = %s", (issue,))]
    assert "test: passed in" in comments(raw, issue, "review")[0]
    assert f"(reused from check {work})" in comments(raw, issue, "review")[0]  # what the review stood on
    push_change(remote, "main", {"NOTES.md": "Someone else's change.\n"})
    assert drive(runtime, raw, issue, until={"done", "blocked"}, agents=(DEVOPS,)) == "done"
    assert [(stage, command) for stage, command, _, _ in check_rows(raw, issue)] == [
        ("work", "test"),
        ("merge", "test"),
    ]


def test_an_unchanged_rework_after_a_red_gate_blocks_no_progress(
    runtime: BeatContext, raw: psycopg.Connection, tmp_path: Path
) -> None:
    """The gate failed; the rework came back with the very same files (the revision asked for the same code
    again): the gate is not run on them again and the engineer is not asked a third time on that evidence: the
    issue blocks (no_progress), escalated."""
    remote = make_remote(tmp_path)
    project = add_project(raw, remote)
    issue = project_issue(raw, project, "Add mul to calc", fenced("calc.py", BAD_MUL))
    assert drive(runtime, raw, issue, until={"todo"}, agents=(ENGINEER, LEAD)) == "todo"
    add_comment(raw, issue, "Use exactly this:\n\n" + fenced("calc.py", BAD_MUL))
    assert drive(runtime, raw, issue, until={"blocked", "done"}) == "blocked"
    reason = one(raw.execute("SELECT blocked_reason FROM issues WHERE id = %s", (issue,)).fetchone())[0]
    assert reason == "no_progress" and status(raw, issue) == "blocked"
    assert [row[0] for row in check_rows(raw, issue) if row[0] != "work"] == ["review"]  # gated red once
    assert execute_runs(raw, issue) == 2  # the first try, and one rework on the red evidence
    assert model_calls(raw, issue, "review_gate") == 0
    note = comments(raw, issue, "system")[0]
    assert "not gated again" in note and "test: failed" in note
