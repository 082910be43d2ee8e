"""Nothing is left behind (issue 26): shipped and cancelled issues' branches, dead runs' worktrees, the clone's
garbage, old environments. Real git, real PostgreSQL, real bubblewrap; a dead run is a real process killed
with SIGKILL.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from structlog.testing import capture_logs

from config.log import configure_logging
from config.settings import get_settings, load_settings
from db import store
from db.engine import get_engine, read_only
from db.store.records import ProjectRecord
from projects.repo import environment
from projects.repo.environment import MANIFEST, environments_dir
from projects.repo.project_file import parse_project_file
from projects.repo.repository import Repository
from projects.sandbox import sandbox_for
from scheduler.company import Company
from scheduler.heartbeat import BeatContext
from tests.support import ROOT
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
    passing_files,
    project_issue,
    push_change,
    remote_branches,
    remote_file,
    status,
)
from tests.support.rows import one
from workflows import upkeep

pytestmark = [pytest.mark.usefixtures("db_url"), needs_bwrap]

REMOVALS = {"branch.deleted", "worktree.swept", "repository.collected", "environment.pruned"}


@pytest.fixture(autouse=True)
def roster(db_url: str) -> None:
    assert run_hq("agents", "sync").exit_code == 0


@pytest.fixture()
def runtime(roster: None) -> BeatContext:
    return Company(load_settings(), threads=1).runtime


def project_record(project_id: int) -> ProjectRecord:
    with read_only() as session:
        return store.get_project(session, project_id)


def run_upkeep() -> list[MutableMapping[str, Any]]:
    """One upkeep pass, as `hq run` schedules it; the log lines it wrote."""
    configure_logging("info", "json", force=True)  # as `hq run` logs (the CLI in-process quietens it)
    with capture_logs() as logs:
        upkeep.run(get_settings(), get_engine())
    return logs


def events(logs: list[MutableMapping[str, Any]]) -> list[str]:
    return [line["event"] for line in logs]


# --- branches -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("keep", [False, True], ids=["deleted", "kept with --keep-branches"])
def test_a_shipped_issues_branch_leaves_the_remote_unless_the_project_keeps_branches(
    keep: bool, runtime: BeatContext, raw: psycopg.Connection, tmp_path: Path
) -> None:
    remote = make_remote(tmp_path)
    added = run_hq("project", "add", "calc", "--repo", str(remote), *(["--keep-branches"] if keep else []))
    assert added.exit_code == 0, added.stderr
    (project,) = one(raw.execute("SELECT id FROM projects WHERE name = 'calc'").fetchone())
    issue = project_issue(raw, project, "Add mul to calc", "Multiply.\n\n" + fenced("calc.py", GOOD_MUL))
    assert drive(runtime, raw, issue, until={"in_review", "blocked"}, agents=(ENGINEER,)) == "in_review"
    assert f"hq/issue-{issue}" in remote_branches(remote)
    assert drive(runtime, raw, issue, until={"done", "blocked"}) == "done"
    assert remote_file(remote, "calc.py") == GOOD_MUL
    assert (f"hq/issue-{issue}" in remote_branches(remote)) is keep
    assert events(run_upkeep()).count("branch.deleted") == 0  # nothing left to delete, or kept
    assert (f"hq/issue-{issue}" in remote_branches(remote)) is keep


def test_a_deploy_that_finds_its_branch_gone_after_the_merge_verifies_and_finishes(
    runtime: BeatContext, raw: psycopg.Connection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run merged, deleted the branch and died before `done`: the next run verifies the merge, once."""
    from workflows import deploy_verify

    remote = make_remote(tmp_path)
    project = add_project(raw, remote)
    issue = project_issue(raw, project, "Add mul to calc", fenced("calc.py", GOOD_MUL))
    assert drive(runtime, raw, issue, until={"approved", "blocked"}) == "approved"
    finish = store.finish_deploy
    monkeypatch.setattr(deploy_verify.store, "finish_deploy", lambda *args, **kwargs: None)  # "the lease was lost"
    beat(runtime, raw, "devops-engineer", issue)
    assert f"hq/issue-{issue}" not in remote_branches(remote)
    monkeypatch.setattr(deploy_verify.store, "finish_deploy", finish)
    raw.execute("UPDATE issues SET lease_until = now() - interval '1 second' WHERE id = %s", (issue,))
    assert beat(runtime, raw, "devops-engineer", issue) == "done"
    assert len(git(remote, "rev-list", "--merges", "main").split()) == 1


