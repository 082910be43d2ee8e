"""Worktrees are removed whatever a sandboxed command left in them, quarantine keeps nothing git can open, and a
killed run's tree does not outlive it (issue 23, item 2 as the hostile review found it).

The hostile code is committed to a real project's repository and run as the agent would run it: by the
``run_command`` tool, through dispatch(), in the issue's worktree built by the product, inside the real
bubblewrap sandbox. Then HQ's own code ends the run (work.release(), Repository.sync()) and what each test
checks is the host afterwards.
"""

from __future__ import annotations

import os
import pty
import signal
import subprocess
import sys
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from config.settings import get_settings
from db import store
from db.engine import read_only
from projects.repo import repository as repository_module
from projects.repo.repository import Repository
from tests.support import ROOT
from tests.support.cli import run_hq
from tests.support.projects import (
    ToolRun,
    add_project,
    make_remote,
    needs_bwrap,
    project_issue,
    project_run,
    sample_files,
)

pytestmark = needs_bwrap

DEPTH = 1_500  # Python's recursion limit is 1,000: a recursive walk of this chain raises RecursionError

HOSTILE = r"""
import hashlib, os, sys, zlib

def deep():
    outside = sys.argv[2]
    os.symlink(outside, "escape")  # a host path: nothing may follow it out of the tree
    top = os.open(".", os.O_RDONLY)
    for level in range(int(sys.argv[3])):
        os.mkdir("d")
        os.chdir("d")
        if level % 500 == 0:
            with open("file.txt", "w") as handle:
                handle.write("x" * 100)
            os.symlink(outside, "escape")
    with open("bottom.txt", "w") as handle:
        handle.write("the bottom\n")
    os.chdir(top)
    os.chmod("d/d/d", 0)  # unreadable to anyone but root, halfway down
    print("deep", sys.argv[3])

def obj(kind, body):
    data = f"{kind} {len(body)}\0".encode() + body
    sha = hashlib.sha1(data).hexdigest()
    os.makedirs(f"B/objects/{sha[:2]}", exist_ok=True)
    with open(f"B/objects/{sha[:2]}/{sha[2:]}", "wb") as handle:
        handle.write(zlib.compress(data))
    return sha

def commondir():
    # A git dir with no objects or refs of its own beside HEAD: `commondir` names B, which has them, and
    # B's config runs a program as git's pager (and fsmonitor). The worktree's .git is redirected too,
    # so HQ quarantines the tree.
    marker = sys.argv[2]
    tree = obj("tree", b"")
    author = "a <a@example.invalid> 0 +0000"
    commit = obj("commit", f"tree {tree}\nauthor {author}\ncommitter {author}\n\nplanted\n".encode())
    os.makedirs("B/refs/heads", exist_ok=True)
    with open("B/refs/heads/main", "w") as handle:
        handle.write(commit + "\n")
    with open("B/config", "w") as handle:
        handle.write(f"[core]\n\trepositoryformatversion = 0\n\tpager = touch {marker}; cat\n")
        handle.write(f"\tfsmonitor = touch {marker}\n")
    with open("HEAD", "w") as handle:
        handle.write("ref: refs/heads/main\n")
    with open("commondir", "w") as handle:
        handle.write("B\n")
    os.makedirs("src", exist_ok=True)
    with open(".git", "w") as handle:
        handle.write("gitdir: B\n")
    print("planted")

def big():
    with open("big.bin", "wb") as handle:
        handle.write(os.urandom(int(sys.argv[2])))
    with open(".git", "w") as handle:
        handle.write("gitdir: elsewhere\n")
    print("big")

globals()[sys.argv[1]]()
"""


def project_yaml(outside: Path, marker: Path) -> str:
    return (
        "commands:\n"
        "  test: [python3, -m, unittest, -q]\n"
        f"  deep: [python3, hostile.py, deep, {outside}, '{DEPTH}']\n"
        f"  commondir: [python3, hostile.py, commondir, {marker}]\n"
        "  big: [python3, hostile.py, big, '3000000']\n"
        "gate: [test]\n"
    )


def setup_project(raw: psycopg.Connection, tmp_path: Path) -> tuple[int, int, Path, Path]:
    """A project whose repository carries the hostile commands; (project id, issue id, outside dir, marker)."""
    assert run_hq("agents", "sync").exit_code == 0
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_text("keep me\n")
    marker = tmp_path / "trap-fired"
    files = sample_files() | {".hq/project.yaml": project_yaml(outside, marker), "hostile.py": HOSTILE}
    project_id = add_project(raw, make_remote(tmp_path, files))
    return project_id, project_issue(raw, project_id, "Hostile", ""), outside, marker


