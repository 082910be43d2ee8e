"""Project issues end to end with the offline model: real git, real bubblewrap, real beats.

Each test walks an issue of a git project through execute (the engineer), review_gate (its lead) and
deploy_verify (devops) one beat at a time, and changes the remote directly with git where a person
or another host would (a commit on main after approval, a push to the issue's branch).
"""

from __future__ import annotations

import threading
from pathlib import Path

import psycopg
import pytest

from config.settings import get_settings, load_settings
from db.engine import read_only
from projects.repo import shipping
from projects.repo.evidence import passed_at
from projects.repo.repository import PushResult, Repository
from scheduler.company import Company
from scheduler.heartbeat import BeatContext, run_beat
from tests.support.cli import run_hq
from tests.support.projects import (
    BAD_MUL,
    CALC,
    DEVOPS,
    ENGINEER,
    GOOD_MUL,
    LEAD,
    add_comment,
    add_project,
    beat,
    changed_paths,
    check_rows,
    comments,
    drive,
    fenced,
    fenced_all,
    git,
    make_remote,
    merges,
    model_calls,
    module_files,
    needs_bwrap,
    passing_files,
    project_issue,
    push_change,
    remote_file,
    remote_log,
    remote_paths,
    remote_rev,
    remote_tree,
    sample_files,
    status,
)
from tests.support.rows import one

pytestmark = [pytest.mark.usefixtures("db_url"), needs_bwrap]

MUL = module_files("mul", "def mul(a, b):\n    return a * b\n", "mul.mul(2, 3) == 6")
BAD_MODULE_MUL = module_files("mul", "def mul(a, b):\n    return a + b\n", "mul.mul(2, 3) == 6")
SUB = module_files("sub", "def sub(a, b):\n    return a - b\n", "sub.sub(5, 3) == 2")
VERIFY_YAML = (
    "commands:\n  test: [python3, -m, unittest, -q]\n"
    "  verify: [python3, -c, \"import sys; print('smoke: checkout is down'); sys.exit(3)\"]\n"
    "gate: [test]\n"
)


@pytest.fixture()
def runtime(db_url: str) -> BeatContext:
    assert run_hq("agents", "sync").exit_code == 0
    return Company(load_settings(), threads=1).runtime


def approved(runtime: BeatContext, raw: psycopg.Connection, issue: int) -> None:
    """Execute and review: the issue is approved with passing evidence at its branch head."""
    assert beat(runtime, raw, ENGINEER, issue) == "in_review"
    assert beat(runtime, raw, LEAD, issue) == "approved"


def test_code_that_passes_the_gate_is_merged_and_verified(
    runtime: BeatContext, raw: psycopg.Connection, tmp_path: Path
) -> None:
    remote = make_remote(tmp_path)
    project = add_project(raw, remote)
    issue = project_issue(raw, project, "Add mul to calc", "Multiply.\n\n" + fenced("calc.py", GOOD_MUL))
    assert drive(runtime, raw, issue, until={"done", "blocked"}) == "done"
    assert remote_log(remote)[0] == f"Merge issue #{issue}: Add mul to calc"
    assert "def mul" in remote_file(remote, "calc.py")
    merged = one(raw.execute("SELECT merged_sha FROM issues WHERE id = %s", (issue,)).fetchone())[0]
    assert merged and merged == remote_rev(remote)
    checks = raw.execute(
        "SELECT stage, command, exit_code, sandbox, tree_sha FROM check_runs WHERE issue_id = %s ORDER BY id", (issue,)
    ).fetchall()
    # Each tree is tested once (issue 25): the engineer's own run on the committed files is the evidence the
    # review reuses, and the merge of an unmoved base holds the same files, so the suite ran exactly once.
    assert checks == [("work", "test", 0, "bwrap", remote_tree(remote, "main^2"))]  # the branch merged (then deleted)


