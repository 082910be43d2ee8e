"""What sandboxed code must not hand to the host (issue 23, items 1-5), attacked through the real path.

The hostile code is committed to a real project's repository and run as the agent would run it: by the
``run_command`` tool, through dispatch(), in the issue's worktree built by the product, inside the real
bubblewrap sandbox. What each test checks is the host afterwards (or what the code could read).
"""

from __future__ import annotations

import contextlib
import os
import stat
import subprocess
import tarfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from config.settings import get_settings, load_settings
from projects import sandbox as sandbox_module
from scheduler.company import Company
from tests.support.cli import run_hq
from tests.support.projects import (
    ENGINEER,
    GOOD_MUL,
    LEAD,
    ToolRun,
    add_project,
    beat,
    comments,
    fenced_all,
    make_remote,
    needs_bwrap,
    passing_files,
    project_issue,
    project_run,
    sample_files,
)

pytestmark = needs_bwrap

HOSTILE = r"""
import errno, os, shutil, socket, stat, sys, time

def setuid():
    shutil.copy("/bin/sh", "rootshell")
    os.chmod("rootshell", 0o4755)
    os.makedirs("deep/er")
    shutil.copy("/bin/sh", "deep/er/groupshell")
    os.chmod("deep/er/groupshell", 0o2755)
    os.chmod("deep", 0o2777)
    os.mkfifo("fifo")
    socket.socket(socket.AF_UNIX).bind("deep/sock")
    try:
        os.mknod("null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        print("mknod worked")
    except OSError as error:
        print("mknod refused", error.errno)
    os.makedirs("locked/inner")
    shutil.copy("/bin/sh", "locked/inner/hidden")
    os.chmod("locked/inner/hidden", 0o6755)
    os.chmod("locked/inner", 0)
    os.chmod("locked", 0)
    os.symlink("/usr/bin/env", "link-to-host")
    print("planted", oct(os.stat("rootshell").st_mode))

def deep():
    shutil.copy("/bin/sh", "shallowshell")
    os.chmod("shallowshell", 0o4755)
    top = os.getcwd()
    for _ in range(1100):
        os.mkdir("d")
        os.chdir("d")
    shutil.copy("/bin/sh", "deepshell")
    os.chmod("deepshell", 0o4755)
    os.chdir(top)
    print("planted deep")

def forkbomb():
    started = 0
    try:
        while started < 3000:
            if os.fork() == 0:
                time.sleep(120)
                os._exit(0)
            started += 1
    except OSError as error:
        print("fork refused:", errno.errorcode.get(error.errno), "after", started)
        return
    print("no cap: started", started)

def proc():
    for pid in sorted(name for name in os.listdir("/proc") if name.isdigit()):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                print("cmdline", pid, handle.read().replace(b"\0", b" ").decode())
        except OSError:
            pass

def read():
    for path in sys.argv[2:]:
        try:
            with open(path, errors="replace") as handle:
                print("READ", path, repr(handle.read()))
        except OSError as error:
            print("REFUSED", path, error.errno)

globals()[sys.argv[1]]()
"""

PROJECT_YAML = (
    "commands:\n"
    "  test: [python3, -m, unittest, -q]\n"
    "  setuid: [python3, hostile.py, setuid]\n"
    "  forkbomb: [python3, hostile.py, forkbomb]\n"
    "  deep: [python3, hostile.py, deep]\n"
    "  proc: [python3, hostile.py, proc]\n"
    "  creds: [python3, hostile.py, read, /usr/etc/npmrc, /usr/local/etc/npmrc, {files}]\n"
    "gate: [test]\n"
)


CANARY = "hq-canary-" + uuid.uuid4().hex
PLANTED = f"/usr/local/etc/hq-test-{uuid.uuid4().hex[:12]}"
MASKED = (f"{PLANTED}/pip.conf", f"{PLANTED}/gcloud/access_tokens.db")


def start_run(raw: psycopg.Connection, tmp_path: Path, **overrides: Any) -> ToolRun:
    assert run_hq("agents", "sync").exit_code == 0
    files = sample_files() | {".hq/project.yaml": PROJECT_YAML.format(files=", ".join(MASKED)), "hostile.py": HOSTILE}
    project_id = add_project(raw, make_remote(tmp_path, files))
    return project_run(project_id, project_issue(raw, project_id, "Hostile", ""), **overrides)


