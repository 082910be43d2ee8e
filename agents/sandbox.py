"""The one way HQ runs a project's command: in a bubblewrap sandbox, with limits, a timeout and no secrets.

Why. A project's commands (``.hq/project.yaml``: tests, build, deploy) run in an issue's git worktree,
and everything in that worktree was written by an AI agent: it is hostile. ``python3 -m unittest``
imports whatever ``test_*.py`` the agent wrote, so "running the tests" means running the agent's code
on the host. The sandbox keeps that code from reading HQ's secrets, the database files or other
issues' worktrees under the data dir, from writing anywhere but its own worktree, from reaching the
network (PostgreSQL on loopback included) and from outliving its timeout.

``Bubblewrap`` (``HQ_SANDBOX=bwrap``, the default) builds a new root from scratch:

* read-only: ``/usr``, the merged-usr links (``/bin``, ``/lib``, ...; bound when a real directory),
  ``/usr/local``, the tree of the interpreter HQ runs on (``sys.base_prefix``, at its own path, so
  ``python3`` works with its standard library and its own site-packages, not HQ's virtualenv), and
  a short allow-list of ``/etc`` (``ETC_ALLOWED``: name service, dynamic linker, time zone,
  certificates, alternatives, ...). Never the host's ``/``: not ``/etc/shadow``, ``/etc/ssh``,
  ``pip.conf`` or ``.npmrc`` (tokens), not ``/root`` or ``/home``, not ``/var``, not the data dir.
* writable: the worktree, at ``/workspace`` (the same path on every host, and one that tells nothing
  about the host's layout: no data dir, no issue numbers); a private ``/tmp`` and ``/dev/shm``, tmpfs
  of at most ``memory_bytes`` each. The new root itself and ``/dev`` are remounted read-only.
* a minimal ``/dev``, a new ``/proc`` for a new PID namespace with ``/proc/sys`` read-only, and new
  network (loopback only, not the host's), IPC, UTS, cgroup and user namespaces; no further user
  namespaces inside (``--disable-userns``); every capability dropped; a new session (no TIOCSTI on a
  terminal); killed if HQ dies (``--die-with-parent``).
* an environment built from nothing (``--clearenv``): PATH, HOME=/tmp, TMPDIR=/tmp, LANG=C.UTF-8,
  plus what the caller adds. Nothing of HQ's environment passes, so no key, token or DATABASE_URL can;
  nor does any of HQ's file descriptors (database connections): stdin is /dev/null, stdout and stderr
  one pipe.
* uid/gid 65534 (nobody) inside, mapped to HQ's own uid outside, so files the command writes in the
  worktree belong to HQ's user on the host, and tools that refuse to run as root (PostgreSQL) run.

Limits: ``RLIMIT_CPU`` (SIGXCPU at ``cpu_seconds``, SIGKILL a second later), ``RLIMIT_AS``
(``memory_bytes`` of address space) and no core files, set by util-linux ``prlimit`` in front of the
sandbox and inherited by every process in it; the wall-clock timeout SIGKILLs the process group,
and because bubblewrap's init is PID 1 of the sandbox's PID namespace, its death takes every process
in the sandbox with it, however deep or detached. Output is read as it comes into a bounded tail
(a command printing gigabytes costs a few times ``output_bytes`` of memory), then redacted.

What the sandbox does NOT protect against:

* kernel bugs: namespaces share one kernel; there is no seccomp filter.
* exhaustion beyond the limits: the limits are per process (a fork bomb of busy processes each gets
  its own CPU seconds and address space, and the process count is not limited: RLIMIT_NPROC does
  not bind processes of root, which a sandbox started by root is outside) until the timeout;
  disk fill in the worktree (it is on the host's disk); tmpfs sized per mount, not in total.
* uid mapping: the command's files are HQ's user's. When HQ runs as root, the command is root without
  capabilities: read-only mounts and the allow-lists above are what keep it in, and it can read
  root-only files in the bound system trees. Run HQ as an ordinary user where you can.
* timing and other side channels, and what the command prints: its output is data for a model and a
  person, redacted of known secrets, never executed by HQ.
* git: the worktree's ``.git`` points into the repository outside the sandbox, which is not mounted,
  so git commands inside see no repository (by design: the command cannot rewrite refs or hooks).
* ``Unconfined`` (``HQ_SANDBOX=none``): the same limits, cleared environment and process-group kill,
  but no filesystem, network, PID or user isolation at all: the command runs as HQ's user, can read
  everything HQ can (the data dir included), reach the network, and escape the kill with ``setsid``.
  For development on hosts without bubblewrap only.
"""