def test_upkeep_deletes_the_branches_of_cancelled_issues_and_nothing_else(
    raw: psycopg.Connection, tmp_path: Path
) -> None:
    remote = make_remote(tmp_path, passing_files())
    project = add_project(raw, remote)
    kept_remote = make_remote(tmp_path, passing_files(), name="kept.git")
    keeping = add_project(raw, kept_remote, "kept", keep_branches=True)
    other = add_project(raw, make_remote(tmp_path, passing_files(), name="other.git"), "other")
    cancelled = project_issue(raw, project, "Dropped", "Not needed after all.")
    working = project_issue(raw, project, "Still open", "In progress.")
    elsewhere = project_issue(raw, other, "Another project's", "Cancelled there.")
    kept = project_issue(raw, keeping, "Dropped, kept", "Its project keeps branches.")
    for issue in (cancelled, elsewhere, kept):
        assert run_hq("cancel", str(issue), "--reason", "not needed").exit_code == 0
    names = {
        f"hq/issue-{cancelled}",  # the one to go
        f"hq/issue-{working}",  # not terminal
        f"hq/issue-{elsewhere}",  # terminal, but another project's issue
        f"hq/issue-0{cancelled}",  # not exactly hq/issue-<id>
        f"hq/issue-{cancelled}x",
        f"hq/issue-{cancelled}-old",
        f"feature/hq/issue-{cancelled}",
        f"hq/issues-{cancelled}",
    }
    for name in names:
        git(remote, "branch", name, "main")
    git(kept_remote, "branch", f"hq/issue-{kept}", "main")
    for project_id in (project, keeping):
        Repository(get_settings(), project_record(project_id)).sync()  # this host works on both

    logs = run_upkeep()
    assert [(line["event"], line.get("issue_id")) for line in logs if line["event"] == "branch.deleted"] == [
        ("branch.deleted", cancelled)
    ]
    assert remote_branches(remote) == {"main"} | names - {f"hq/issue-{cancelled}"}
    assert remote_branches(kept_remote) == {"main", f"hq/issue-{kept}"}
    assert status(raw, working) == "todo"
    # Idempotent, and silent when there is nothing to do.
    assert run_upkeep() == []
    assert remote_branches(remote) == {"main"} | names - {f"hq/issue-{cancelled}"}


def test_hq_run_once_runs_the_upkeep(raw: psycopg.Connection, tmp_path: Path) -> None:
    remote = make_remote(tmp_path, passing_files())
    project = add_project(raw, remote)
    issue = project_issue(raw, project, "Dropped", "Not needed after all.")
    git(remote, "branch", f"hq/issue-{issue}", "main")
    Repository(get_settings(), project_record(project)).sync()
    assert run_hq("cancel", str(issue)).exit_code == 0
    Company(load_settings(), threads=1).run_once()
    assert remote_branches(remote) == {"main"}


# --- worktrees ------------------------------------------------------------------------------------------------

DEAD_RUNS = """
import datetime as dt, os, signal, sys, uuid
from config.settings import get_settings
from db.store.records import ProjectRecord
from projects.repo.repository import Repository

project_id, name, repo, *runs = sys.argv[1:]
record = ProjectRecord(int(project_id), name, repo, "main", "test", dt.datetime.now(dt.UTC), None)
repository = Repository(get_settings(), record).sync()
for run in runs:
    issue_id, run_id = run.split(":")
    tree, _ = repository.issue_worktree(int(issue_id), uuid.UUID(run_id))
    (tree.root / "build-output.txt").write_text("what the run left")
    print(tree.root, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""
"""A worker running two issues' runs at once, killed outright in the middle: no ``finally`` runs."""