def test_code_that_fails_the_tests_comes_back_with_the_output_and_no_model_call(
    runtime: BeatContext, raw: psycopg.Connection, tmp_path: Path
) -> None:
    remote = make_remote(tmp_path)
    project = add_project(raw, remote)
    issue = project_issue(raw, project, "Add mul to calc", fenced("calc.py", BAD_MUL))
    drive(runtime, raw, issue, until={"todo"}, agents=(ENGINEER, LEAD))
    review = comments(raw, issue, "review")[0]
    assert "test: failed" in review and "FAILED" in review
    assert model_calls(raw, issue, "review_gate") == 0


# --- two issues of one project --------------------------------------------------------------------------------


def test_two_issues_of_one_project_never_touch_each_others_files(
    runtime: BeatContext, raw: psycopg.Connection, tmp_path: Path
) -> None:
    """Interleaved on one engineer: A fails and comes back while B ships; A's rework changes only A's files.

    While both are in flight their worktrees hold only their own change; the rework after B shipped starts
    by merging the base (B's files arrive that way, as the code A will be merged into), and still changes
    nothing but A's files against it.
    """
    remote = make_remote(tmp_path, passing_files())
    base = remote_rev(remote)
    project = add_project(raw, remote, keep_branches=True)  # the branches are read after they shipped
    first = project_issue(raw, project, "Add mul", fenced_all(BAD_MODULE_MUL))
    second = project_issue(raw, project, "Add sub", fenced_all(SUB))
    assert beat(runtime, raw, ENGINEER, first) == "in_review"
    assert beat(runtime, raw, ENGINEER, second) == "in_review"
    # Each branch holds only its own change; no worktree outlives its run.
    assert changed_paths(remote, base, f"hq/issue-{first}") == {"mul.py", "test_mul.py"}
    assert changed_paths(remote, base, f"hq/issue-{second}") == {"sub.py", "test_sub.py"}
    assert not list((get_settings().data_path / "projects").glob(f"{project}-*/worktrees/*"))
    run_beat(LEAD, runtime)  # reviews both: the first is red, the second green
    assert (status(raw, first), status(raw, second)) == ("todo", "approved")
    assert beat(runtime, raw, DEVOPS, second) == "done"
    add_comment(raw, first, "Fixed:\n\n" + fenced("mul.py", MUL["mul.py"]))
    assert beat(runtime, raw, ENGINEER, first) == "in_review"  # reworked on its own branch, after sub shipped
    assert changed_paths(remote, "main", f"hq/issue-{first}") == {"mul.py", "test_mul.py"}
    assert beat(runtime, raw, LEAD, first) == "approved"
    assert beat(runtime, raw, DEVOPS, first) == "done"

    assert changed_paths(remote, base, f"hq/issue-{second}") == {"sub.py", "test_sub.py"}
    # base, the red attempt, the base merged in (with sub), the rework
    assert len(remote_log(remote, f"hq/issue-{first}")) == 4
    assert {"mul.py", "test_mul.py", "sub.py", "test_sub.py", "calc.py"} <= remote_paths(remote)
    assert remote_file(remote, "mul.py") == MUL["mul.py"]
    assert remote_log(remote)[:2] == [f"Merge issue #{first}: Add mul", f"Merge issue #{second}: Add sub"]
    shipped = git(remote, "rev-list", "--first-parent", "--merges", "main").split()
    assert len(shipped) == 2  # one merge per issue on main (A's branch also holds its merge of main)