def entries(root: Path) -> Iterator[tuple[Path, os.stat_result]]:
    """Every entry under ``root`` (root can read a 000 directory; HQ's user owns them), symlinks not followed."""
    for directory, names, files in os.walk(root):
        for name in names + files:
            path = Path(directory) / name
            yield path, path.lstat()


def bomb_watching(run: ToolRun, count: Callable[[], int]) -> tuple[dict[str, Any], int]:
    """The fork bomb's result, and the most processes ``count`` saw while it ran (sampled every 5 ms)."""
    peak = count()
    done = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, count())
            time.sleep(0.005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        result = run.command("forkbomb")
    finally:
        done.set()
        watcher.join()
    return result, peak


# --- 1. setuid files and device nodes ---------------------------------------------------------------------


def test_nothing_the_sandbox_leaves_carries_setuid_bits_or_special_files(
    db_url: str, raw: psycopg.Connection, tmp_path: Path
) -> None:
    run = start_run(raw, tmp_path)
    tree = run.work.worktree.root
    result = run.command("setuid")
    assert result["exit_code"] == 0 and "planted 0o104755" in result["output_tail"], result
    found = dict(entries(tree))
    assert (tree / "rootshell") in found and (tree / "locked" / "inner" / "hidden") in found  # kept, but tamed
    for path, info in found.items():
        assert not info.st_mode & (stat.S_ISUID | stat.S_ISGID), f"{path} is {oct(info.st_mode)} on the host"
        assert stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode) or stat.S_ISLNK(info.st_mode), path
    assert stat.S_IMODE(found[tree / "rootshell"].st_mode) == 0o755
    assert os.readlink(tree / "link-to-host") == "/usr/bin/env"  # a symlink is left alone, its target untouched
    assert not Path("/usr/bin/env").lstat().st_mode & stat.S_ISUID
    data = run.ctx.settings.data_path
    assert stat.S_IMODE(data.stat().st_mode) & 0o077 == 0, oct(data.stat().st_mode)


def test_a_tree_too_deep_to_walk_fails_the_command_and_what_was_walked_is_tamed(
    db_url: str, raw: psycopg.Connection, tmp_path: Path
) -> None:
    """A directory chain deeper than the walk goes (one open directory a level) cannot be vouched for: the
    command's result says so and fails, never an exception that loses it, and what was walked is tamed."""
    run = start_run(raw, tmp_path)
    tree = run.work.worktree.root
    try:
        result = run.command("deep")
        assert result["exit_code"] == sandbox_module.EXIT_UNSAFE_TREE, result
        assert "planted deep" in result["output_tail"] and "deeper than" in result["output_tail"]
        assert not (tree / "shallowshell").lstat().st_mode & (stat.S_ISUID | stat.S_ISGID)
    finally:  # rm walks without recursion (pytest's own clean-up would not), and no setuid shell stays in /tmp
        subprocess.run(["rm", "-rf", "--one-file-system", "--", str(tree)], check=True, timeout=120)


def test_an_existing_data_dir_is_made_private(db_url: str, raw: psycopg.Connection, tmp_path: Path) -> None:
    data = get_settings().data_path
    data.mkdir(parents=True, exist_ok=True)
    data.chmod(0o755)
    run = start_run(raw, tmp_path)
    assert stat.S_IMODE(run.ctx.settings.data_path.stat().st_mode) & 0o077 == 0


# --- 2. a trap for the next person ---------------------------------------------------------------------------

TRAP_TEST = """
import os
import unittest

os.makedirs("planted/objects", exist_ok=True)
os.makedirs("planted/refs", exist_ok=True)
with open("planted/HEAD", "w") as handle:
    handle.write("ref: refs/heads/main\\n")
with open("planted/config", "w") as handle:
    handle.write("[core]\\n\\trepositoryformatversion = 0\\n")
    handle.write("\\tfsmonitor = touch {marker}\\n\\tpager = touch {marker}\\n")
with open(".git", "w") as handle:
    handle.write("gitdir: planted\\n")


class Trap(unittest.TestCase):
    def test_nothing(self):
        pass
"""


