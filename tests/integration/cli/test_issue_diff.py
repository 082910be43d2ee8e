"""`hq issue diff`: an issue's patch read from its commits, and commits that say what changed (issue 26).

Real git, real PostgreSQL, the offline model driving the issue through the company: the engineer writes what
the issue's fenced blocks say, HQ commits it with the agent's summary as the subject, the lead reviews, devops
merges. The diff is read from HQ's clone of the remote, never a worktree, and printed with every control
character made visible.
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import psycopg
import pytest

from scheduler.heartbeat import BeatContext
from tests.support.cli import run_hq
from tests.support.projects import (
    ENGINEER,
    GOOD_MUL,
    add_project,
    beat,
    drive,
    fenced,
    git,
    make_remote,
    needs_bwrap,
    project_issue,
    push_change,
    remote_rev,
)
from tests.support.rows import new_issue, one

pytestmark = [pytest.mark.usefixtures("db_url"), needs_bwrap]

# A file whose name and content would repaint a terminal, set its title, ring its bell if printed as they are.
HOSTILE_NAME = "notes\x1b[31m.txt"
HOSTILE_CONTENT = "\x1b]0;pwned\x07\x1b[2J\u202eevil\x9b31m\n"
RAW_CONTROLS = ("\x1b", "\x07", "\x9b", "\u202e")


def _submitted(runtime: BeatContext, raw: psycopg.Connection, tmp_path: Path, body: str) -> tuple[Path, int]:
    remote = make_remote(tmp_path)
    issue = project_issue(raw, add_project(raw, remote), "Add mul to calc", body)
    assert beat(runtime, raw, ENGINEER, issue) == "in_review"
    return remote, issue


def _trailers(remote: Path, ref: str) -> list[str]:
    return git(remote, "log", "-1", "--format=%(trailers:only,unfold)", ref).strip().splitlines()


def test_the_submitted_patch_against_its_merge_base_and_the_commit_says_what_changed(
    runtime: BeatContext, raw: psycopg.Connection, tmp_path: Path
) -> None:
    remote, issue = _submitted(runtime, raw, tmp_path, "Multiply.\n\n" + fenced("calc.py", GOOD_MUL))
    branch = f"hq/issue-{issue}"
    head = remote_rev(remote, branch)
    base = remote_rev(remote, "main")
    push_change(remote, "main", {"README.md": "moved on\n"})  # the base moves on: not part of the issue's patch

    # The commit on the remote branch: the agent's summary as its subject, HQ's trailers, nothing else.
    (run_id,) = one(
        raw.execute(
            "SELECT run_id FROM artifacts WHERE issue_id = %s AND content_type = 'text/x-git-commit'", (issue,)
        ).fetchone()
    )
    message = git(remote, "log", "-1", "--format=%B", branch)
    assert (
        message == f"wrote calc.py; gate: test exit 0.\n\nHQ-Issue: {issue}\nHQ-Run: {run_id}\nHQ-Agent: {ENGINEER}\n\n"
    )
    assert _trailers(remote, branch) == [f"HQ-Issue: {issue}", f"HQ-Run: {run_id}", f"HQ-Agent: {ENGINEER}"]

    shown = run_hq("issue", "diff", str(issue))
    assert shown.exit_code == 0, shown.stderr
    assert shown.stdout.splitlines()[0] == (
        f"issue #{issue} (in_review): {branch} at {head[:12]} against its merge base {base[:12]} with main"
    )
    assert "diff --git a/calc.py b/calc.py" in shown.stdout and "+def mul(a, b):" in shown.stdout
    assert "README.md" not in shown.stdout
    expected = git(remote, "diff", base, head)
    assert shown.stdout.split("\n", 1)[1] == expected  # exactly git's patch: `hq issue diff N | git apply` works

    stat = run_hq("issue", "diff", str(issue), "--stat")
    assert stat.exit_code == 0 and "calc.py | 4 ++++" in stat.stdout and "diff --git" not in stat.stdout

    data = json.loads(run_hq("issue", "diff", str(issue), "--json").stdout)
    assert (data["head"], data["base"], data["merged"], data["branch"]) == (head, base, False, branch)
    assert data["patch"] == expected and "1 file changed, 4 insertions(+)" in data["stat"]


def test_a_done_issue_shows_its_merge_and_the_merge_carries_the_trailers(
    runtime: BeatContext, raw: psycopg.Connection, tmp_path: Path
) -> None:
    remote, issue = _submitted(runtime, raw, tmp_path, "Multiply.\n\n" + fenced("calc.py", GOOD_MUL))
    base = remote_rev(remote, "main")
    assert drive(runtime, raw, issue, until={"done", "blocked"}) == "done"
    merged = remote_rev(remote, "main")
    assert one(raw.execute("SELECT merged_sha FROM issues WHERE id = %s", (issue,)).fetchone())[0] == merged
    trailers = _trailers(remote, "main")
    assert trailers[0] == f"HQ-Issue: {issue}" and trailers[2] == "HQ-Agent: devops-engineer"
    assert trailers[1].startswith("HQ-Run: ") and uuid.UUID(trailers[1].removeprefix("HQ-Run: "))
    assert git(remote, "log", "-1", "--format=%s", "main").strip() == f"Merge issue #{issue}: Add mul to calc"

    shown = run_hq("issue", "diff", str(issue))
    assert shown.exit_code == 0, shown.stderr
    assert shown.stdout.splitlines()[0] == (
        f"issue #{issue} (done): merge {merged[:12]} into main against its first parent {base[:12]}"
    )
    assert shown.stdout.split("\n", 1)[1] == git(remote, "diff", f"{merged}^1", merged)
    assert json.loads(run_hq("issue", "diff", str(issue), "--json").stdout)["merged"] is True


def test_hostile_file_names_and_content_are_shown_never_obeyed(
    runtime: BeatContext, raw: psycopg.Connection, tmp_path: Path
) -> None:
    body = "Notes.\n\n" + fenced("calc.py", GOOD_MUL) + fenced(HOSTILE_NAME, HOSTILE_CONTENT)
    remote, issue = _submitted(runtime, raw, tmp_path, body)
    branch = f"hq/issue-{issue}"
    assert HOSTILE_NAME in git(remote, "ls-tree", "-r", "--name-only", "-z", branch).split("\0")

    # The summary names the file: its escape never reaches the commit's subject, and adds no line to it.
    subject = git(remote, "log", "-1", "--format=%s", branch)
    assert subject == "wrote calc.py, notes [31m.txt; gate: test exit 0.\n"
    assert _trailers(remote, branch)[0] == f"HQ-Issue: {issue}"

    for args in ((), ("--stat",)):
        shown = run_hq("issue", "diff", str(issue), *args)
        assert shown.exit_code == 0, shown.stderr
        assert not any(control in shown.stdout for control in RAW_CONTROLS), repr(shown.stdout)
        assert "notes\\033[31m.txt" in shown.stdout  # git quotes the name; nothing of it is obeyed
    patch = run_hq("issue", "diff", str(issue)).stdout
    assert "+\\x1b]0;pwned\\x07\\x1b[2J\\u202eevil\\x9b31m\n" in patch


def test_the_clone_as_last_fetched_serves_when_the_remote_is_gone(
    runtime: BeatContext, raw: psycopg.Connection, tmp_path: Path
) -> None:
    remote, issue = _submitted(runtime, raw, tmp_path, "Multiply.\n\n" + fenced("calc.py", GOOD_MUL))
    shutil.move(remote, tmp_path / "elsewhere.git")
    shown = run_hq("issue", "diff", str(issue), "--stat")
    assert shown.exit_code == 0 and "calc.py | 4 ++++" in shown.stdout
    assert shown.stderr.startswith("hq: warning: project calc: the remote could not be reached")


@pytest.mark.parametrize("case", ["unknown", "document", "no commit"])
def test_an_issue_without_a_patch_is_one_line_and_exit_2(raw: psycopg.Connection, tmp_path: Path, case: str) -> None:
    if case == "unknown":
        issue, words = 999_999, "issue 999999 does not exist"
    elif case == "document":
        issue, words = new_issue(raw, "Write the launch post"), "is a document issue (no git project)"
    else:
        project = add_project(raw, make_remote(tmp_path))
        issue, words = new_issue(raw, "Not started", project_id=project), "has no commit recorded yet"
    shown = run_hq("issue", "diff", str(issue))
    assert shown.exit_code == 2 and shown.stdout == ""
    assert len(shown.stderr.splitlines()) == 1 and words in shown.stderr