from __future__ import annotations

import contextlib
import os
import resource
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Protocol

from config.errors import HQError
from config.log import get_logger
from config.secrets import redact
from config.settings import Settings

log = get_logger(__name__)

WORKSPACE = "/workspace"
"""Where the worktree appears inside the bubblewrap sandbox (and the command's working directory)."""

SANDBOX_UID = 65534
"""nobody/nogroup inside the sandbox; the user namespace maps it to HQ's own uid and gid outside."""

HOSTNAME = "hq-sandbox"
EXIT_TIMED_OUT = 124
EXIT_NOT_EXECUTABLE = 126
EXIT_CANNOT_START = 127
INSTALL_HINT = "apt-get install bubblewrap"

SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
MERGED_USR = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
"""Symlinks into /usr on merged-usr systems (recreated as such), real directories elsewhere (bound)."""

ETC_ALLOWED = (
    # users, groups and name service: getpwuid(), `id`, localhost
    "passwd",
    "group",
    "nsswitch.conf",
    "hosts",
    "host.conf",
    "gai.conf",
    "protocols",
    "services",
    "networks",
    # the dynamic linker: without ld.so.cache libraries in multiarch directories are not found
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    # Debian's alternatives (awk, java, editor, ...), time, locale, file types, terminals
    "alternatives",
    "localtime",
    "timezone",
    "locale.alias",
    "mime.types",
    "magic",
    "magic.mime",
    "terminfo",
    "shells",
    "os-release",
    "debian_version",
    "lsb-release",
    # public certificates and OpenSSL's configuration (never /etc/ssl/private)
    "ssl/certs",
    "ssl/openssl.cnf",
    "ca-certificates",
    "ca-certificates.conf",
    # language runtimes' system configuration
    "python3",
    f"python3.{sys.version_info.minor}",
    "perl",
    "java-*",
    "fonts",
    "xml",
    "sgml",
)
"""What of /etc the sandbox sees: what programs need to start, nothing that holds a secret or a host's
identity (shadow, ssh host keys, ssl/private, pip.conf and .npmrc tokens, gitconfig, machine-id, resolv.conf)."""

READ_CHUNK = 65536
REDACTION_MARGIN = 4096
"""Raw bytes kept before the tail, so a secret cut by the tail's edge is still whole when redacted."""

EXIT_DRAIN_SECONDS = 2.0
"""After the command exits: how long output still in flight is read before the pipe is closed."""

KILL_DRAIN_SECONDS = 2.0
"""After the process tree is killed: how long the pipe is read for its last bytes before it is closed."""

TICK_SECONDS = 0.1


class SandboxUnavailable(HQError):
    """The configured sandbox cannot run on this host (bubblewrap not installed)."""


@dataclass(frozen=True)
class Limits:
    timeout_seconds: float  # wall clock; on expiry the whole process tree is killed
    cpu_seconds: int  # RLIMIT_CPU
    memory_bytes: int  # RLIMIT_AS
    output_bytes: int = 8000  # how much of the combined stdout+stderr tail is kept

    def __post_init__(self) -> None:
        if not self.timeout_seconds > 0:
            raise ValueError("timeout_seconds must be positive")
        if self.cpu_seconds < 1 or self.memory_bytes < 1 or self.output_bytes < 0:
            raise ValueError("cpu_seconds and memory_bytes must be positive, output_bytes not negative")


@dataclass(frozen=True)
class SandboxResult:
    argv: tuple[str, ...]  # the command as given (not the bwrap wrapper)
    exit_code: int  # the command's; 124 timed out; 126 not executable; 127 could not start; 128+N signal N
    seconds: float
    output: str  # the redacted tail of stdout+stderr, interleaved
    timed_out: bool
    sandbox: str  # "bwrap" or "none"

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


@dataclass(frozen=True)
class Mount:
    """A host path the caller shows inside the sandbox at ``target``: a program HQ trusts, or a socket HQ serves.

    Read-only unless ``writable`` (connecting to a Unix socket needs a writable mount).
    Never a path an agent chose: the sandbox is only as tight as what is mounted into it.
    """

    source: Path
    target: str
    writable: bool = False