def start_run(project_id: int, issue: int, **overrides: Any) -> ToolRun:
    return project_run(project_id, issue, **overrides)


@pytest.fixture(autouse=True)
def no_deep_tree_left(tmp_path: Path) -> Iterator[None]:
    """Whatever a failing test left is removed: pytest's own clean-up of old tmp dirs (shared by every test run
    on this host) recurses, and a deep chain left there would break it for everyone."""
    yield
    subprocess.run(["rm", "-rf", "--one-file-system", "--", str(tmp_path / "var")], check=False, timeout=300)


def left_under(data: Path) -> list[Path]:
    """Every worktree (and git's administrative entry for one) left under the data dir."""
    return [*data.glob("projects/*/worktrees/*"), *data.glob("projects/*/repo.git/worktrees/*")]


def git_on_a_tty(where: Path) -> None:
    """What a person's shell would do there: git log on a terminal (its pager runs) and git status."""
    primary, secondary = pty.openpty()
    try:
        for args in (["log", "-1"], ["status"]):
            subprocess.run(["git", *args], cwd=where, stdin=secondary, stdout=secondary, stderr=secondary, timeout=60)
    finally:
        os.close(secondary)
        os.close(primary)


# --- 1. a tree deeper than Python's recursion limit ----------------------------------------------------------


def test_a_tree_deeper_than_the_recursion_limit_is_removed_when_the_run_ends(
    db_url: str, raw: psycopg.Connection, tmp_path: Path
) -> None:
    project_id, issue, outside, _ = setup_project(raw, tmp_path)
    run = start_run(project_id, issue)
    tree = run.work.worktree.root
    run.command("deep")  # the walk after the command may fail on it (projects/sandbox.py): the tree is there
    assert (tree / "d" / "d").is_dir() and (tree / "escape").is_symlink()
    run.work.release()
    assert not tree.exists() and not tree.is_symlink()
    assert left_under(get_settings().data_path) == []
    assert (outside / "precious.txt").read_text() == "keep me\n"  # no symlink was followed out of the tree


def test_a_deep_tree_left_on_the_branch_is_replaced_by_the_next_run(
    db_url: str, raw: psycopg.Connection, tmp_path: Path
) -> None:
    """The deep chain is committed and pushed; the next run of the issue on this host builds its tree from
    the branch, and ending it removes it too."""
    project_id, issue, outside, _ = setup_project(raw, tmp_path)
    run = start_run(project_id, issue)
    run.command("deep")
    (run.work.worktree.root / "d" / "d" / "d").chmod(0o755)  # git add needs to read it (HQ runs as root here)
    head = run.work.worktree.commit(agent="backend-engineer", run_id=uuid.uuid4(), issue_id=issue, workflow="execute")
    assert head is not None and run.work.repository.push(head, run.work.branch).pushed
    run.work.release()
    again = start_run(project_id, issue)
    assert (again.work.worktree.root / "d" / "d" / "d").is_dir()
    again.work.release()
    assert left_under(get_settings().data_path) == []
    assert (outside / "precious.txt").read_text() == "keep me\n"


# --- 2. quarantine keeps nothing git can take for a repository ---------------------------------------------


def test_a_quarantined_tree_is_an_archive_nothing_git_can_open(
    db_url: str, raw: psycopg.Connection, tmp_path: Path
) -> None:
    """The command plants a git dir whose HEAD sits beside a ``commondir`` naming another directory (no
    ``objects``/``refs`` beside HEAD) and redirects ``.git``: the tree is quarantined; git run anywhere in
    the quarantine, on a terminal, runs nothing; what was planted is kept in the archive for a person."""
    project_id, issue, _, marker = setup_project(raw, tmp_path)
    run = start_run(project_id, issue)
    tree = run.work.worktree.root
    result = run.command("commondir")
    assert result is not None and "planted" in result["output_tail"], result
    run.work.release()
    data = get_settings().data_path
    quarantine = data / "quarantine"
    for directory, names, _files in os.walk(quarantine):
        for name in [".", *names]:
            git_on_a_tty(Path(directory) / name)
    assert not marker.exists(), "the planted configuration ran a program"
    assert not tree.exists() and left_under(data) == []
    kept = list(quarantine.iterdir())
    assert len(kept) == 1 and kept[0].is_file() and not kept[0].is_symlink(), kept
    assert kept[0].name.endswith(".tar.gz") and kept[0].stat().st_mode & 0o077 == 0
    with tarfile.open(kept[0]) as archive:
        members = {member.name: member for member in archive.getmembers()}
        assert {".git", "HEAD", "commondir", "B/config", "src"} <= set(members)
        config = archive.extractfile(members["B/config"])
        assert config is not None and b"pager = touch" in config.read()