def lease(raw: psycopg.Connection, issue: int, owner: uuid.UUID, seconds: int) -> None:
    raw.execute(
        "UPDATE issues SET lease_owner = %s, lease_until = now() + make_interval(secs => %s) WHERE id = %s",
        (owner, seconds, issue),
    )


def test_upkeep_removes_a_dead_runs_worktree_and_never_a_live_ones(raw: psycopg.Connection, tmp_path: Path) -> None:
    remote = make_remote(tmp_path, passing_files())
    project = add_project(raw, remote)
    record = project_record(project)
    dead, taken_over, live = (project_issue(raw, project, f"Issue {n}", "Work.") for n in range(3))
    repository = Repository(get_settings(), record)
    runs = {issue: uuid.uuid4() for issue in (dead, taken_over)}
    for issue, run_id in runs.items():
        lease(raw, issue, run_id, 300)
    killed = subprocess.run(
        [sys.executable, "-c", DEAD_RUNS, str(project), record.name, record.repo]
        + [f"{issue}:{run_id}" for issue, run_id in runs.items()],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    left = [Path(line) for line in killed.stdout.split()]
    assert len(left) == 2 and all((path / "build-output.txt").is_file() for path in left)
    lease(raw, dead, uuid.uuid4(), -60)  # its lease expired
    lease(raw, taken_over, uuid.uuid4(), 300)  # another run holds the issue now
    live_run = uuid.uuid4()
    lease(raw, live, live_run, 300)
    tree, _ = repository.issue_worktree(live, live_run)  # a live run, in the middle of its work
    (tree.root / "work.txt").write_text("not finished")
    try:
        logs = run_upkeep()
        assert sorted(line["worktree"] for line in logs if line["event"] == "worktree.swept") == sorted(
            path.name for path in left
        )
        for path in left:
            assert not path.exists()
            assert not (repository.git_dir / "worktrees" / path.name).exists()
            assert not (repository.home / "leases" / path.name).exists()
        assert (tree.root / "work.txt").read_text() == "not finished"
        assert tree.head()  # still a worktree git can use
        assert [path.name for path in (repository.home / "worktrees").iterdir()] == [tree.root.name]
        assert "worktree.swept" not in events(run_upkeep())
    finally:
        repository.drop(tree)
    assert not tree.root.exists()


# --- garbage collection ---------------------------------------------------------------------------------------


def objects(repository: Repository) -> dict[str, int]:
    counted = git(repository.git_dir, "count-objects", "-v")
    return {key: int(value) for key, value in (line.split(": ") for line in counted.splitlines())}


@contextmanager
def clone_lock(repository: Repository) -> Iterator[None]:
    """The clone's lock held as a run's git command holds it (another open file: flocks conflict)."""
    with open(repository.home / "clone.lock", "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def test_the_clone_is_collected_only_when_no_run_uses_it(raw: psycopg.Connection, tmp_path: Path) -> None:
    remote = make_remote(tmp_path, passing_files())
    project = add_project(raw, remote)
    repository = Repository(get_settings(), project_record(project)).sync()
    loose = objects(repository)["count"]
    assert loose > 0  # a small fetch leaves loose objects

    tree = repository.worktree("issue-1-0123456789ab", repository.base_head())  # a live run's
    try:
        assert "repository.collected" not in events(run_upkeep())
        assert objects(repository)["count"] == loose
    finally:
        repository.drop(tree)
    with clone_lock(repository):  # a run's git command in progress: skipped, not waited for
        assert repository.collect_garbage() is None
    assert objects(repository)["count"] == loose

    logs = run_upkeep()
    (collected,) = [line for line in logs if line["event"] == "repository.collected"]
    assert collected["project"] == "calc" and collected["bytes_before"] > 0
    counted = objects(repository)
    assert counted["count"] == 0 and counted["packs"] == 1
    assert git(repository.git_dir, "rev-parse", "refs/remotes/origin/main").strip()
    assert run_upkeep() == []  # nothing left to pack


# --- environments ---------------------------------------------------------------------------------------------

ENV_YAML = (
    "environment:\n"
    "  setup: [python3, -c, \"open('/env/ready', 'w').write(open('deps.txt').read())\"]\n"
    "  inputs: [deps.txt]\n"
    "commands:\n  test: [python3, -m, unittest, -q]\n"
    "gate: [test]\n"
)


def test_environments_beyond_the_newest_are_pruned_but_never_one_in_use(
    raw: psycopg.Connection, tmp_path: Path
) -> None:
    remote = make_remote(tmp_path, passing_files(ENV_YAML) | {"deps.txt": "0\n"})
    project = add_project(raw, remote)
    settings = get_settings()
    repository = Repository(settings, project_record(project))
    spec = parse_project_file(ENV_YAML.encode()).environment
    assert spec is not None
    sandbox = sandbox_for(settings)
    commits = [git(remote, "rev-parse", "main").strip()]
    for version in range(1, 5):
        commits.append(push_change(remote, "main", {"deps.txt": f"{version}\n"}, f"deps {version}"))
    repository.sync()
    held = environment.ensure(settings, sandbox, repository, spec, commits[0])  # a run still using the oldest
    keys = [held.key]
    for commit in commits[1:]:
        keys.append(environment.ensure(settings, sandbox, repository, spec, commit).key)
    root = environments_dir(settings, project)
    on_disk = {path.name for path in root.iterdir() if (path / MANIFEST).is_file()}
    assert len(set(keys)) == 5 and on_disk == {keys[0], *keys[2:]}  # the newest three, and the one in use

    half_built = root / f".build-{keys[1]}-0badc0de"  # a builder killed mid-build
    half_built.mkdir()
    (half_built / "bin").mkdir()
    in_place = root / ("f" * 32)  # an unconfined build killed before its manifest
    in_place.mkdir()
    (in_place / "partial").write_text("x")
    logs = run_upkeep()
    assert sorted(line["environment"] for line in logs if line["event"] == "environment.unfinished_removed") == [
        half_built.name,
        in_place.name,
    ]
    assert "environment.pruned" not in events(logs)  # the oldest is in use
    assert (held.path / "ready").read_text() == "0\n"

    assert held.hold is not None
    held.hold.close()  # its run is over
    logs = run_upkeep()
    assert [line["environment"] for line in logs if line["event"] == "environment.pruned"] == [keys[0]]
    assert sorted(path.name for path in root.iterdir() if path.is_dir()) == sorted(keys[2:])
    reused = environment.ensure(settings, sandbox, repository, spec, commits[4])
    assert not reused.built and reused.key == keys[4]


# --- disk used ------------------------------------------------------------------------------------------------


def test_project_show_says_the_disk_used(raw: psycopg.Connection, tmp_path: Path) -> None:
    remote = make_remote(tmp_path, passing_files())
    assert run_hq("project", "add", "calc", "--repo", str(remote), "--keep-branches").exit_code == 0
    (project,) = one(raw.execute("SELECT id FROM projects WHERE name = 'calc'").fetchone())
    settings = get_settings()
    repository = Repository(settings, project_record(project)).sync()
    tree = repository.worktree("issue-1-0123456789ab", repository.base_head())
    (tree.root / "big.bin").write_bytes(os.urandom(300_000))
    built = environments_dir(settings, project) / ("a" * 32)
    built.mkdir(parents=True)
    (built / "lib.bin").write_bytes(os.urandom(1_000_000))
    try:
        shown = run_hq("project", "show", "calc", "--json")
        assert shown.exit_code == 0, shown.stderr
        disk = json.loads(shown.stdout)["disk"]
        assert disk["clone"] > 0 and 300_000 <= disk["worktrees"] < 1_000_000
        assert 1_000_000 <= disk["environments"] < 1_200_000
        assert disk["total"] == disk["clone"] + disk["worktrees"] + disk["environments"]
        assert json.loads(shown.stdout)["project"]["keep_branches"] is True
        text = run_hq("project", "show", "calc")
        assert text.exit_code == 0
        line = next(line for line in text.stdout.splitlines() if "disk used" in line)
        assert " MB (clone " in line and "environments 1.0 MB" in line
        assert "kept after done" in text.stdout
    finally:
        repository.drop(tree)