def test_a_worktree_whose_git_was_redirected_is_quarantined_and_none_is_left(
    db_url: str, raw: psycopg.Connection, tmp_path: Path
) -> None:
    """The gate's tests (run by the engineer's run_command, then by the review) plant a repository whose
    configuration runs a program; HQ's own git never runs it, and no worktree is left where a person works."""
    assert run_hq("agents", "sync").exit_code == 0
    runtime = Company(load_settings(), threads=1).runtime
    marker = tmp_path / "trap-fired"
    remote = make_remote(tmp_path, passing_files())
    project = add_project(raw, remote)
    files = {"test_trap.py": TRAP_TEST.format(marker=marker), "mul.py": "def mul(a, b):\n    return a * b\n"}
    issue = project_issue(raw, project, "Add mul", fenced_all(files))
    assert beat(runtime, raw, ENGINEER, issue) == "in_review", comments(raw, issue, "failure")
    assert beat(runtime, raw, LEAD, issue) == "approved", comments(raw, issue, "review")
    data = get_settings().data_path
    assert not list((data / "projects").glob("*/worktrees/*")), "a worktree was left after its run"
    quarantined = sorted((data / "quarantine").iterdir())
    assert len(quarantined) == 2  # the engineer's tree and the review's, each one archive
    assert stat.S_IMODE((data / "quarantine").stat().st_mode) == 0o700
    for archive in quarantined:
        assert archive.is_file() and archive.name.endswith(".tar.gz"), archive
        with tarfile.open(archive) as kept:
            assert {".git", "planted/HEAD", "planted/config"} <= set(kept.getnames())
    for where in (data / "quarantine", data):  # what a person's shell prompt would run there
        subprocess.run(["git", "status"], cwd=where, capture_output=True, timeout=60)
        subprocess.run(["git", "log", "-1"], cwd=where, capture_output=True, timeout=60)
    assert not marker.exists(), "the planted configuration ran a program"


# --- 3. processes ---------------------------------------------------------------------------------------------


def host_processes() -> int:
    return sum(1 for name in os.listdir("/proc") if name.isdigit())


def test_a_fork_bomb_is_capped_and_the_host_never_sees_more_than_the_cap(
    db_url: str, raw: psycopg.Connection, tmp_path: Path
) -> None:
    cap = 64
    run = start_run(raw, tmp_path, sandbox_max_processes=cap)
    baseline = host_processes()
    result, peak = bomb_watching(run, host_processes)
    assert "fork refused: EAGAIN" in result["output_tail"], result
    started = int(result["output_tail"].split("after")[-1].split()[0])
    assert started < cap
    assert peak - baseline <= cap + 16, (baseline, peak)
    assert not result["timed_out"]


SANDBOX_UIDS = range(61000, 61064)  # HQ_SANDBOX_UID_BASE and HQ_SANDBOX_UID_COUNT's defaults
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="a uid of the run's own is how root is capped")


def processes_of(uids: range) -> int:
    count = 0
    for name in os.listdir("/proc"):
        if name.isdigit():
            with contextlib.suppress(OSError):
                count += os.stat(f"/proc/{name}").st_uid in uids
    return count


def uid_cap(run: ToolRun) -> str:
    sandbox = run.work.sandbox
    assert isinstance(sandbox, sandbox_module.Bubblewrap)
    return sandbox.process_cap.describe()


@as_root
def test_as_root_without_a_pids_cgroup_a_fork_bomb_is_capped_by_a_uid_of_the_runs_own(
    db_url: str, raw: psycopg.Connection, tmp_path: Path
) -> None:
    """HQ_SANDBOX_PROCESS_CAP=rlimit as root: RLIMIT_NPROC binds because the command runs as a uid of the
    run's own; the bomb's processes are that uid's on the host, never more than the cap, none left after."""
    cap = 64
    run = start_run(raw, tmp_path, sandbox_max_processes=cap, sandbox_process_cap="rlimit")
    assert uid_cap(run).startswith("RLIMIT_NPROC under a uid of each run's own"), uid_cap(run)
    result, peak = bomb_watching(run, lambda: processes_of(SANDBOX_UIDS))
    assert "fork refused: EAGAIN" in result["output_tail"], result
    started = int(result["output_tail"].split("after")[-1].split()[0])
    assert cap // 2 < started < cap
    assert cap // 2 < peak <= cap + sandbox_module.SANDBOX_OVERHEAD_PROCESSES, peak
    assert processes_of(SANDBOX_UIDS) == 0  # the sleeping children died with the run
    assert not result["timed_out"]
    tree = run.work.worktree.root
    assert {info.st_uid for _, info in entries(tree)} | {tree.stat().st_uid} == {os.geteuid()}


