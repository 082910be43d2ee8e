"""The sandbox for project commands, against real bubblewrap and real processes.

Each isolation test would fail if the sandbox were a plain subprocess (checked by running them
against ``Unconfined``); where it is cheap, a test also shows the unconfined side doing what the
sandbox refuses, so a test that cannot fail is noticed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import tracemalloc
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from config.secrets import register_secrets
from config.settings import Settings
from projects.sandbox import (
    EXIT_CANNOT_START,
    EXIT_TIMED_OUT,
    WORKSPACE,
    Bubblewrap,
    Limits,
    Mount,
    Sandbox,
    SandboxResult,
    SandboxUnavailable,
    Unconfined,
    probe,
    process_cap,
    sandbox_for,
)

needs_bwrap = pytest.mark.skipif(
    shutil.which("bwrap") is None, reason="bubblewrap is not installed (`make sandbox-deps` installs it)"
)

LIMITS = Limits(timeout_seconds=120, cpu_seconds=60, memory_bytes=1024 * 1024 * 1024)
PY = "python3"  # the sandbox's PATH starts with the bin directory of the interpreter HQ runs on


@pytest.fixture()
def confined() -> Bubblewrap:
    if shutil.which("bwrap") is None:
        pytest.skip("bubblewrap is not installed (`make sandbox-deps` installs it)")
    return Bubblewrap()


@pytest.fixture()
def worktree(tmp_path: Path) -> Path:
    path = tmp_path / "worktree"
    path.mkdir()
    return path


def run(sandbox: Sandbox, worktree: Path, code: str, *args: str, limits: Limits = LIMITS) -> SandboxResult:
    return sandbox.run([PY, "-c", code, *args], workdir=worktree, limits=limits)


# --- 1. network ----------------------------------------------------------------------


@pytest.fixture()
def host_port() -> Iterator[int]:
    """A TCP port listening on the host's loopback (the kernel completes connections into the backlog)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield server.getsockname()[1]


CONNECT = "import socket, sys; socket.create_connection(('127.0.0.1', int(sys.argv[1])), 2); print('connected')"


def test_no_connection_to_a_host_loopback_port(confined: Bubblewrap, worktree: Path, host_port: int) -> None:
    inside = run(confined, worktree, CONNECT, str(host_port))
    assert inside.exit_code != 0
    assert "connected" not in inside.output
    assert "ConnectionRefused" in inside.output or "unreachable" in inside.output.lower()

    outside = run(Unconfined(), worktree, CONNECT, str(host_port))  # the same command, unconfined, connects
    assert outside.exit_code == 0, outside.output
    assert "connected" in outside.output


# --- 2. filesystem writes --------------------------------------------------------------

WRITE_EACH = """
import sys
for path in sys.argv[1:]:
    try:
        with open(path, "w") as handle:
            handle.write("escaped")
        print("WROTE", path)
    except OSError as error:
        print("REFUSED", path, type(error).__name__)
with open("inside.txt", "w") as handle:
    handle.write("from the sandbox")
"""