def test_a_quarantined_tree_over_the_limit_is_deleted_not_kept(
    db_url: str, raw: psycopg.Connection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(repository_module, "QUARANTINE_MAX_BYTES", 1_000_000, raising=False)
    project_id, issue, _, _ = setup_project(raw, tmp_path)
    run = start_run(project_id, issue)
    tree = run.work.worktree.root
    result = run.command("big")  # 3 MB and a redirected .git
    assert result is not None and "big" in result["output_tail"], result
    run.work.release()
    data = get_settings().data_path
    assert not tree.exists() and left_under(data) == []
    assert [path for path in (data / "quarantine").iterdir()] == []


def test_a_deep_quarantined_tree_is_archived_whole(db_url: str, raw: psycopg.Connection, tmp_path: Path) -> None:
    project_id, issue, outside, marker = setup_project(raw, tmp_path)
    run = start_run(project_id, issue)
    result = run.command("commondir")
    assert result is not None and "planted" in result["output_tail"], result
    run.command("deep")
    run.work.release()
    data = get_settings().data_path
    assert left_under(data) == []
    (kept,) = (data / "quarantine").iterdir()
    with tarfile.open(kept) as archive:
        names = archive.getnames()
    assert "/".join(["d"] * DEPTH + ["bottom.txt"]) in names
    assert (outside / "precious.txt").read_text() == "keep me\n"
    assert not marker.exists()


# --- 3. a killed run's tree ---------------------------------------------------------------------------------

CHILD = """
import sys, time, uuid
from projects.repo.work import prepare
from agents.tools.context import ToolContext
from agents.tools.dispatch import dispatch
from config.settings import get_settings
from db import store
from db.engine import get_engine, read_only
from projects.watch import Watch
from tests.support.rows import agent_record

project_id, issue = int(sys.argv[1]), int(sys.argv[2])
with read_only() as session:
    project = store.get_project(session, project_id)
settings = get_settings()
run_id = uuid.uuid4()
code = prepare(settings, project, issue, run_id=run_id, watch=Watch())
context = ToolContext(agent=agent_record("backend-engineer"), issue_id=issue, run_id=run_id, workflow="execute",
                      settings=settings, engine=get_engine(), work=code)
result = dispatch(context, "run_command", {"name": "commondir"}, step=1)
print("READY", code.worktree.root, result.ok, flush=True)
time.sleep(600)
"""


def test_a_killed_runs_worktree_is_swept_and_a_live_one_of_another_process_is_not(
    db_url: str, raw: psycopg.Connection, tmp_path: Path
) -> None:
    """Another process on this host (same data dir) runs the issue; its command plants a trap and the
    process is killed with SIGKILL (no ``finally`` runs). While it lived, this process's use of the
    repository left its tree alone; once it is dead, the next use quarantines it and leaves nothing."""
    project_id, issue, _, marker = setup_project(raw, tmp_path)
    with open(tmp_path / "child.log", "wb") as errors:  # the child writes to its own copy
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(project_id), str(issue)],
            stdout=subprocess.PIPE,
            stderr=errors,
            cwd=ROOT,
        )
    try:
        assert child.stdout is not None
        line = child.stdout.readline().decode()
        assert line.startswith("READY"), (line, (tmp_path / "child.log").read_text()[-3000:])
        tree = Path(line.split()[1])
        with read_only() as session:
            project = store.get_project(session, project_id)
        assert project is not None
        Repository(get_settings(), project).sync()  # another process's live run: its tree stays
        assert tree.is_dir() and (tree / "commondir").is_file()
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
        assert tree.is_dir()  # nothing of the killed run cleaned up after it
        Repository(get_settings(), project).sync()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=60)
        if child.stdout is not None:
            child.stdout.close()
    data = get_settings().data_path
    assert not tree.exists() and left_under(data) == []
    kept = list((data / "quarantine").iterdir())
    assert len(kept) == 1 and kept[0].is_file(), kept
    git_on_a_tty(data / "quarantine")
    assert not marker.exists()
