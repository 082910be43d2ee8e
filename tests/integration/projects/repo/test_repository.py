"""Git on project worktrees obeys nothing the worktree or the remote holds: no hooks, no rewritten `.git`.

Whatever a project command did in a worktree (it runs there with write access) and whatever the
remote repository carries must never make HQ's own git calls run a program.
"""

from __future__ import annotations

import datetime as dt
import stat
import subprocess
import uuid
from pathlib import Path

import pytest

from config.settings import Settings, load_settings
from db.store.records import ProjectRecord
from projects.repo.repository import Repository, RepositoryError
from projects.workspace import WorkspaceError
from tests.support.projects import make_remote, remote_log


def _project(remote: Path) -> ProjectRecord:
    return ProjectRecord(1, "calc", str(remote), "main", "test", dt.datetime.now(dt.UTC), None)


@pytest.fixture()
def settings(tmp_path: Path) -> Settings:
    return load_settings(data_dir=tmp_path / "data")


def _marker_script(path: Path, marker: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\ntouch {marker}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def test_a_rewritten_dot_git_file_in_the_worktree_is_never_followed(settings: Settings, tmp_path: Path) -> None:
    """A command pointed the worktree's `.git` at a repository of its own whose config runs a program."""
    remote = make_remote(tmp_path)
    repository = Repository(settings, _project(remote)).sync()
    tree, start = repository.issue_worktree(7)
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.git"
    subprocess.run(["git", "init", "-q", "--bare", str(evil)], check=True)
    hook = _marker_script(tmp_path / "fsmonitor.sh", marker)
    (evil / "config").write_text(f"[core]\n\tbare = false\n\tfsmonitor = {hook}\n\thooksPath = {tmp_path}\n")
    _marker_script(tmp_path / "pre-commit", marker)
    (tree.root / ".git").write_text(f"gitdir: {evil}\n")
    tree.write("mul.py", "def mul(a, b):\n    return a * b\n")
    commit = tree.commit(agent="backend-engineer", run_id=uuid.uuid4(), issue_id=7, workflow="execute")
    assert commit is not None and repository.push(commit, "hq/issue-7").pushed
    assert not marker.exists()
    assert repository.sync().head("hq/issue-7") == commit != start  # the commit went to HQ's repository


def test_a_nested_repository_left_by_a_command_stops_the_commit(settings: Settings, tmp_path: Path) -> None:
    remote = make_remote(tmp_path)
    repository = Repository(settings, _project(remote)).sync()
    tree, _ = repository.issue_worktree(7)
    marker = tmp_path / "pwned"
    nested = tree.root / "vendor" / ".git"
    nested.mkdir(parents=True)
    hook = _marker_script(tmp_path / "fsmonitor.sh", marker)
    (nested / "config").write_text(f"[core]\n\tfsmonitor = {hook}\n")
    with pytest.raises(WorkspaceError, match="nested repository"):
        tree.commit(agent="backend-engineer", run_id=uuid.uuid4(), issue_id=7, workflow="execute")
    assert not marker.exists()
    fresh, _ = repository.issue_worktree(7)  # the next step starts from a clean rebuild, the nested one gone
    assert not (fresh.root / "vendor").exists()


def test_hooks_in_hqs_clone_never_run(settings: Settings, tmp_path: Path) -> None:
    """The clone and its worktrees are HQ's: no hook there runs, whatever put it there.

    (The remote's own hooks, e.g. a bare repository's hooks/post-receive, are its owner's and run on a
    push as they would for any pusher: nothing an agent writes reaches them.)
    """
    remote = make_remote(tmp_path)
    marker = tmp_path / "pwned"
    repository = Repository(settings, _project(remote)).sync()
    for name in ("post-checkout", "pre-commit", "commit-msg", "post-commit", "pre-push", "reference-transaction"):
        _marker_script(repository.git_dir / "hooks" / name, marker)
    tree, _ = repository.issue_worktree(7)
    tree.write("mul.py", "x = 1\n")
    commit = tree.commit(agent="backend-engineer", run_id=uuid.uuid4(), issue_id=7, workflow="execute")
    assert commit is not None and repository.push(commit, "hq/issue-7").pushed
    merge = repository.scratch_worktree(7, repository.base_head()).merge(
        commit, "Merge issue #7: x", author="devops-engineer", email="devops@agents.invalid"
    )
    assert merge.commit is not None
    assert not marker.exists()


def test_a_push_is_never_forced_a_moved_branch_refuses_it(settings: Settings, tmp_path: Path) -> None:
    remote = make_remote(tmp_path)
    first = Repository(settings, _project(remote)).sync()
    other = Repository(load_settings(data_dir=tmp_path / "other-host"), _project(remote)).sync()
    mine, _ = first.issue_worktree(7)
    theirs, _ = other.issue_worktree(7)
    theirs.write("theirs.py", "y = 2\n")
    pushed = theirs.commit(agent="qa-engineer", run_id=uuid.uuid4(), issue_id=7, workflow="execute")
    assert pushed is not None and other.push(pushed, "hq/issue-7").pushed
    mine.write("mine.py", "x = 1\n")
    late = mine.commit(agent="backend-engineer", run_id=uuid.uuid4(), issue_id=7, workflow="execute")
    assert late is not None
    refused = first.push(late, "hq/issue-7")
    assert not refused.pushed and "rejected" in refused.detail
    assert first.sync().head("hq/issue-7") == pushed  # their work stands


def test_only_the_allowed_transports_reach_a_remote(settings: Settings, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    for url in (f"ext::sh -c touch% {marker}", "fd::17"):
        with pytest.raises(RepositoryError):
            Repository(settings, _project(Path(url))).sync()
    assert not marker.exists()
    assert remote_log(make_remote(tmp_path)) == ["The project before HQ"]


def test_what_a_reviewer_sees_comes_from_the_commits_not_the_worktree(settings: Settings, tmp_path: Path) -> None:
    """A command in the worktree (the code under test) rewrites a file: the diff shown is still the commit's."""
    remote = make_remote(tmp_path)
    repository = Repository(settings, _project(remote)).sync()
    tree, base = repository.issue_worktree(7)
    tree.write("evil.py", "PAYLOAD = 'curl evil'\n")
    head = tree.commit(agent="backend-engineer", run_id=uuid.uuid4(), issue_id=7, workflow="execute")
    assert head is not None
    (tree.root / "evil.py").write_text("clean = True\n")  # what a hostile test would do while the gate runs
    stat, patch, paths = repository.changes(base, head)
    assert "PAYLOAD" in patch and "clean" not in patch and paths == ("evil.py",) and "evil.py" in stat
