"""Sandbox start and worktree creation: what running a project's command costs before the command runs.

1. ``Bubblewrap.run(["true"])`` (prlimit, bwrap building namespaces and a root of ~40 mounts, the
   sandbox's ``sh`` exec-ing the command, the output pipe) against a bare ``subprocess.run(["true"])``,
   interleaved, medians over the runs. ``true`` does nothing, so the ratio is the sandbox's fixed cost
   over the cost of starting any process: it looks large and means little, so the target is absolute:
   at most 50 ms over the bare start. The cheapest real project command (``python3 -m unittest`` on an
   empty suite) takes about as long, a review gate runs a handful of commands, and each of them
   (tests, builds) usually takes seconds: 50 ms keeps the sandbox below the noise of what it runs.
2. ``git worktree add`` of a new branch from a bare clone of a repository with 10,000 small files (one
   commit), against ``cp -r`` of the same 10,000 files: how an issue gets its working copy, against the
   cheapest way to put those files on disk. Git must also inflate every blob from the pack and write
   an index, so the target is at most 3x the copy.

3. The walk after every run (projects/sandbox.py tame_tree: setuid bits, capabilities, special files)
   over the same 10,000 files, reported against the worktree's creation: it runs after each command,
   so it is part of every command's cost on a large worktree (no target of its own; printed).
4. As root, the same start and walk with the command as a uid of the run's own (HQ_SANDBOX_PROCESS_CAP=
   rlimit where no pids cgroup can be made): two bubblewraps and a kill after; the worktree lent to the
   uid (a chown walk) and given back by the walk after the run (printed; the default path is 1-3).

The last line's ratio is that of the worktree (the one with a ratio target); it passes only if the
sandbox start is within its own target too.

    python -m bench.sandbox [--runs 50] [--worktrees 5] [--files 10000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from bench.common import median, quiet_logging, verdict

START_OVERHEAD_MS = 50.0
WORKTREE_RATIO = 3.0

# Git as HQ runs it: no system or global configuration, no hooks, no fsmonitor; a fixed identity.
GIT_ENV = {
    "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
    "HOME": "/nonexistent",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_TERMINAL_PROMPT": "0",
    "LANG": "C",
}
GIT_OPTIONS = [
    "-c",
    "core.hooksPath=/dev/null",
    "-c",
    "core.fsmonitor=false",
    "-c",
    "protocol.file.allow=always",
    "-c",
    "user.name=bench",
    "-c",
    "user.email=bench@example.invalid",
]


def git(*args: str, cwd: Path | None = None) -> None:
    subprocess.run(["git", *GIT_OPTIONS, *args], cwd=cwd, env=GIT_ENV, check=True, capture_output=True)


def timed(command: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=cwd, env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def sandbox_start(runs: int, scratch: Path, cap: str = "auto") -> tuple[float, float]:
    """Medians in ms: (bare `true`, sandboxed `true`), with the process cap HQ_SANDBOX_PROCESS_CAP=``cap``."""
    from projects.sandbox import Bubblewrap, Limits, process_cap

    sandbox = Bubblewrap(cap=process_cap(cap))
    workdir = scratch / f"workdir-{cap}"
    workdir.mkdir()
    limits = Limits(timeout_seconds=60, cpu_seconds=10, memory_bytes=512 * 1024 * 1024)

    def confined() -> float:
        started = time.perf_counter()
        result = sandbox.run(["true"], workdir=workdir, limits=limits)
        elapsed = time.perf_counter() - started
        if not result.ok:
            raise SystemExit(f"the sandbox cannot run `true`: {result.output.strip()[-500:]}")
        return elapsed

    confined(), timed(["true"])  # warm the page cache and bwrap's feature check
    bare, sandboxed = [], []
    for _ in range(runs):  # interleaved, so a noisy moment hits both sides
        bare.append(timed(["true"]))
        sandboxed.append(confined())
    return median(bare) * 1000, median(sandboxed) * 1000


def make_repository(root: Path, files: int) -> tuple[Path, Path]:
    """A repository of ``files`` small files in one commit, its bare clone, and the plain tree: (bare, tree)."""
    source = root / "source"
    tree = source / "src"
    per_directory = 100
    for number in range(files):
        directory = tree / f"module_{number // per_directory:03d}"
        if number % per_directory == 0:
            directory.mkdir(parents=True)
        (directory / f"file_{number:05d}.py").write_text(f"VALUE = {number}\n\n\ndef value():\n    return VALUE\n")
    git("init", "-q", "-b", "main", cwd=source)
    git("add", "-A", cwd=source)
    git("commit", "-q", "-m", f"{files:,} files", cwd=source)
    bare = root / "bare.git"
    git("clone", "-q", "--bare", str(source), str(bare))
    return bare, tree


def worktree_creation(runs: int, files: int, scratch: Path) -> tuple[float, float]:
    """Medians in ms: (cp -r of the files, git worktree add of a new branch)."""
    bare, tree = make_repository(scratch / "repo", files)
    out = scratch / "out"
    out.mkdir()

    def add(index: int) -> float:
        path = out / f"issue-{index}"
        command = ["git", *GIT_OPTIONS, "-C", str(bare), "worktree", "add", "-q", "-b", f"hq/issue-{index}"]
        elapsed = timed([*command, str(path), "main"], env=GIT_ENV)
        shutil.rmtree(path)
        git("-C", str(bare), "worktree", "prune")
        return elapsed

    def copy(index: int) -> float:
        path = out / f"copy-{index}"
        elapsed = timed(["cp", "-r", str(tree), str(path)])
        shutil.rmtree(path)
        return elapsed

    add(0), copy(0)  # warm the page cache (the pack, the source files) for both sides
    copies, adds = [], []
    for index in range(1, runs + 1):
        copies.append(copy(index))
        adds.append(add(index))
    return median(copies) * 1000, median(adds) * 1000


def post_run_walk(runs: int, tree: Path) -> float:
    """Median in ms of the walk after a run over ``tree``, every file changed since the run started (the
    first command in a fresh worktree: each file is also checked for capabilities)."""
    from projects.sandbox import tame_tree

    tame_tree(tree)  # warm the dentry cache
    walks = []
    for _ in range(runs):
        started = time.perf_counter()
        tame_tree(tree)
        walks.append(time.perf_counter() - started)
    return median(walks) * 1000


def lent_walk(runs: int, tree: Path) -> float:
    """Median in ms of lending ``tree`` to a run's uid and the walk after the run giving it back."""
    from projects.sandbox import DEFAULT_UIDS, _own_tree, tame_tree

    owner = (os.geteuid(), os.getegid())
    walks = []
    for _ in range(runs):
        started = time.perf_counter()
        _own_tree(tree, DEFAULT_UIDS.start)
        tame_tree(tree, owner=owner)
        walks.append(time.perf_counter() - started)
    return median(walks) * 1000