def test_writes_outside_the_worktree_fail_and_leave_nothing(
    confined: Bubblewrap, worktree: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    settings = Settings(data_dir=tmp_path / "var")
    settings.data_path.mkdir()
    marker = uuid.uuid4().hex
    targets = [
        outside / "escaped.txt",
        settings.data_path / "escaped.txt",
        Path(f"/usr/hq-sandbox-{marker}"),
        Path(f"/etc/hq-sandbox-{marker}"),
        Path(f"/hq-sandbox-{marker}"),
        worktree.parent / "next-to-the-worktree.txt",
    ]
    try:
        result = run(confined, worktree, WRITE_EACH, *map(str, targets))
        assert result.exit_code == 0, result.output
        assert "WROTE" not in result.output
        assert result.output.count("REFUSED") == len(targets)
        for target in targets:
            assert not target.exists(), f"{target} was written from inside the sandbox"
        assert sorted(p.name for p in outside.iterdir()) == []
        assert sorted(p.name for p in settings.data_path.iterdir()) == []
    finally:  # should the sandbox fail open, leave the host as it was
        for target in targets:
            target.unlink(missing_ok=True)

    written = worktree / "inside.txt"
    assert written.read_text() == "from the sandbox"
    assert written.stat().st_uid == os.getuid()  # the host caller's file, whatever uid it had inside
    assert written.stat().st_gid == os.getgid()


# --- 3. environment ----------------------------------------------------------------------

SECRETS = {
    "ANTHROPIC_API_KEY": "sk-ant-api03-" + "a" * 40,
    "DATABASE_URL": "postgresql://u:pw-hq-sandbox@h/db",
    "HQ_TEST_CANARY": "canary-" + uuid.uuid4().hex,
    "GITHUB_TOKEN": "ghp_" + "b" * 36,
}


def test_no_secret_reaches_the_command(confined: Bubblewrap, worktree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    bare = subprocess.run(["env"], capture_output=True, text=True, check=True).stdout
    assert SECRETS["HQ_TEST_CANARY"] in bare  # what a plain subprocess would have handed over

    result = confined.run(["env"], workdir=worktree, limits=LIMITS, env={"HQ_ISSUE_ID": "7"})
    assert result.exit_code == 0, result.output
    names = {line.partition("=")[0] for line in result.output.splitlines() if "=" in line}
    for name, value in SECRETS.items():
        assert name not in names
        assert value not in result.output
    assert "pw-hq-sandbox" not in result.output
    assert {name for name in names if name.startswith("HQ_")} == {"HQ_ISSUE_ID"}  # only what the caller added
    assert not [name for name in names if name.endswith(("_KEY", "_TOKEN", "_URL", "PASSWORD"))]
    assert names == {"PATH", "HOME", "TMPDIR", "LANG", "PWD", "HQ_ISSUE_ID"}
    assert f"PWD={WORKSPACE}" in result.output.splitlines()


# --- 4. timeout ---------------------------------------------------------------------------

# The command starts a child in a new session (out of the process group), ignoring SIGTERM and SIGHUP
# and holding stdout open, then sleeps itself: only killing every process in the sandbox ends it.
SPAWN = """
import subprocess, sys, time
grandchild = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); signal.signal(signal.SIGHUP, \
signal.SIG_IGN); time.sleep(300)"
child = subprocess.Popen([sys.executable, "-c", grandchild, sys.argv[1]], start_new_session=True)
with open("child.pid", "w") as handle:
    handle.write(str(child.pid))
print("started", flush=True)
time.sleep(300)
"""


def marked_pids(marker: str) -> set[int]:
    """Host pids of live processes whose argv holds ``marker`` (zombies have an empty cmdline)."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if marker.encode() in cmdline.split(b"\0"):
                pids.add(int(entry.name))
    return pids


def wait_until_gone(marker: str, seconds: float = 30.0) -> set[int]:
    """Poll until no process carries ``marker``; the survivors, if any, after ``seconds``."""
    give_up = time.monotonic() + seconds
    while (left := marked_pids(marker)) and time.monotonic() < give_up:
        time.sleep(0.1)
    return left


def test_timeout_kills_the_whole_process_tree(confined: Bubblewrap, worktree: Path) -> None:
    marker = f"hq-sandbox-test-{uuid.uuid4().hex}"
    limits = Limits(timeout_seconds=5, cpu_seconds=60, memory_bytes=1024 * 1024 * 1024)
    seen: set[int] = set()
    results: list[SandboxResult] = []
    runner = threading.Thread(target=lambda: results.append(run(confined, worktree, SPAWN, marker, limits=limits)))
    runner.start()
    try:
        while runner.is_alive():  # the grandchild as the host sees it, while the command runs
            seen |= marked_pids(marker)
            time.sleep(0.05)
        runner.join()
        [result] = results
        assert result.timed_out
        assert result.exit_code == EXIT_TIMED_OUT
        assert not result.ok
        assert "started" in result.output  # output from before the kill is kept
        assert result.output.rstrip().endswith("killed")
        assert "timed out after 5 s" in result.output.splitlines()[-1]
        assert (worktree / "child.pid").read_text().isdigit()  # the grandchild did start
        assert wait_until_gone(marker) == set()
        assert seen, "the grandchild was never seen running (it should have been, for 5 s)"
    finally:
        for pid in marked_pids(marker):  # should it survive, do not leave it behind
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("kind", ["bwrap", "none"])
def test_a_command_that_closes_its_output_runs_to_its_end(
    kind: str, worktree: Path, request: pytest.FixtureRequest
) -> None:
    sandbox: Sandbox = request.getfixturevalue("confined") if kind == "bwrap" else Unconfined()
    code = "import os, time; print('bye', flush=True); os.close(1); os.close(2); time.sleep(1); open('done', 'w')"
    result = run(sandbox, worktree, code)
    assert (result.exit_code, result.timed_out) == (0, False)  # EOF is not the end: the exit is
    assert result.output == "bye\n"
    assert (worktree / "done").exists()


@pytest.mark.parametrize("kind", ["bwrap", "none"])
def test_a_cancelled_command_is_killed_with_its_tree_and_says_so(
    kind: str, worktree: Path, request: pytest.FixtureRequest
) -> None:
    """The run lost its issue (the lease keeper set the event): the command stops now, not at its timeout."""
    sandbox = request.getfixturevalue("confined") if kind == "bwrap" else Unconfined()
    marker = f"hq-sandbox-test-{uuid.uuid4().hex}"
    cancel = threading.Event()
    limits = Limits(timeout_seconds=600, cpu_seconds=60, memory_bytes=1024 * 1024 * 1024, cancel=cancel)
    results: list[SandboxResult] = []
    runner = threading.Thread(target=lambda: results.append(run(sandbox, worktree, SPAWN, marker, limits=limits)))
    runner.start()
    try:
        while not marked_pids(marker) and runner.is_alive():  # the grandchild is up: the tree is there to kill
            time.sleep(0.05)
        cancel.set()
        runner.join()
        [result] = results
        assert result.cancelled and not result.timed_out and not result.ok
        assert result.seconds < 600
        assert "no longer holds its issue" in result.output.splitlines()[-1]
        assert wait_until_gone(marker) == set()
    finally:
        for pid in marked_pids(marker):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("kind", ["bwrap", "none"])
def test_what_the_command_leaves_running_is_killed(kind: str, worktree: Path, request: pytest.FixtureRequest) -> None:
    """A background child holding stdout does not keep run() waiting, and does not outlive it."""
    sandbox: Sandbox = request.getfixturevalue("confined") if kind == "bwrap" else Unconfined()
    marker = f"hq-sandbox-test-{uuid.uuid4().hex}"
    try:
        script = f"{PY} -c 'import time; time.sleep(300)' {marker} & echo left"
        result = sandbox.run(["sh", "-c", script], workdir=worktree, limits=LIMITS)
        assert (result.exit_code, result.timed_out, result.output) == (0, False, "left\n")
        assert wait_until_gone(marker) == set()
    finally:
        for pid in marked_pids(marker):
            os.kill(pid, signal.SIGKILL)


# --- 5. private /tmp, PID namespace, read-only system, invisible data dir -----------------

LOOK_AROUND = """
import json, os, sys
data_dir, host_file, tmp_name = sys.argv[1:4]
with open(os.path.join("/tmp", tmp_name), "w") as handle:
    handle.write("private")
print(json.dumps({
    "pid": os.getpid(),
    "uid": os.getuid(),
    "pid1": open("/proc/1/cmdline", "rb").read().split(b"\\0")[0].decode(),
    "processes": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
    "data_dir_visible": os.path.exists(data_dir),
    "host_file_visible": os.path.exists(host_file),
    "cwd": os.getcwd(),
}))
"""


def test_private_tmp_new_pid_namespace_and_no_data_dir(confined: Bubblewrap, worktree: Path, tmp_path: Path) -> None:
    import json

    settings = Settings(data_dir=tmp_path / "var")
    (settings.data_path / "worktrees" / "issue-1").mkdir(parents=True)
    tmp_name = f"hq-sandbox-{uuid.uuid4().hex}"
    try:
        result = run(confined, worktree, LOOK_AROUND, str(settings.data_path), __file__, tmp_name)
        assert result.exit_code == 0, result.output
        seen = json.loads(result.output)
        assert not Path("/tmp", tmp_name).exists()  # /tmp inside is not the host's
    finally:
        Path("/tmp", tmp_name).unlink(missing_ok=True)
    assert seen["pid"] < 10  # a new PID namespace: the command is one of its first processes
    assert "bwrap" in seen["pid1"]  # pid 1 is the sandbox's init, not the host's
    assert len(seen["processes"]) < 10  # /proc shows the sandbox's processes only
    assert seen["uid"] != 0  # not root inside
    assert seen["data_dir_visible"] is False
    assert seen["host_file_visible"] is False  # nor HQ's own source tree
    assert seen["cwd"] == WORKSPACE


def test_system_is_read_only(confined: Bubblewrap, worktree: Path) -> None:
    marker = uuid.uuid4().hex
    targets = [f"/usr/hq-{marker}", f"/etc/hq-{marker}", f"/usr/bin/hq-{marker}", f"/dev/hq-{marker}"]
    try:
        result = run(confined, worktree, WRITE_EACH, *targets)
        assert result.output.count("REFUSED") == len(targets), result.output
        sysctl = run(
            confined, worktree, "open('/proc/sys/vm/swappiness', 'w').write(open('/proc/sys/vm/swappiness').read())"
        )
        assert sysctl.exit_code != 0  # /proc/sys is read-only although a root-mapped sandbox owns its files
        assert "Read-only file system" in sysctl.output
    finally:
        for target in targets:
            Path(target).unlink(missing_ok=True)


# --- 6. limits -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["bwrap", "none"])
def test_memory_limit(kind: str, worktree: Path, request: pytest.FixtureRequest) -> None:
    sandbox: Sandbox = request.getfixturevalue("confined") if kind == "bwrap" else Unconfined()
    limits = Limits(timeout_seconds=120, cpu_seconds=60, memory_bytes=256 * 1024 * 1024)
    fits = run(sandbox, worktree, "x = bytearray(32 * 1024 * 1024); print(len(x))", limits=limits)
    assert fits.exit_code == 0, fits.output
    too_much = run(sandbox, worktree, "x = bytearray(512 * 1024 * 1024); print('allocated')", limits=limits)
    assert too_much.exit_code != 0
    assert "MemoryError" in too_much.output
    assert "allocated" not in too_much.output


@pytest.mark.parametrize("kind", ["bwrap", "none"])
def test_cpu_limit_kills_a_busy_loop(kind: str, worktree: Path, request: pytest.FixtureRequest) -> None:
    sandbox: Sandbox = request.getfixturevalue("confined") if kind == "bwrap" else Unconfined()
    limits = Limits(timeout_seconds=120, cpu_seconds=1, memory_bytes=1024 * 1024 * 1024)
    result = run(sandbox, worktree, "while True: pass", limits=limits)
    assert not result.timed_out  # the CPU limit stopped it, long before the wall-clock timeout
    assert result.exit_code in (128 + signal.SIGXCPU, 128 + signal.SIGKILL), result
    assert not list(worktree.iterdir())  # and no core file


# --- 7. output ---------------------------------------------------------------------------


def test_output_keeps_a_bounded_tail(confined: Bubblewrap, worktree: Path) -> None:
    limits = Limits(timeout_seconds=120, cpu_seconds=60, memory_bytes=1024 * 1024 * 1024, output_bytes=1000)
    flood = "import sys\nfor _ in range(50): sys.stdout.write('x' * (1024 * 1024))\nprint('THE-END')"
    tracemalloc.start()
    try:
        result = run(confined, worktree, flood, limits=limits)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result.exit_code == 0
    assert len(result.output) <= 1000
    assert result.output.endswith("x" * 100 + "THE-END\n")
    assert peak < 1024 * 1024  # 50 MB went through in a buffer of a few kilobytes


def test_stdout_and_stderr_are_interleaved(confined: Bubblewrap, worktree: Path) -> None:
    code = "import sys\nfor i in range(3): print('out', i, flush=True); print('err', i, file=sys.stderr, flush=True)"
    result = run(confined, worktree, code)
    assert result.output.splitlines() == ["out 0", "err 0", "out 1", "err 1", "out 2", "err 2"]


def test_output_is_redacted(confined: Bubblewrap, worktree: Path) -> None:
    secret = "hq-sandbox-registered-" + uuid.uuid4().hex
    register_secrets(secret)
    shaped = "sk-ant-api03-" + "Z" * 30
    result = run(confined, worktree, "import sys; print('value', sys.argv[1], sys.argv[2])", secret, shaped)
    assert result.exit_code == 0
    assert secret not in result.output
    assert shaped not in result.output
    assert result.output.count("***") == 2

    # a secret right where the tail is cut is redacted whole, before the cut, so no piece of it shows
    limits = Limits(timeout_seconds=120, cpu_seconds=60, memory_bytes=1024 * 1024 * 1024, output_bytes=100)
    cut = run(confined, worktree, "import sys; print(sys.argv[1] + 'B' * 95)", secret, limits=limits)
    assert secret[-5:] not in cut.output
    assert cut.output.endswith("B" * 95 + "\n")


# --- 8. choosing and probing ----------------------------------------------------------------


def test_probe(confined: Bubblewrap) -> None:
    ok, line = probe(confined)
    assert ok, line
    assert line.startswith("bwrap ") and line.endswith(" works")
    ok, line = probe(Bubblewrap("/nonexistent/bwrap"))
    assert not ok
    assert line == "bwrap not found: apt-get install bubblewrap"
    ok, line = probe(Unconfined())
    assert ok
    assert "unconfined" in line


@needs_bwrap
def test_sandbox_for(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HQ_SANDBOX", "bwrap")
    assert isinstance(sandbox_for(Settings()), Bubblewrap)
    monkeypatch.setenv("PATH", str(tmp_path))  # bwrap is no longer on PATH
    with pytest.raises(SandboxUnavailable, match="bwrap") as refused:
        sandbox_for(Settings())
    assert "\n" not in refused.value.message
    assert "apt-get install bubblewrap" in refused.value.message
    monkeypatch.setenv("HQ_SANDBOX", "none")
    assert isinstance(sandbox_for(Settings()), Unconfined)


# --- 9. exit codes -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["bwrap", "none"])
def test_exit_codes(kind: str, worktree: Path, request: pytest.FixtureRequest) -> None:
    sandbox: Sandbox = request.getfixturevalue("confined") if kind == "bwrap" else Unconfined()
    missing = sandbox.run(["hq-no-such-command", "--flag"], workdir=worktree, limits=LIMITS)
    assert missing.exit_code == EXIT_CANNOT_START
    assert "hq-no-such-command" in missing.output
    assert missing.argv == ("hq-no-such-command", "--flag")
    assert missing.sandbox == kind
    assert not missing.ok

    assert sandbox.run(["sh", "-c", "exit 3"], workdir=worktree, limits=LIMITS).exit_code == 3
    killed = sandbox.run(["sh", "-c", "kill -TERM $$"], workdir=worktree, limits=LIMITS)
    assert killed.exit_code == 128 + signal.SIGTERM
    fine = sandbox.run(["true"], workdir=worktree, limits=LIMITS)
    assert fine.ok and fine.exit_code == 0 and fine.output == "" and not fine.timed_out

    nowhere = sandbox.run(["true"], workdir=worktree / "absent", limits=LIMITS)
    assert nowhere.exit_code == EXIT_CANNOT_START
    assert "does not exist" in nowhere.output


def test_missing_bwrap_exits_127(worktree: Path) -> None:
    result = Bubblewrap("/nonexistent/bwrap").run(["true"], workdir=worktree, limits=LIMITS)
    assert result.exit_code == EXIT_CANNOT_START
    assert "apt-get install bubblewrap" in result.output


@needs_bwrap
def test_python_runs_a_projects_tests(worktree: Path) -> None:
    """What project commands look like: the host's interpreter, its stdlib, a test module in the worktree."""
    (worktree / "test_thing.py").write_text(
        "import unittest\nclass T(unittest.TestCase):\n    def test_ok(self): pass\n"
    )
    result = Bubblewrap().run([PY, "-m", "unittest", "-q"], workdir=worktree, limits=LIMITS)
    assert result.exit_code == 0, result.output
    assert "Ran 1 test" in result.output
    assert sys.version.split()[0] in run(Bubblewrap(), worktree, "import sys; print(sys.version)").output


ECHO_CLIENT = """
import socket, sys
client = socket.socket(socket.AF_UNIX)
client.connect(sys.argv[1])
client.sendall(b"ping")
print("echo", client.recv(100).decode())
"""


@needs_bwrap
@pytest.mark.skipif(os.geteuid() != 0, reason="a uid of the run's own is how root is capped")
def test_as_a_uid_of_its_own_a_run_connects_to_a_private_socket_mounted_writable(tmp_path: Path) -> None:
    """HQ serves sockets (the model gateway, MCP) 0600 in its private data dir: a run as a uid of its own
    (HQ_SANDBOX_PROCESS_CAP=rlimit as root) still connects, and the socket is HQ's again after the run."""
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    path = private / "echo.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    os.chmod(path, 0o600)
    server.listen(4)
    server.settimeout(60)

    def serve() -> None:
        with contextlib.suppress(OSError):
            connection, _ = server.accept()
            with connection:
                connection.sendall(connection.recv(100))

    thread = threading.Thread(target=serve)
    thread.start()
    worktree = tmp_path / "work"
    worktree.mkdir()
    (worktree / "client.py").write_text(ECHO_CLIENT)
    sandbox = Bubblewrap(cap=process_cap("rlimit"))
    try:
        result = sandbox.run(
            ["python3", "client.py", "/run/hq/echo.sock"],
            workdir=worktree,
            limits=LIMITS,
            mounts=[Mount(path, "/run/hq/echo.sock", writable=True)],
        )
    finally:
        server.close()
        thread.join()
    assert result.ok and "echo ping" in result.output, result
    info = path.lstat()
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (os.geteuid(), os.getegid(), 0o600)
    assert {p.lstat().st_uid for p in [worktree, *worktree.rglob("*")]} == {os.geteuid()}