@as_root
def test_as_root_under_a_uid_of_its_own_the_gate_passes_and_the_worktree_is_hqs_again(
    db_url: str, raw: psycopg.Connection, tmp_path: Path
) -> None:
    run = start_run(raw, tmp_path, sandbox_process_cap="rlimit")
    assert uid_cap(run).startswith("RLIMIT_NPROC under a uid of each run's own"), uid_cap(run)
    tree = run.work.worktree.root
    (tree / "calc.py").write_text(GOOD_MUL)  # what the agent's write_file would leave: HQ's file
    tests = run.command("test")
    assert tests["exit_code"] == 0, tests["output_tail"]
    planted = run.command("setuid")  # files made by the uid, setuid bits, a socket, a 000 directory
    assert planted["exit_code"] == 0 and "planted 0o104755" in planted["output_tail"], planted
    found = dict(entries(tree))
    assert (tree / "rootshell") in found and (tree / "locked" / "inner" / "hidden") in found
    for path, info in [*found.items(), (tree, tree.stat())]:
        assert (info.st_uid, info.st_gid) == (os.geteuid(), os.getegid()), f"{path} is {info.st_uid}:{info.st_gid}"
        assert not info.st_mode & (stat.S_ISUID | stat.S_ISGID), f"{path} is {oct(info.st_mode)} on the host"
    assert run.command("test")["exit_code"] == 0  # a second command in the same worktree, given back to it
    # HQ's git runs in the worktree afterwards without tripping over its ownership checks
    status = subprocess.run(["git", "status", "--porcelain"], cwd=tree, capture_output=True, text=True, timeout=60)
    assert status.returncode == 0 and "rootshell" in status.stdout, status


def test_config_check_names_what_caps_processes(db_url: str) -> None:
    result = run_hq("config", "check")
    line = next((line for line in result.stdout.splitlines() if line.startswith("sandbox processes:")), None)
    assert line is not None, result.stdout
    assert "pids cgroup" in line or "RLIMIT_NPROC" in line or "none" in line


# --- 4. host configuration with credentials ------------------------------------------------------------------


@pytest.fixture()
def planted_credentials() -> Iterator[None]:
    """Credential files under a bound tree, as a host's npm, pip or cloud CLI would leave them."""
    made = [Path(path) for path in MASKED]
    try:
        for path in made:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"token = {CANARY}\n")
        yield
    finally:
        for path in made:
            path.unlink(missing_ok=True)
        for path in sorted({p.parent for p in made} | {made[0].parent}, key=lambda p: len(p.parts), reverse=True):
            if path.is_dir():
                path.rmdir()


def test_credentials_in_the_bound_system_trees_are_hidden(
    db_url: str, raw: psycopg.Connection, tmp_path: Path, planted_credentials: None
) -> None:
    run = start_run(raw, tmp_path)
    output = run.command("creds")["output_tail"]
    assert CANARY not in output, output
    for host in ("/usr/etc/npmrc", "/usr/local/etc/npmrc", *MASKED):
        if Path(host).is_file() and Path(host).stat().st_size:
            assert f"READ {host} ''" in output or f"REFUSED {host}" in output, output


# --- 5. host paths ---------------------------------------------------------------------------------------------


def test_the_sandbox_command_line_tells_nothing_of_the_host(
    db_url: str, raw: psycopg.Connection, tmp_path: Path
) -> None:
    run = start_run(raw, tmp_path)
    output = run.command("proc")["output_tail"]
    assert "cmdline 1 " in output, output
    data = str(run.ctx.settings.data_path)
    assert data not in output and str(run.work.worktree.root) not in output, output
    assert "--bind" not in output and "--ro-bind" not in output, output
    assert str(sandbox_module.Bubblewrap().interpreter) not in output.split("cmdline 1 ", 1)[1].split("\n", 1)[0]


def test_a_runs_cgroup_made_in_another_pid_namespace_is_never_killed() -> None:
    """Two HQs in different PID namespaces (containers) may share one pids hierarchy: the other's pid is not in
    our /proc, yet its run is alive. Only our own namespace's dead makers' cgroups are emptied."""
    cap = sandbox_module.process_cap()
    if cap.parent is None:
        pytest.skip(f"no pids cgroup on this host: {cap.describe()}")
    other = int(sandbox_module._pid_namespace()) + 1
    group = cap.parent / f"{sandbox_module.CGROUP_PREFIX}{other}-{os.getpid()}-{uuid.uuid4().hex[:12]}"
    group.mkdir()
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        (group / "cgroup.procs").write_text(str(sleeper.pid))
        sandbox_module._remove_orphans(cap.parent)
        assert sleeper.poll() is None, "another namespace's live run was killed"
        assert group.exists()
    finally:
        sleeper.kill()
        sleeper.wait()
        sandbox_module._remove_cgroup(group)