def main(runs: int = 50, worktrees: int = 5, files: int = 10_000) -> float:
    quiet_logging()
    if shutil.which("bwrap") is None:
        raise SystemExit("bwrap is not installed: `make sandbox-deps` (apt-get install bubblewrap)")
    with tempfile.TemporaryDirectory(prefix="hq-bench-sandbox-") as name:
        scratch = Path(name)
        bare, sandboxed = sandbox_start(runs, scratch)
        overhead = sandboxed - bare
        print(f"bare subprocess.run(['true']): {bare:.1f} ms (median of {runs})")
        print(f"Bubblewrap.run(['true']):      {sandboxed:.1f} ms  ({sandboxed / bare:.1f}x, +{overhead:.1f} ms)")
        start_ok = overhead <= START_OVERHEAD_MS
        target = f"target <= {START_OVERHEAD_MS:.0f} ms"
        print(f"sandbox start overhead: {overhead:.1f} ms ({target}) {'PASS' if start_ok else 'FAIL'}")
        copy, add = worktree_creation(worktrees, files, scratch)
        walk = post_run_walk(worktrees, scratch / "repo" / "source" / "src")
        if os.geteuid() == 0:
            _, as_uid = sandbox_start(runs, scratch, "rlimit")
            print(f"Bubblewrap.run(['true']) as a uid of its own: {as_uid:.1f} ms (+{as_uid - bare:.1f} ms)")
            lent = lent_walk(worktrees, scratch / "repo" / "source" / "src")
            print(f"lend to the uid + walk back, {files:,} files: {lent:.0f} ms (median of {worktrees})")
    print(f"cp -r of {files:,} files:          {copy:.0f} ms (median of {worktrees})")
    print(f"git worktree add of {files:,} files: {add:.0f} ms  ({add / copy:.2f}x)")
    print(f"walk after a run, {files:,} files:  {walk:.0f} ms (median of {worktrees})")
    ratio = add / copy
    ok = ratio <= WORKTREE_RATIO and start_ok
    name = f"worktree add vs cp -r (and sandbox start +{overhead:.0f} ms)"
    print(verdict(name, ratio, f"<= {WORKTREE_RATIO:g}x", ok))
    return ratio


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--worktrees", type=int, default=5)
    parser.add_argument("--files", type=int, default=10_000)
    arguments = parser.parse_args()
    main(arguments.runs, arguments.worktrees, arguments.files)