def test_two_engineers_at_once_work_in_their_own_worktrees(
    runtime: BeatContext, raw: psycopg.Connection, tmp_path: Path
) -> None:
    """Two engineers' beats at the same time, in one process, on one clone: each branch holds only its change."""
    remote = make_remote(tmp_path, passing_files())
    base = remote_rev(remote)
    project = add_project(raw, remote)
    # Slow first steps keep both runs open at once, from fetch and worktree to commit and push.
    first = project_issue(raw, project, "Add mul [offline:slow]", fenced_all(MUL), assignee="backend-engineer")
    second = project_issue(raw, project, "Add sub [offline:slow]", fenced_all(SUB), assignee="data-engineer")
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def work(slug: str) -> None:
        try:
            start.wait()
            run_beat(slug, runtime)
        except BaseException as error:  # reported by the main thread
            errors.append(error)

    threads = [threading.Thread(target=work, args=(slug,)) for slug in ("backend-engineer", "data-engineer")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors and not any(thread.is_alive() for thread in threads)
    spans = raw.execute(
        "SELECT h.started_at, h.finished_at FROM heartbeat_runs h JOIN agents a ON a.id = h.agent_id "
        "WHERE a.slug IN ('backend-engineer', 'data-engineer') ORDER BY h.started_at"
    ).fetchall()
    assert len(spans) == 2 and spans[1][0] < spans[0][1], "the two beats did not overlap: nothing was concurrent"
    told = {issue: comments(raw, issue, "failure") + comments(raw, issue, "system") for issue in (first, second)}
    assert (status(raw, first), status(raw, second)) == ("in_review", "in_review"), told
    assert not list((get_settings().data_path / "projects").glob(f"{project}-*/worktrees/*"))
    assert changed_paths(remote, base, f"hq/issue-{first}") == {"mul.py", "test_mul.py"}
    assert changed_paths(remote, base, f"hq/issue-{second}") == {"sub.py", "test_sub.py"}
    run_beat(LEAD, runtime)
    assert (status(raw, first), status(raw, second)) == ("approved", "approved")
    run_beat(DEVOPS, runtime)
    assert (status(raw, first), status(raw, second)) == ("done", "done")
    assert {"mul.py", "test_mul.py", "sub.py", "test_sub.py"} <= remote_paths(remote)
    assert len(merges(remote)) == 2


# --- evidence -------------------------------------------------------------------------------------------------


def test_review_and_deploy_ignore_evidence_for_other_commits(
    runtime: BeatContext, raw: psycopg.Connection, tmp_path: Path
) -> None:
    """Green evidence for an older head (and a planted green row for the base) vouches for nothing newer."""
    remote = make_remote(tmp_path)
    base = remote_rev(remote)
    project = add_project(raw, remote)
    issue = project_issue(raw, project, "Add mul", fenced("calc.py", GOOD_MUL))
    approved(runtime, raw, issue)
    reviewed = remote_tree(remote, f"hq/issue-{issue}")  # passing evidence for exactly the reviewed files
    assert raw.execute("SELECT exit_code FROM check_runs WHERE tree_sha = %s", (reviewed,)).fetchall() == [(0,)]
    reviews = model_calls(raw, issue, "review_gate")
    assert reviews == 1
    # After approval the branch moves (someone pushed to it): a failing test the review never saw.
    failing = "import unittest\n\n\nclass Extra(unittest.TestCase):\n    def test_x(self):\n        self.fail('nope')\n"
    moved = push_change(remote, f"hq/issue-{issue}", {"test_extra.py": failing}, "Sneak in a change")
    main_before = remote_rev(remote)
    assert beat(runtime, raw, DEVOPS, issue) == "todo"
    assert remote_rev(remote) == main_before and merges(remote) == []
    assert "no passing gate evidence" in comments(raw, issue, "failure")[0]
    assert not [row for row in check_rows(raw, issue) if row[0] == "merge"]
    # Planted green evidence for the base and the reviewed head: the review still runs the gate at the head.
    raw.execute(
        "INSERT INTO check_runs (issue_id, project_id, commit_sha, stage, command, exit_code, duration_ms, "
        "output_tail, sandbox) VALUES (%s, %s, %s, 'review', 'test', 0, 1, 'OK', 'bwrap')",
        (issue, project, base),
    )
    assert beat(runtime, raw, ENGINEER, issue) == "in_review"  # nothing new to write: it resubmits the head
    assert remote_rev(remote, f"hq/issue-{issue}") == moved
    assert beat(runtime, raw, LEAD, issue) == "todo"
    assert ("review", "test", moved, 1) in check_rows(raw, issue)
    assert "test: failed" in comments(raw, issue, "review")[0] and "nope" in comments(raw, issue, "review")[0]
    assert model_calls(raw, issue, "review_gate") == reviews  # the red gate decided: no model was asked


@pytest.mark.usefixtures("runtime")
def test_passing_evidence_counts_only_for_exactly_that_commit(raw: psycopg.Connection, tmp_path: Path) -> None:
    remote = make_remote(tmp_path)
    project = add_project(raw, remote)
    issue = project_issue(raw, project, "Add mul", "")
    old, head, other = ("a" * 40, "b" * 40, "c" * 40)

    def record(commit: str, command: str, code: int, stage: str = "review") -> None:
        raw.execute(
            "INSERT INTO check_runs (issue_id, project_id, commit_sha, stage, command, exit_code, duration_ms, "
            "output_tail, sandbox) VALUES (%s, %s, %s, %s, %s, %s, 1, '', 'bwrap')",
            (issue, project, commit, stage, command, code),
        )

    def passes(commit: str, gate: tuple[str, ...] = ("test",)) -> bool:
        with read_only() as session:
            return passed_at(session, issue, commit, gate)

    record(old, "test", 0)
    record(head, "test", 1)
    assert passes(old) and not passes(head)  # the older commit's green does not carry over
    record(head, "test", 0, stage="merge")
    assert not passes(head)  # a merge check is not review evidence
    record(head, "test", 0)
    assert passes(head)  # the latest review result for the head counts
    assert not passes(head, ("test", "lint"))  # every gate command must have passed there
    record(head, "test", 1)
    assert not passes(head)  # and a later red result wins
    assert not passes(other)


# --- deploy by merge ------------------------------------------------------------------------------------------


def test_a_merge_conflict_goes_back_to_the_author_with_the_paths(
    runtime: BeatContext, raw: psycopg.Connection, tmp_path: Path
) -> None:
    remote = make_remote(tmp_path)
    project = add_project(raw, remote)
    issue = project_issue(raw, project, "Add mul", fenced("calc.py", GOOD_MUL))
    approved(runtime, raw, issue)
    upstream = push_change(remote, "main", {"calc.py": CALC + "\n\ndef sub(a, b):\n    return a - b\n"}, "Add sub")
    assert beat(runtime, raw, DEVOPS, issue) == "todo"
    failure = comments(raw, issue, "failure")[0]
    assert "Merge conflict" in failure and "- calc.py" in failure
    assert remote_rev(remote) == upstream and merges(remote) == []
    assert one(raw.execute("SELECT merged_sha FROM issues WHERE id = %s", (issue,)).fetchone()) == (None,)
    assert not [row for row in check_rows(raw, issue) if row[0] not in ("work", "review")]


def test_a_conflicted_issue_can_be_reworked_and_shipped(
    runtime: BeatContext, raw: psycopg.Connection, tmp_path: Path
) -> None:
    remote = make_remote(tmp_path)
    project = add_project(raw, remote)
    issue = project_issue(raw, project, "Add mul", fenced("calc.py", GOOD_MUL))
    approved(runtime, raw, issue)
    with_sub = CALC + "\n\ndef sub(a, b):\n    return a - b\n"
    push_change(remote, "main", {"calc.py": with_sub}, "Add sub")
    assert beat(runtime, raw, DEVOPS, issue) == "todo"
    # The author resolves it: both functions, as the base now has sub.
    add_comment(raw, issue, "Keep sub:\n\n" + fenced("calc.py", with_sub + "\n\ndef mul(a, b):\n    return a * b\n"))
    approved(runtime, raw, issue)
    assert beat(runtime, raw, DEVOPS, issue) == "done", comments(raw, issue, "failure")[0]


def test_a_deploy_that_crashed_after_its_push_merges_once_when_retried(
    runtime: BeatContext, raw: psycopg.Connection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    remote = make_remote(tmp_path)
    project = add_project(raw, remote)
    issue = project_issue(raw, project, "Add mul", fenced("calc.py", GOOD_MUL))
    approved(runtime, raw, issue)

    def crash(*args: object, **kwargs: object) -> shipping.Shipped:
        raise RuntimeError("the host died after pushing the merge")

    monkeypatch.setattr(shipping, "_verify", crash)
    assert beat(runtime, raw, DEVOPS, issue) == "deploying"
    (merge,) = merges(remote)  # pushed before the crash
    monkeypatch.undo()
    with raw.transaction():  # the crashed run's lease runs out
        raw.execute("SET LOCAL session_replication_role = replica")
        raw.execute("UPDATE issues SET lease_until = now() - interval '1 second' WHERE id = %s", (issue,))
    assert beat(runtime, raw, DEVOPS, issue) == "done"
    assert merges(remote) == [merge] and remote_rev(remote) == merge
    assert one(raw.execute("SELECT merged_sha FROM issues WHERE id = %s", (issue,)).fetchone()) == (merge,)
    # merged once; its gate reused the review's evidence (the merge holds the reviewed files), then verified once
    assert not [row for row in check_rows(raw, issue) if row[0] == "merge"]
    assert merges(remote) == [merge]


def test_a_failed_verify_pushes_a_revert_and_sends_the_issue_back(
    runtime: BeatContext, raw: psycopg.Connection, tmp_path: Path
) -> None:
    files = sample_files() | {".hq/project.yaml": VERIFY_YAML}
    remote = make_remote(tmp_path, files)
    before = remote_rev(remote)
    project = add_project(raw, remote)
    issue = project_issue(raw, project, "Add mul", fenced("calc.py", GOOD_MUL))
    approved(runtime, raw, issue)
    assert beat(runtime, raw, DEVOPS, issue) == "todo"
    log = remote_log(remote)
    assert log[0] == f"Revert issue #{issue}: verify failed" and log[1] == f"Merge issue #{issue}: Add mul"
    assert remote_tree(remote) == remote_tree(remote, before)  # main is as it was before the merge
    merged = remote_rev(remote, "main^")
    failure = comments(raw, issue, "failure")[0]
    assert "verify failed" in failure and "smoke: checkout is down" in failure and "Reverted by" in failure
    assert ("verify", "verify", merged, 3) in check_rows(raw, issue)
    assert one(raw.execute("SELECT merged_sha FROM issues WHERE id = %s", (issue,)).fetchone()) == (None,)


def test_base_moved_after_approval_is_merged_onto_the_new_base(
    runtime: BeatContext, raw: psycopg.Connection, tmp_path: Path
) -> None:
    remote = make_remote(tmp_path)
    project = add_project(raw, remote)
    issue = project_issue(raw, project, "Add mul", fenced("calc.py", GOOD_MUL))
    approved(runtime, raw, issue)
    upstream = push_change(remote, "main", {"README.md": "# calc\n"}, "Add a readme")
    assert beat(runtime, raw, DEVOPS, issue) == "done"
    reviewed = one(raw.execute("SELECT reviewed_sha FROM issues WHERE id = %s", (issue,)).fetchone())[0]
    assert remote_rev(remote, "main^1") == upstream and remote_rev(remote, "main^2") == reviewed
    assert remote_file(remote, "README.md") == "# calc\n" and remote_file(remote, "calc.py") == GOOD_MUL
    assert one(raw.execute("SELECT merged_sha FROM issues WHERE id = %s", (issue,)).fetchone()) == (remote_rev(remote),)


def _moving_base(monkeypatch: pytest.MonkeyPatch, remote: Path, times: int) -> list[str]:
    """Make the base move just before each of HQ's next ``times`` pushes of it: after the merge, before the push."""
    pushed: list[str] = []
    push = Repository.push

    def racing(self: Repository, commit: str, branch: str) -> PushResult:
        if branch == self.project.base_branch and len(pushed) < times:
            pushed.append(push_change(remote, branch, {f"upstream-{len(pushed)}.txt": "x\n"}, "Someone else's"))
        return push(self, commit, branch)

    monkeypatch.setattr(Repository, "push", racing)
    return pushed


def test_base_moved_between_merge_and_push_is_merged_again_once(
    runtime: BeatContext, raw: psycopg.Connection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    remote = make_remote(tmp_path)
    project = add_project(raw, remote)
    issue = project_issue(raw, project, "Add mul", fenced("calc.py", GOOD_MUL))
    approved(runtime, raw, issue)
    upstream = _moving_base(monkeypatch, remote, times=1)
    assert beat(runtime, raw, DEVOPS, issue) == "done"
    assert remote_rev(remote, "main^1") == upstream[0]
    assert {"upstream-0.txt", "calc.py"} <= remote_paths(remote) and remote_file(remote, "calc.py") == GOOD_MUL
    assert len(merges(remote)) == 1
    # The first merge held the reviewed files (its gate reused the review's evidence); the second, after the
    # base moved, holds new files: the gate ran on it, once.
    gate_on_merges = [row for row in check_rows(raw, issue) if row[0] == "merge"]
    assert len(gate_on_merges) == 1 and gate_on_merges[0][2] == remote_rev(remote)


def test_base_that_keeps_moving_sends_the_issue_back(
    runtime: BeatContext, raw: psycopg.Connection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    remote = make_remote(tmp_path)
    project = add_project(raw, remote)
    issue = project_issue(raw, project, "Add mul", fenced("calc.py", GOOD_MUL))
    approved(runtime, raw, issue)
    upstream = _moving_base(monkeypatch, remote, times=shipping.MERGE_TRIES)
    assert beat(runtime, raw, DEVOPS, issue) == "todo"
    assert remote_rev(remote) == upstream[-1] and merges(remote) == []
    assert "kept moving" in comments(raw, issue, "failure")[0]


# --- the project file -----------------------------------------------------------------------------------------

BROKEN_FILES = {
    "missing": (None, ".hq/project.yaml is missing on the base branch"),
    "undefined gate command": (
        "commands:\n  test: [python3, -m, unittest]\ngate: [test, lint]\n",
        "gate names commands that are not defined: lint",
    ),
    "not yaml": ("commands: [test\n", ".hq/project.yaml is not valid YAML"),
    "argv as a string": ("commands:\n  test: python3 -m unittest\ngate: [test]\n", "commands.test"),
}


@pytest.mark.parametrize("case", sorted(BROKEN_FILES))
def test_a_missing_or_invalid_project_file_blocks_without_a_model_call(
    case: str, runtime: BeatContext, raw: psycopg.Connection, tmp_path: Path
) -> None:
    content, message = BROKEN_FILES[case]
    files = {path: text for path, text in sample_files().items() if path != ".hq/project.yaml"}
    remote = make_remote(tmp_path, files if content is None else files | {".hq/project.yaml": content})
    project = add_project(raw, remote)
    issue = project_issue(raw, project, "Add mul", fenced("calc.py", GOOD_MUL))
    assert beat(runtime, raw, ENGINEER, issue) == "blocked"
    assert one(raw.execute("SELECT blocked_reason FROM issues WHERE id = %s", (issue,)).fetchone()) == (
        "project_config",
    )
    note = comments(raw, issue, "system")[0]
    assert note.startswith("Blocked (project_config): ") and message in note, note
    assert model_calls(raw, issue) == 0
    assert f"hq/issue-{issue}" not in {ref.rsplit(" ", 1)[-1] for ref in _remote_branches(remote)}


def test_a_project_file_broken_after_submission_blocks_the_review(
    runtime: BeatContext, raw: psycopg.Connection, tmp_path: Path
) -> None:
    remote = make_remote(tmp_path)
    project = add_project(raw, remote)
    issue = project_issue(raw, project, "Add mul", fenced("calc.py", GOOD_MUL))
    assert beat(runtime, raw, ENGINEER, issue) == "in_review"
    push_change(remote, "main", {".hq/project.yaml": "gate: [test]\n"}, "Lose the commands")
    assert beat(runtime, raw, LEAD, issue) == "blocked"
    assert one(raw.execute("SELECT blocked_reason FROM issues WHERE id = %s", (issue,)).fetchone()) == (
        "project_config",
    )
    assert "commands" in comments(raw, issue, "system")[0]
    assert model_calls(raw, issue, "review_gate") == 0


def _remote_branches(remote: Path) -> list[str]:
    return git(remote, "for-each-ref", "--format=%(refname:short)", "refs/heads").split()