class Sandbox(Protocol):
    name: str

    def run(
        self,
        argv: Sequence[str],
        *,
        workdir: Path,
        limits: Limits,
        env: Mapping[str, str] | None = None,
        mounts: Sequence[Mount] = (),
    ) -> SandboxResult: ...


class Bubblewrap:
    """Commands in a bubblewrap sandbox: see the module docstring for what it binds and why."""

    name = "bwrap"

    def __init__(self, executable: str | None = None) -> None:
        self.executable = executable or shutil.which("bwrap") or "bwrap"
        self.interpreter = Path(sys.base_prefix).resolve()

    def run(
        self,
        argv: Sequence[str],
        *,
        workdir: Path,
        limits: Limits,
        env: Mapping[str, str] | None = None,
        mounts: Sequence[Mount] = (),
    ) -> SandboxResult:
        command = tuple(argv)
        problem = _refusal(command, workdir, env) or _mount_refusal(mounts)
        if problem is None and shutil.which(self.executable) is None:
            problem = f"bwrap not found ({self.executable}): {INSTALL_HINT}"
        if problem:
            return _not_started(command, self.name, problem)
        environment = {**base_environment(self.interpreter), "PWD": WORKSPACE, **(env or {})}
        limiter, preexec = _limiter(limits)
        # The environment reaches bwrap through a file descriptor (``--args``), not its command line,
        # which every user of the host can read in /proc: a run's gateway token is in it.
        with tempfile.TemporaryFile(prefix="hq-sandbox-env-") as settings:
            settings.write(b"".join(f"--setenv\0{name}\0{value}\0".encode() for name, value in environment.items()))
            settings.flush()
            settings.seek(0)
            descriptor = settings.fileno()
            wrapper = [*limiter, self.executable, *self.arguments(workdir, limits, mounts), "--args", str(descriptor)]
            # `exec "$@"` in the sandbox's own sh: a missing command exits 127 and an unexecutable one 126,
            # with the shell's message, where bwrap itself would exit 1 like any failing command.
            wrapper += ["--", "/bin/sh", "-c", 'exec "$@"', "sh", *command]
            return _execute(
                wrapper, command, self.name, limits=limits, cwd=None, env=None, preexec=preexec, keep=(descriptor,)
            )

    def arguments(self, workdir: Path, limits: Limits, mounts: Sequence[Mount] = ()) -> list[str]:
        """bwrap's options for one run, up to the environment (given with ``--args``), ``--`` and the command."""
        options = ["--unshare-all", "--unshare-user"]
        if _supports(self.executable, "--disable-userns"):
            options.append("--disable-userns")
        options += ["--die-with-parent", "--new-session", "--cap-drop", "ALL", "--hostname", HOSTNAME]
        options += ["--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID)]
        options += _system_mounts(self.interpreter)
        size = ["--size", str(limits.memory_bytes)] if _supports(self.executable, "--size") else []  # bwrap 0.7+
        options += ["--dev", "/dev", *size, "--tmpfs", "/dev/shm"]
        # /proc/sys read-only: its files are owner-writable, and a sandbox mapped to host root is their owner.
        options += ["--proc", "/proc", "--ro-bind", "/proc/sys", "/proc/sys"]
        options += ["--ro-bind-try", "/proc/sysrq-trigger", "/proc/sysrq-trigger"]
        options += [*size, "--tmpfs", "/tmp"]
        options += ["--bind", str(workdir.resolve()), WORKSPACE, "--chdir", WORKSPACE]
        for mount in mounts:
            options += ["--bind" if mount.writable else "--ro-bind", str(mount.source), mount.target]
        options += ["--remount-ro", "/", "--remount-ro", "/dev"]
        options.append("--clearenv")  # what the sandbox's environment holds is set after it, and only that
        return options

    def version(self) -> str | None:
        return _version(self.executable)


class Unconfined:
    """Commands as plain processes of HQ's user: the same limits and cleared environment, no isolation."""

    name = "none"

    def __init__(self) -> None:
        self.interpreter = Path(sys.base_prefix).resolve()

    def run(
        self,
        argv: Sequence[str],
        *,
        workdir: Path,
        limits: Limits,
        env: Mapping[str, str] | None = None,
        mounts: Sequence[Mount] = (),
    ) -> SandboxResult:
        command = tuple(argv)
        problem = _refusal(command, workdir, env)
        if problem is None and mounts:
            problem = "sandbox 'none' cannot mount anything: this needs HQ_SANDBOX=bwrap"
        if problem:
            return _not_started(command, self.name, problem)
        limiter, preexec = _limiter(limits)
        # HOME and TMPDIR of this run only, removed after it
        with tempfile.TemporaryDirectory(prefix="hq-unconfined-", ignore_cleanup_errors=True) as home:
            environment = {**base_environment(self.interpreter), "HOME": home, "TMPDIR": home, "PWD": str(workdir)}
            environment.update(env or {})
            return _execute(
                [*limiter, *command], command, self.name, limits=limits, cwd=workdir, env=environment, preexec=preexec
            )


def base_environment(interpreter: Path) -> dict[str, str]:
    """The sandbox's whole environment before the caller's additions: no variable of HQ's own passes."""
    return {
        "PATH": f"{interpreter / 'bin'}:{SYSTEM_PATH}",
        "HOME": "/tmp",
        "TMPDIR": "/tmp",
        "LANG": "C.UTF-8",
    }


def sandbox_for(settings: Settings) -> Sandbox:
    """The sandbox ``HQ_SANDBOX`` names; SandboxUnavailable when it is bwrap and bwrap is not installed."""
    if settings.sandbox == "none":  # warned about once, when `hq run` starts (scheduler/company.py)
        return Unconfined()
    executable = shutil.which("bwrap")
    if executable is None:
        raise SandboxUnavailable(f"HQ_SANDBOX=bwrap but bwrap is not on PATH: {INSTALL_HINT} (`make sandbox-deps`)")
    return Bubblewrap(executable)


def limits_for(settings: Settings, timeout_seconds: float) -> Limits:
    return Limits(
        timeout_seconds=timeout_seconds,
        cpu_seconds=settings.sandbox_cpu_seconds,
        memory_bytes=settings.sandbox_memory_mb * 1024 * 1024,
    )


def probe(sandbox: Sandbox) -> tuple[bool, str]:
    """Run ``true`` in the sandbox: (whether it works, one line saying so or why not)."""
    if isinstance(sandbox, Bubblewrap):
        version = sandbox.version()
        if version is None:
            return False, f"bwrap not found: {INSTALL_HINT}"
        label = f"bwrap {version}"
    else:
        label = f"sandbox {sandbox.name!r}"
    limits = Limits(timeout_seconds=30, cpu_seconds=10, memory_bytes=256 * 1024 * 1024, output_bytes=2000)
    with tempfile.TemporaryDirectory(prefix="hq-probe-") as scratch:
        result = sandbox.run(["true"], workdir=Path(scratch), limits=limits)
    if not result.ok:
        lines = [line for line in result.output.splitlines() if line.strip()]
        why = lines[-1].strip() if lines else f"exit {result.exit_code}"
        return False, f"{label} cannot run a command: {why}"
    if isinstance(sandbox, Unconfined):
        return True, "sandbox 'none' works: commands run unconfined (no filesystem, network or process isolation)"
    return True, f"{label} works"


# --- running ------------------------------------------------------------------------


def _refusal(command: tuple[str, ...], workdir: Path, env: Mapping[str, str] | None) -> str | None:
    """Why the command cannot start at all (None: it can)."""
    if not command or not command[0]:
        return "no command given"
    if any("\0" in part for part in command):
        return "the command contains a NUL byte"
    for name, value in (env or {}).items():
        if not name or "=" in name or "\0" in name or "\0" in value:
            return f"invalid environment variable name or value: {name!r}"
    if not workdir.is_dir():
        return f"the working directory {workdir} does not exist"
    return None


def _mount_refusal(mounts: Sequence[Mount]) -> str | None:
    """Why a mount cannot be made as asked (None: each can)."""
    for mount in mounts:
        if not mount.target.startswith("/") or mount.target == "/" or ".." in mount.target.split("/"):
            return f"a mount target must be an absolute path below /: {mount.target!r}"
        if mount.target == WORKSPACE or mount.target.startswith(WORKSPACE + "/"):
            return f"nothing may be mounted over the workspace: {mount.target!r}"
        if not mount.source.exists():
            return f"the mount source {mount.source} does not exist"
    return None


def _not_started(command: tuple[str, ...], sandbox: str, why: str) -> SandboxResult:
    log.warning("sandbox.not_started", sandbox=sandbox, argv=list(command), why=why)
    return SandboxResult(command, EXIT_CANNOT_START, 0.0, redact(f"could not start: {why}"), False, sandbox)


def _limiter(limits: Limits) -> tuple[list[str], Callable[[], None] | None]:
    """The ``prlimit ... --`` prefix that sets the limits, or (no prlimit binary) a preexec_fn that does."""
    prlimit = shutil.which("prlimit") or ("/usr/bin/prlimit" if os.access("/usr/bin/prlimit", os.X_OK) else None)
    cpu, memory = limits.cpu_seconds, limits.memory_bytes
    if prlimit:
        return [prlimit, f"--cpu={cpu}:{cpu + 1}", f"--as={memory}", "--core=0", "--"], None

    # Fallback only: preexec_fn runs Python between fork and exec, which is unsafe in a multi-threaded
    # process (HQ has scheduler and LISTEN threads: a lock held by another thread at fork stays held).
    # setrlimit is a plain system call, the least that can go wrong there.
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return [], apply


def _execute(
    wrapper: list[str],
    command: tuple[str, ...],
    sandbox: str,
    *,
    limits: Limits,
    cwd: Path | None,
    env: Mapping[str, str] | None,
    preexec: Callable[[], None] | None,
    keep: tuple[int, ...] = (),
) -> SandboxResult:
    """Start ``wrapper`` in its own process group, keep the tail of its output, kill the group at the end.

    ``keep``: file descriptors the wrapper inherits (every other one of HQ's is closed in it).
    """
    started = time.monotonic()
    try:
        process = subprocess.Popen(
            wrapper,
            cwd=cwd,
            env=dict(env) if env is not None else {},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            process_group=0,
            preexec_fn=preexec,  # None unless prlimit is missing (see _limiter)
            pass_fds=keep,
        )
    except OSError as error:
        code = EXIT_NOT_EXECUTABLE if isinstance(error, PermissionError) else EXIT_CANNOT_START
        missing = Path(error.filename).name if isinstance(error.filename, str) else wrapper[0]
        why = f"could not start {missing}: {error.strerror or error}"
        if sandbox == "bwrap" and missing == "bwrap":
            why += f" ({INSTALL_HINT})"
        log.warning("sandbox.not_started", sandbox=sandbox, argv=list(command), why=why)
        return SandboxResult(command, code, time.monotonic() - started, redact(why), False, sandbox)

    tail = _Tail(limits.output_bytes)
    assert process.stdout is not None
    timed_out = _collect(process, tail, started + limits.timeout_seconds)
    returncode = process.wait()
    seconds = time.monotonic() - started
    output = tail.text()
    if timed_out:
        code = EXIT_TIMED_OUT
        output += f"\n[sandbox] timed out after {limits.timeout_seconds:g} s: the command and its processes were killed"
    else:
        code = 128 - returncode if returncode < 0 else returncode
    log.debug("sandbox.ran", sandbox=sandbox, argv=list(command), exit_code=code, seconds=round(seconds, 3))
    return SandboxResult(command, code, seconds, output, timed_out, sandbox)


def _collect(process: subprocess.Popen[bytes], tail: _Tail, deadline: float) -> bool:
    """Read output until the command has exited and its output ended, or the deadline; then kill the
    process group (what the command left running; on timeout, the command itself). True if timed out.

    EOF alone is not the end (a command may close its output and go on working), nor is the exit (a
    background child may still hold the pipe: it gets EXIT_DRAIN_SECONDS, then the kill).
    """
    assert process.stdout is not None
    pipe = process.stdout
    fd = pipe.fileno()
    os.set_blocking(fd, False)
    pidfd = _pidfd(process.pid)  # readable once the command exits: no polling, where the kernel has it
    tick = None if pidfd is not None else TICK_SECONDS
    timed_out = eof = False
    exited_at: float | None = None
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        if pidfd is not None:
            selector.register(pidfd, selectors.EVENT_READ)
        while True:
            now = time.monotonic()
            if exited_at is None and _exited(process.pid):
                exited_at = now
                if pidfd is not None:
                    selector.unregister(pidfd)  # it stays readable from now on
            if eof and exited_at is not None:
                break
            limit = deadline if exited_at is None else min(deadline, exited_at + EXIT_DRAIN_SECONDS)
            if now >= limit:
                timed_out = exited_at is None
                break
            wait = limit - now if tick is None else min(limit - now, tick)
            for key, _events in selector.select(wait):
                if key.fd == fd and not _read(fd, tail):
                    eof = True  # every writer is gone; the command may still run
                    selector.unregister(fd)
        _kill_group(process.pid)
        if pidfd is not None and pidfd in selector.get_map():
            selector.unregister(pidfd)
        if not eof:  # the last bytes, unless a process outside the group (unconfined: setsid) holds the pipe
            grace = time.monotonic() + KILL_DRAIN_SECONDS
            while (remaining := grace - time.monotonic()) > 0:
                if selector.select(min(remaining, TICK_SECONDS)) and not _read(fd, tail):
                    break
    if pidfd is not None:
        os.close(pidfd)
    pipe.close()  # stop reading, whoever may still hold the other end
    return timed_out


def _pidfd(pid: int) -> int | None:
    opener = getattr(os, "pidfd_open", None)  # Linux 5.3+
    if opener is None:
        return None
    try:
        fd: int = opener(pid)
    except OSError:
        return None
    return fd


def _read(fd: int, tail: _Tail) -> bool:
    """One read into the tail; False at EOF."""
    try:
        chunk = os.read(fd, READ_CHUNK)
    except BlockingIOError:
        return True
    if not chunk:
        return False
    tail.add(chunk)
    return True


def _exited(pid: int) -> bool:
    """Whether the process has exited, without reaping it: its pid stays its group's until wait()."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # the group is already empty
        os.killpg(pgid, signal.SIGKILL)


class _Tail:
    """The last bytes of a stream, in at most ~2x the room they need however much arrives."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.room = keep + REDACTION_MARGIN
        self.buffer = bytearray()
        self.total = 0

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        self.buffer += chunk
        if len(self.buffer) > 2 * self.room:
            del self.buffer[: -self.room]

    def text(self) -> str:
        """The redacted tail, at most ``keep`` characters: redacted before it is cut, so no secret is split."""
        raw = bytes(self.buffer[-self.room :])
        if self.total > len(raw):  # cut mid-stream: drop a partial UTF-8 sequence at the start
            raw = raw[next((i for i, byte in enumerate(raw[:4]) if byte & 0xC0 != 0x80), 0) :]
        text = redact(raw.decode("utf-8", errors="replace"))
        return text[-self.keep :] if self.keep else ""


def _system_mounts(interpreter: Path) -> list[str]:
    """Read-only binds of the system trees and the /etc allow-list, for what exists on this host."""
    options = ["--ro-bind", "/usr", "/usr"]
    for top in MERGED_USR:
        path = Path(top)
        if path.is_symlink():
            options += ["--symlink", os.readlink(path), top]
        elif path.is_dir():
            options += ["--ro-bind", top, top]
    options += ["--ro-bind-try", "/usr/local", "/usr/local"]
    if not interpreter.is_relative_to("/usr") and interpreter != Path("/"):
        options += ["--ro-bind", str(interpreter), str(interpreter)]
    for entry in _etc_entries():
        if entry.is_symlink():
            options += ["--symlink", os.readlink(entry), str(entry)]
        else:
            options += ["--ro-bind", str(entry), str(entry)]
    return options


@cache
def _etc_entries() -> tuple[Path, ...]:
    etc = Path("/etc")
    found: list[Path] = []
    for pattern in ETC_ALLOWED:
        found += sorted(etc.glob(pattern)) if "*" in pattern else [etc / pattern]
    return tuple(path for path in found if path.is_symlink() or path.exists())


@cache
def _version(executable: str) -> str | None:
    """``0.8.0`` from ``bwrap --version``, or None when bwrap cannot be run."""
    try:
        completed = subprocess.run([executable, "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    words = completed.stdout.split()
    return words[-1] if completed.returncode == 0 and words else None


@cache
def _supports(executable: str, option: str) -> bool:
    try:
        completed = subprocess.run([executable, "--help"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return option in completed.stdout + completed.stderr
