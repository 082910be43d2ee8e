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
  ``python3`` works with its standard library, never HQ's virtualenv), and
  a short allow-list of ``/etc`` (``ETC_ALLOWED``: name service, dynamic linker, time zone,
  certificates, alternatives, ...). Never the host's ``/``: not ``/etc/shadow``, ``/etc/ssh``,
  ``pip.conf`` or ``.npmrc`` (tokens), not ``/root`` or ``/home``, not ``/var``, not the data dir.
* hidden inside those trees, by rule (credential_masks): configuration that carries credentials,
  found by name (``CREDENTIAL_NAMES``: npmrc, pip.conf, gitconfig, .git-credentials, netrc, pypirc,
  credentials*, boto, kubeconfig, private keys, ...; ``CREDENTIAL_DIRS``: aws, gcloud, azure, docker,
  kube, ssh, gnupg, private, ...) in each bound tree's top level, its ``etc`` (four levels deep) and
  npm's own directory: a file reads as empty, a directory as an empty read-only tmpfs. Scanned once,
  kept while none of the scanned directories changes.
* hidden too: what was installed into those interpreters globally (their ``site-packages`` and
  ``dist-packages``, GLOBAL_PACKAGES), so a test imports the worktree's code and the project's own
  environment (``/env``, projects/repo/environment.py), never a copy of the project installed on the
  host: that made a broken base pass.
* writable: the worktree, at ``/workspace`` (the same path on every host, and one that tells nothing
  about the host's layout: no data dir, no issue numbers); a private ``/tmp`` and ``/dev/shm``, tmpfs
  of at most ``memory_bytes`` each. The new root itself and ``/dev`` are remounted read-only.
* a minimal ``/dev``, a new ``/proc`` for a new PID namespace with ``/proc/sys`` read-only, and new
  network (loopback only, not the host's; only an environment's setup gets the host's, with
  ``/etc/resolv.conf`` and the registries' configuration, NETWORK_ETC), IPC, UTS, cgroup and user
  namespaces; no further user namespaces inside (``--disable-userns``); every capability dropped; a
  new session (no TIOCSTI on a terminal); killed if HQ dies (``--die-with-parent``).
* an environment built from nothing (``--clearenv``): PATH, HOME=/tmp, TMPDIR=/tmp, LANG=C.UTF-8,
  plus what the caller adds. Nothing of HQ's environment passes, so no key, token or DATABASE_URL can;
  nor does any of HQ's file descriptors (database connections): stdin is /dev/null, stdout and stderr
  one pipe.
* bubblewrap's command line holds no option: every mount and variable reaches it through a file
  descriptor (``--args``). Its command line is what the sandbox sees as ``/proc/1/cmdline``; it reads
  ``bwrap --args N -- /bin/sh -c exec "$@" sh <the project's command>``, nothing of the host.
* uid/gid 65534 (nobody) inside, mapped to HQ's own uid outside, so files the command writes in the
  worktree belong to HQ's user on the host, and tools that refuse to run as root (PostgreSQL) run.

Limits: ``RLIMIT_CPU`` (SIGXCPU at ``cpu_seconds``, SIGKILL a second later), ``RLIMIT_AS``
(``memory_bytes`` of address space) and no core files, set by util-linux ``prlimit`` in front of the
sandbox and inherited by every process in it; the wall-clock timeout SIGKILLs the process group,
and because bubblewrap's init is PID 1 of the sandbox's PID namespace, its death takes every process
in the sandbox with it, however deep or detached. Output is read as it comes into a bounded tail
(a command printing gigabytes costs a few times ``output_bytes`` of memory), then redacted.

Processes (``Limits.processes``, ``HQ_SANDBOX_MAX_PROCESSES``, threads included) are capped per run
by the first of these that the host offers (process_cap(), found once; ``hq config check`` says which):

* a pids cgroup of the run's own (``hq-sandbox-<pid>-<random>``), made under HQ's own cgroup or the
  hierarchy's root, of cgroup v2 where the pids controller is delegated there (``pids`` in its
  ``cgroup.subtree_control`` and writable), else of cgroup v1's pids hierarchy where writable (root,
  usually). The command is moved in by a shell before it execs prlimit and bwrap, so nothing forks
  outside it; at the cap ``fork`` fails with EAGAIN. After the run every process left in it is killed
  and waited for, and the cgroup removed: no process of the run survives it, the Unconfined one included.
* else, when HQ is not root, ``RLIMIT_NPROC``: the kernel counts it per user, so the cap is shared
  with every other process of HQ's user (HQ's own threads and concurrent runs), a coarse backstop.
* else, when HQ is root, ``RLIMIT_NPROC`` under a uid of the run's own (RLIMIT_NPROC does not bind uid
  0): one of ``HQ_SANDBOX_UID_BASE`` .. +``HQ_SANDBOX_UID_COUNT`` (61000-61063; uid = gid; no account may
  use them), held by one run at a time (an abstract Unix socket named after it, released by the kernel
  if HQ dies), so runs never share a count. An outer bubblewrap, as root, builds the root as above
  (root reaches the private data dir's worktree and sockets), with new PID, network, IPC and UTS
  namespaces; in it ``setpriv`` becomes the uid (no new privileges, no groups), ``prlimit`` sets
  RLIMIT_NPROC, and an inner bubblewrap, as the uid, makes the user namespace (uid 65534 inside, no
  further ones). Before the run the worktree is chowned to the uid and each writable socket mount
  (HQ's 0600 gateway and MCP sockets) too; after it every process of the uid is SIGKILLed (``kill -1``
  as the uid, until none is left: proof that the run is over, even without a cgroup) and tame_tree
  gives every entry back to HQ's user before any git runs. HQ never runs git as the uid. Only where
  unprivileged user namespaces work (``auto`` tries once); ``HQ_SANDBOX_PROCESS_CAP`` forces a choice.
* else nothing caps processes (``hq config check`` warns), or ``HQ_SANDBOX_PROCESS_CAP=none``.

After every run, its processes gone, the worktree is walked (tame_tree: no symlink followed, opened
relative to its parent with O_NOFOLLOW): setuid and setgid bits and file capabilities are removed,
device nodes, FIFOs and sockets deleted, so nothing the command made can be run as HQ's user by
anyone else. The data dir is 0700 (config/datadir.py), so nobody else can reach the worktrees anyway.

What the sandbox does NOT protect against:

* kernel bugs: namespaces share one kernel; there is no seccomp filter.
* exhaustion beyond the limits: CPU time and address space are per process (a capped number of busy
  processes each gets its own) until the timeout; no cap on processes where the host offers neither a
  writable pids cgroup nor RLIMIT_NPROC that binds (above); disk fill in the worktree (it is on the host's disk);
  tmpfs sized per mount, not in total.
* uid mapping: the command's files are HQ's user's. When HQ runs as root, the command is root without
  capabilities: read-only mounts and the allow-lists above are what keep it in, and it can read
  root-only files in the bound system trees that the credential rule does not name. (Under a uid of the
  run's own it is that unprivileged uid instead, and reads only what "others" may.)
* a uid of the run's own costs a chown of the whole worktree before each command (one system call per
  entry; the walk after it already visits each) and a ``kill`` process after it; its ``/proc/sys`` is
  not remounted read-only (the uid owns none of it), and ``/proc`` is the outer sandbox's, so
  ``/proc/1/cmdline`` reads ``bwrap --args N -- setpriv ... bwrap --args M -- ...``: no host path.
  Sandbox ``none`` cannot use it (a uid cannot reach the private worktree unconfined): no cap there.
* what the sandbox can still see of the host: ``/proc/self/mountinfo`` lists every mount with its
  source's path within its filesystem (the worktree's under the data dir, the interpreter tree's,
  the hidden credential files' names); the interpreter tree is at its host path; the kernel's version
  and the host's CPU and memory in /proc. Only the command line is kept clean.
* with RLIMIT_NPROC under HQ's own uid (not root), a command killed at its timeout may leave processes
  the kernel has not yet reaped when the worktree is walked (a cgroup, or a uid of the run's own, is
  what proves the run empty first).
* timing and other side channels, and what the command prints: its output is data for a model and a
  person, redacted of known secrets, never executed by HQ.
* git: the worktree's ``.git`` points into the repository outside the sandbox, which is not mounted,
  so git commands inside see no repository (by design: the command cannot rewrite refs or hooks).
  A command may rewrite ``.git`` to plant a repository of its own: HQ never runs git through it
  (every call names the git dir HQ made), removes every worktree when its run ends, and quarantines
  one whose ``.git`` was redirected (projects/repo/repository.py).
* ``Unconfined`` (``HQ_SANDBOX=none``): the same limits, process cap, post-run walk, cleared environment
  and process-group kill, but no filesystem, network, PID or user isolation at all: the command runs
  as HQ's user, can read everything HQ can (the data dir included), reach the network, and escape the
  kill with ``setsid`` (unless a pids cgroup holds the run). For development on hosts without
  bubblewrap only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import grp
import os
import pwd
import resource
import selectors
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import IO, Literal, Protocol

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
EXIT_UNSAFE_TREE = 125  # what the command left could not be made safe for the host (sandbox.judged)
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

NETWORK_ETC = ("resolv.conf", "pip.conf", "pip", "npmrc", "yarnrc", "gemrc")
"""What of /etc a run with the network sees besides ETC_ALLOWED: an environment's setup reaches the
package registries as the host is configured to (tokens included: setup is the project's own command,
run from its base branch, and it is what installs the dependencies)."""

GLOBAL_PACKAGES = ("lib/python3*/site-packages", "lib/python3*/dist-packages", "lib/python3/dist-packages")
"""Where an interpreter keeps what was installed into it globally, under each bound tree: hidden, so a
command imports the worktree's code and the project's environment, never a copy installed on the host."""

CREDENTIAL_NAMES = (
    # package managers: npm, yarn, pip, twine, gem, cargo, composer, maven, gradle
    "npmrc",
    ".npmrc",
    "yarnrc",
    ".yarnrc",
    ".yarnrc.yml",
    "pip.conf",
    "pip.ini",
    "pypirc",
    ".pypirc",
    "gemrc",
    ".gemrc",
    "cargo-credentials*",
    "auth.json",
    "settings-security.xml",
    "gradle.properties",
    # git and anything that speaks HTTP with a stored login
    "gitconfig",
    ".gitconfig",
    "git-credentials",
    ".git-credentials",
    "netrc",
    ".netrc",
    "_netrc",
    "wgetrc",
    ".wgetrc",
    "curlrc",
    ".curlrc",
    # cloud and container CLIs
    "credentials",
    "credentials.*",
    "*credentials*.json",
    "access_tokens.db",
    "boto",
    ".boto",
    "boto.cfg",
    "s3cfg",
    ".s3cfg",
    "dockercfg",
    ".dockercfg",
    "kubeconfig",
    "hosts.yml",
    ".env",
    "*.env",
    # private keys
    "*.key",
    "id_rsa",
    "id_dsa",
    "id_ecdsa",
    "id_ed25519",
    "*.p12",
    "*.pfx",
    "*.keytab",
)
"""Names (lower case, fnmatch) of files that hold credentials: hidden wherever the rule looks (credential_masks)."""

CREDENTIAL_DIRS = (
    "aws",
    ".aws",
    "gcloud",
    ".gcloud",
    "azure",
    ".azure",
    "docker",
    ".docker",
    "containers",
    "kube",
    ".kube",
    "gh",
    "hub",
    "ssh",
    ".ssh",
    "gnupg",
    ".gnupg",
    "private",
    "secrets",
    "cargo",
    ".cargo",
)
"""Names of directories that hold credentials (cloud and container CLIs' configuration, keys): hidden whole."""

MASK_DEPTH = 4
MASK_SCAN_ENTRIES = 2000
"""How deep and how wide the rule looks in each ``etc``: a system configuration tree is small."""

_masks: tuple[tuple[Path, ...], tuple[tuple[Path, int | None], ...], tuple[Path, ...]] | None = None
_empty: Path | None = None

READ_CHUNK = 65536
REDACTION_MARGIN = 4096
"""Raw bytes kept before the tail, so a secret cut by the tail's edge is still whole when redacted."""

EXIT_DRAIN_SECONDS = 2.0
"""After the command exits: how long output still in flight is read before the pipe is closed."""

KILL_DRAIN_SECONDS = 2.0
"""After the process tree is killed: how long the pipe is read for its last bytes before it is closed."""

TICK_SECONDS = 0.1
CANCEL_LOOK_SECONDS = 0.5  # how soon a command notices its run lost the issue

DEFAULT_MAX_PROCESSES = 1024
"""Processes (threads included) one sandbox may hold at once, unless HQ_SANDBOX_MAX_PROCESSES says otherwise."""

SANDBOX_OVERHEAD_PROCESSES = 2
"""bubblewrap's two processes (the monitor outside and the sandbox's init), counted on top of the command's."""

UID_OVERHEAD_PROCESSES = 1
"""Of those, what a run as a uid of its own counts: the inner bubblewrap (the outer ones are root's)."""

CGROUP_PREFIX = "hq-sandbox-"
ORPHAN_EMPTY_SECONDS = 600.0
"""An empty cgroup another PID namespace's HQ made is removed once it is this old (it may be about to use it)."""
CGROUP_EMPTY_SECONDS = 10.0
"""After a run: how long its cgroup's last processes get to die of SIGKILL before the cgroup is left behind."""


class SandboxUnavailable(HQError):
    """The configured sandbox cannot run on this host (bubblewrap not installed)."""


@dataclass(frozen=True)
class Limits:
    timeout_seconds: float  # wall clock; on expiry the whole process tree is killed
    cpu_seconds: int  # RLIMIT_CPU
    memory_bytes: int  # RLIMIT_AS
    output_bytes: int = 8000  # how much of the combined stdout+stderr tail is kept
    processes: int = DEFAULT_MAX_PROCESSES  # processes and threads at once (a pids cgroup, see process_cap())
    # Set when the run that started the command no longer holds its issue (projects/watch.py): the whole
    # process tree is killed as on a timeout, and the result says ``cancelled``.
    cancel: threading.Event | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not self.timeout_seconds > 0:
            raise ValueError("timeout_seconds must be positive")
        if self.cpu_seconds < 1 or self.memory_bytes < 1 or self.output_bytes < 0:
            raise ValueError("cpu_seconds and memory_bytes must be positive, output_bytes not negative")
        if self.processes < 1:
            raise ValueError("processes must be positive")


@dataclass(frozen=True)
class SandboxResult:
    argv: tuple[str, ...]  # the command as given (not the bwrap wrapper)
    exit_code: int  # the command's; 124 timed out; 126 not executable; 127 could not start; 128+N signal N
    seconds: float
    output: str  # the redacted tail of stdout+stderr, interleaved
    timed_out: bool
    sandbox: str  # "bwrap" or "none"
    cancelled: bool = False  # killed because its run lost the issue: no verdict on anything

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out and not self.cancelled


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
        network: bool = False,
    ) -> SandboxResult: ...


class Bubblewrap:
    """Commands in a bubblewrap sandbox: see the module docstring for what it binds and why."""

    name = "bwrap"

    def __init__(self, executable: str | None = None, cap: ProcessCap | None = None) -> None:
        self.executable = executable or shutil.which("bwrap") or "bwrap"
        self.interpreter = Path(sys.base_prefix).resolve()
        self.cap = cap  # None: what the host offers (process_cap()), found at the first run

    @property
    def process_cap(self) -> ProcessCap:
        return self.cap or process_cap()

    def run(
        self,
        argv: Sequence[str],
        *,
        workdir: Path,
        limits: Limits,
        env: Mapping[str, str] | None = None,
        mounts: Sequence[Mount] = (),
        network: bool = False,
    ) -> SandboxResult:
        """``network``: the host's network (an environment's setup, projects/repo/environment.py), else none."""
        command = tuple(argv)
        problem = _refusal(command, workdir, env) or _mount_refusal(mounts)
        if problem is None and shutil.which(self.executable) is None:
            problem = f"bwrap not found ({self.executable}): {INSTALL_HINT}"
        if problem:
            return _not_started(command, self.name, problem)
        environment = {**base_environment(self.interpreter), "PWD": WORKSPACE, **(env or {})}
        cap = self.process_cap
        if cap.uids is not None:
            return self._run_as_uid(command, workdir, limits, environment, mounts, cap.uids, network)
        try:
            mover, nproc, group = _process_cap(limits, cap)
        except OSError as error:
            return _not_started(command, self.name, f"cannot cap the run's processes: {error}")
        limiter, preexec = _limiter(limits, nproc)
        started_ns = time.time_ns() - CTIME_SLACK_NS
        # Every option and the environment reach bwrap through a file descriptor (``--args``), not its
        # command line: that is PID 1's inside the sandbox (/proc/1/cmdline), where host paths (the data
        # dir, the worktree's) would show, and every user of the host can read it in /proc (a run's
        # gateway token is in the environment).
        try:
            with tempfile.TemporaryFile(prefix="hq-sandbox-args-") as settings:
                options = self.arguments(workdir, limits, mounts, network=network)
                options += [part for name, value in environment.items() for part in ("--setenv", name, value)]
                settings.write(b"".join(f"{part}\0".encode() for part in options))
                settings.flush()
                settings.seek(0)
                descriptor = settings.fileno()
                wrapper = [*mover, *limiter, self.executable, "--args", str(descriptor)]
                # `exec "$@"` in the sandbox's own sh: a missing command exits 127 and an unexecutable one
                # 126, with the shell's message, where bwrap itself would exit 1 like any failing command.
                wrapper += ["--", "/bin/sh", "-c", 'exec "$@"', "sh", *command]
                result = _execute(
                    wrapper, command, self.name, limits=limits, cwd=None, env=None, preexec=preexec, keep=(descriptor,)
                )
        finally:
            if group is not None:
                _remove_cgroup(group)
        return judged(result, _tame_all(workdir, mounts, started_ns))

    def _run_as_uid(
        self,
        command: tuple[str, ...],
        workdir: Path,
        limits: Limits,
        environment: Mapping[str, str],
        mounts: Sequence[Mount],
        uids: range,
        network: bool,
    ) -> SandboxResult:
        """The run under RLIMIT_NPROC as root: the command runs as a uid of its own (see the module docstring).

        Two bubblewraps: the outer one, as root, builds the root (root can reach every bind source, the
        data dir's worktree and HQ's 0600 sockets included) and new PID, network, IPC and UTS namespaces;
        in it setpriv becomes the run's uid (no new privileges), prlimit sets RLIMIT_NPROC, and the inner
        one, as that uid, makes the user namespace (uid 65534 inside, no further user namespaces).
        """
        try:
            lease = _UidLease.take(uids)
        except OSError as error:
            return _not_started(command, self.name, str(error))
        uid = lease.uid
        owner = (os.geteuid(), os.getegid())
        sockets: list[tuple[Path, int, int]] = []
        started_ns = time.time_ns() - CTIME_SLACK_NS
        try:
            _own_tree(workdir, uid)
            for tree in _writable_directories(mounts):  # an environment being built: the uid writes there
                _own_tree(tree, uid)
            for mount in mounts:  # HQ's sockets (0600): the run's uid must be able to connect
                info = mount.source.lstat()
                if mount.writable and stat.S_ISSOCK(info.st_mode):
                    os.chown(mount.source, uid, uid, follow_symlinks=False)
                    sockets.append((mount.source, info.st_uid, info.st_gid))
            limiter, preexec = _limiter(limits)
            allowed = limits.processes + UID_OVERHEAD_PROCESSES
            with (
                tempfile.TemporaryFile(prefix="hq-sandbox-args-") as outer,
                tempfile.TemporaryFile(prefix="hq-sandbox-args-") as inner,
            ):
                options = self.arguments(workdir, limits, mounts, user=uid, network=network)
                options += [part for name, value in environment.items() for part in ("--setenv", name, value)]
                _write_args(outer, options)
                # Inside the outer root, where every path is reachable: bind it whole (what the outer made
                # read-only stays so, locked by the kernel), devices included.
                _write_args(inner, [*_inner_namespace(self.executable), "--chdir", WORKSPACE])
                wrapper = [*limiter, self.executable, "--args", str(outer.fileno()), "--"]
                wrapper += [_tool("setpriv"), f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--no-new-privs"]
                wrapper += ["--", _tool("prlimit"), f"--nproc={allowed}", "--"]
                wrapper += [self.executable, "--args", str(inner.fileno())]
                wrapper += ["--", "/bin/sh", "-c", 'exec "$@"', "sh", *command]
                result = _execute(
                    wrapper,
                    command,
                    self.name,
                    limits=limits,
                    cwd=None,
                    env=None,
                    preexec=preexec,
                    keep=(outer.fileno(), inner.fileno()),
                )
        finally:
            _kill_user(uid)  # nothing of the run lives on, however it got away: the uid is the run's alone
            unsafe = _tame_all(workdir, mounts, started_ns, owner=owner)
            for path, socket_uid, socket_gid in sockets:
                with contextlib.suppress(OSError):
                    os.chown(path, socket_uid, socket_gid, follow_symlinks=False)
            lease.release()
        return judged(result, unsafe)

    def arguments(
        self,
        workdir: Path,
        limits: Limits,
        mounts: Sequence[Mount] = (),
        user: int | None = None,
        *,
        network: bool = False,
    ) -> list[str]:
        """bwrap's options for one run, up to the environment (given with ``--args``), ``--`` and the command.

        ``user``: the outer sandbox of a run as that uid (_run_as_uid): no user namespace here (the inner
        bubblewrap makes it), the capabilities setpriv needs to become the uid, directories and tmpfs
        the uid can use.
        """
        if user is None:
            options = ["--unshare-all", "--unshare-user", *(["--share-net"] if network else [])]
            if _supports(self.executable, "--disable-userns"):
                options.append("--disable-userns")
            options += ["--die-with-parent", "--new-session", "--cap-drop", "ALL", "--hostname", HOSTNAME]
            options += ["--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID)]
        else:
            options = ["--unshare-ipc", "--unshare-pid", *([] if network else ["--unshare-net"]), "--unshare-uts"]
            options += ["--unshare-cgroup-try"]
            options += ["--die-with-parent", "--new-session", "--hostname", HOSTNAME]
            options += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
            # bubblewrap makes a bind's missing parents private to root: the uid must pass through them
            targets = [str(self.interpreter), *(mount.target for mount in mounts)]
            for parent in dict.fromkeys(str(up) for target in targets for up in reversed(Path(target).parents)):
                if parent != "/" and not parent.startswith(("/usr", "/proc", "/dev", "/tmp", "/etc")):
                    options += ["--perms", "0755", "--dir", parent]
        options += _system_mounts(self.interpreter)
        if network:  # what resolving names and the package registries' own configuration need
            options += [part for name in NETWORK_ETC for part in ("--ro-bind-try", f"/etc/{name}", f"/etc/{name}")]
        size = ["--size", str(limits.memory_bytes)] if _supports(self.executable, "--size") else []  # bwrap 0.7+
        shared = ["--perms", "1777"] if user is not None else []
        options += ["--dev", "/dev", *size, *shared, "--tmpfs", "/dev/shm"]
        options += ["--proc", "/proc"]
        if user is None:
            # /proc/sys read-only: its files are owner-writable, and a sandbox mapped to host root is their
            # owner. (As a uid of its own the command owns none of them; the inner bubblewrap writes its
            # own user namespace's limit there.)
            options += ["--ro-bind", "/proc/sys", "/proc/sys"]
        options += ["--ro-bind-try", "/proc/sysrq-trigger", "/proc/sysrq-trigger"]
        options += [*size, *shared, "--tmpfs", "/tmp"]
        options += ["--bind", str(workdir.resolve()), WORKSPACE]
        # the outer sandbox of a run as a uid has no CAP_DAC_OVERRIDE for a 0700 tree lent to the uid:
        # the inner bubblewrap, as the uid, goes there
        options += ["--chdir", WORKSPACE] if user is None else []
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

    def __init__(self, cap: ProcessCap | None = None) -> None:
        self.interpreter = Path(sys.base_prefix).resolve()
        self.cap = cap  # None: what the host offers (process_cap())

    def run(
        self,
        argv: Sequence[str],
        *,
        workdir: Path,
        limits: Limits,
        env: Mapping[str, str] | None = None,
        mounts: Sequence[Mount] = (),
        network: bool = False,
    ) -> SandboxResult:
        """``network`` changes nothing here: an unconfined command reaches the network anyway."""
        command = tuple(argv)
        problem = _refusal(command, workdir, env)
        if problem is None and mounts:
            problem = "sandbox 'none' cannot mount anything: this needs HQ_SANDBOX=bwrap"
        if problem:
            return _not_started(command, self.name, problem)
        try:
            # A uid of its own would need isolation to reach the worktree: unconfined, it means no cap.
            cap = self.cap or process_cap()
            mover, nproc, group = _process_cap(limits, ProcessCap("none") if cap.uids is not None else cap)
        except OSError as error:
            return _not_started(command, self.name, f"cannot cap the run's processes: {error}")
        limiter, preexec = _limiter(limits, nproc)
        started_ns = time.time_ns() - CTIME_SLACK_NS
        try:
            # HOME and TMPDIR of this run only, removed after it
            with tempfile.TemporaryDirectory(prefix="hq-unconfined-", ignore_cleanup_errors=True) as home:
                environment = {**base_environment(self.interpreter), "HOME": home, "TMPDIR": home, "PWD": str(workdir)}
                environment.update(env or {})
                wrapper = [*mover, *limiter, *command]
                result = _execute(
                    wrapper, command, self.name, limits=limits, cwd=workdir, env=environment, preexec=preexec
                )
        finally:
            if group is not None:
                _remove_cgroup(group)
        return judged(result, _tame_all(workdir, mounts, started_ns))


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
        return Unconfined(cap_for(settings))
    executable = shutil.which("bwrap")
    if executable is None:
        raise SandboxUnavailable(f"HQ_SANDBOX=bwrap but bwrap is not on PATH: {INSTALL_HINT} (`make sandbox-deps`)")
    return Bubblewrap(executable, cap_for(settings))


def cap_for(settings: Settings) -> ProcessCap:
    """What caps processes as ``HQ_SANDBOX_PROCESS_CAP`` asks, on this host (found once per setting)."""
    uids = range(settings.sandbox_uid_base, settings.sandbox_uid_base + settings.sandbox_uid_count)
    return process_cap(settings.sandbox_process_cap, uids)


def limits_for(settings: Settings, timeout_seconds: float, cancel: threading.Event | None = None) -> Limits:
    return Limits(
        timeout_seconds=timeout_seconds,
        cpu_seconds=settings.sandbox_cpu_seconds,
        memory_bytes=settings.sandbox_memory_mb * 1024 * 1024,
        processes=settings.sandbox_max_processes,
        cancel=cancel,
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


def _limiter(limits: Limits, nproc: int | None = None) -> tuple[list[str], Callable[[], None] | None]:
    """The ``prlimit ... --`` prefix that sets the limits, or (no prlimit binary) a preexec_fn that does.

    ``nproc``: RLIMIT_NPROC, where that is the process cap.
    """
    prlimit = shutil.which("prlimit") or ("/usr/bin/prlimit" if os.access("/usr/bin/prlimit", os.X_OK) else None)
    cpu, memory = limits.cpu_seconds, limits.memory_bytes
    if prlimit:
        nproc_option = [f"--nproc={nproc}"] if nproc is not None else []
        return [prlimit, f"--cpu={cpu}:{cpu + 1}", f"--as={memory}", "--core=0", *nproc_option, "--"], None

    # Fallback only: preexec_fn runs Python between fork and exec, which is unsafe in a multi-threaded
    # process (HQ has scheduler and LISTEN threads: a lock held by another thread at fork stays held).
    # setrlimit is a plain system call, the least that can go wrong there.
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if nproc is not None:
            resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))

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
    ended = _collect(process, tail, started + limits.timeout_seconds, limits.cancel)
    returncode = process.wait()
    seconds = time.monotonic() - started
    output = tail.text()
    if ended == "timed out":
        code = EXIT_TIMED_OUT
        output += f"\n[sandbox] timed out after {limits.timeout_seconds:g} s: the command and its processes were killed"
    elif ended == "cancelled":
        code = EXIT_TIMED_OUT
        output += "\n[sandbox] stopped: the run no longer holds its issue; the command and its processes were killed"
    else:
        code = 128 - returncode if returncode < 0 else returncode
    log.debug("sandbox.ran", sandbox=sandbox, argv=list(command), exit_code=code, seconds=round(seconds, 3))
    return SandboxResult(command, code, seconds, output, ended == "timed out", sandbox, ended == "cancelled")


def _collect(
    process: subprocess.Popen[bytes], tail: _Tail, deadline: float, cancel: threading.Event | None = None
) -> Literal["exited", "timed out", "cancelled"]:
    """Read output until the command has exited and its output ended, the deadline, or ``cancel``; then kill
    the process group (what the command left running; on timeout or cancel, the command itself).

    EOF alone is not the end (a command may close its output and go on working), nor is the exit (a
    background child may still hold the pipe: it gets EXIT_DRAIN_SECONDS, then the kill). ``cancel`` is
    looked at every CANCEL_LOOK_SECONDS at most.
    """
    assert process.stdout is not None
    pipe = process.stdout
    fd = pipe.fileno()
    os.set_blocking(fd, False)
    pidfd = _pidfd(process.pid)  # readable once the command exits: no polling, where the kernel has it
    tick = None if pidfd is not None else TICK_SECONDS
    if cancel is not None:
        tick = min(tick or CANCEL_LOOK_SECONDS, CANCEL_LOOK_SECONDS)
    ended: Literal["exited", "timed out", "cancelled"] = "exited"
    eof = False
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
            if exited_at is None and cancel is not None and cancel.is_set():
                ended = "cancelled"
                break
            limit = deadline if exited_at is None else min(deadline, exited_at + EXIT_DRAIN_SECONDS)
            if now >= limit:
                ended = "timed out" if exited_at is None else "exited"
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
    return ended


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
    for packages in global_packages(interpreter):
        options += ["--tmpfs", str(packages), "--remount-ro", str(packages)]
    for masked in credential_masks(_bound_trees(interpreter)):
        if masked.is_dir():
            options += ["--tmpfs", str(masked), "--remount-ro", str(masked)]
        else:
            options += ["--ro-bind", str(_empty_file()), str(masked)]
    return options


@cache
def global_packages(interpreter: Path) -> tuple[Path, ...]:
    """The site-packages and dist-packages of the interpreters the sandbox offers (GLOBAL_PACKAGES)."""
    roots = [Path("/usr"), Path("/usr/local")]
    if not interpreter.is_relative_to("/usr") and interpreter != Path("/"):
        roots.append(interpreter)
    found = [path for root in roots for pattern in GLOBAL_PACKAGES for path in sorted(root.glob(pattern))]
    return tuple(dict.fromkeys(path for path in found if path.is_dir() and not path.is_symlink()))


def _empty_file() -> Path:
    """An empty read-only file of HQ's own, bound over a hidden file: a reader finds nothing, not an error
    (/dev/null would be refused: bubblewrap binds with nodev). Made again should a /tmp cleaner take it."""
    global _empty
    if _empty is None or not _empty.is_file() or _empty.stat().st_size:
        descriptor, name = tempfile.mkstemp(prefix="hq-sandbox-empty-")
        os.close(descriptor)
        os.chmod(name, 0o444)
        _empty = Path(name)
    return _empty


def _bound_trees(interpreter: Path) -> tuple[Path, ...]:
    """The host trees the sandbox sees whole: where configuration with credentials must be looked for."""
    trees = [Path("/usr"), Path("/usr/local")]
    trees += [Path(top) for top in MERGED_USR if Path(top).is_dir() and not Path(top).is_symlink()]
    if not interpreter.is_relative_to("/usr") and interpreter != Path("/"):
        trees.append(interpreter)
    trees += [entry for entry in _etc_entries() if entry.is_dir() and not entry.is_symlink()]
    return tuple(trees)


def credential_masks(trees: Sequence[Path]) -> tuple[Path, ...]:
    """What of the bound trees is hidden in the sandbox: configuration that holds credentials, by rule.

    The rule (``CREDENTIAL_NAMES``, ``CREDENTIAL_DIRS``) is matched against each tree's top level, its
    ``etc`` and npm's own configuration directory, where package managers, git and cloud CLIs keep a
    system-wide configuration. Found once and kept while none of the scanned directories changes
    (one stat each per run), so a token file written later is hidden from the next run on.
    """
    global _masks
    if _masks is not None and _masks[0] == tuple(trees) and all(_mtime(d) == m for d, m in _masks[1]):
        return _masks[2]
    scanned: list[tuple[Path, int | None]] = []
    found: list[Path] = []
    for tree in trees:
        for place, depth in ((tree, 0), (tree / "etc", MASK_DEPTH), (tree / "lib" / "node_modules" / "npm", 0)):
            _scan_for_credentials(place, depth, trees, scanned, found)
    _masks = (tuple(trees), tuple(scanned), tuple(dict.fromkeys(found)))
    return _masks[2]


def _scan_for_credentials(
    directory: Path, depth: int, trees: Sequence[Path], scanned: list[tuple[Path, int | None]], found: list[Path]
) -> None:
    scanned.append((directory, _mtime(directory)))
    try:
        with os.scandir(directory) as listing:
            entries = sorted(listing, key=lambda entry: entry.name)[:MASK_SCAN_ENTRIES]
    except OSError:
        return
    for entry in entries:
        name = entry.name.lower()
        path = Path(entry.path)
        if entry.is_symlink():
            name = path.resolve().name.lower() if _is_credential(name, entry.is_dir()) else ""
            target = path.resolve()
            if name and target.exists() and any(target.is_relative_to(tree) for tree in trees):
                found.append(target)  # bwrap mounts through the link: the file it names is what is hidden
            continue
        is_directory = entry.is_dir(follow_symlinks=False)
        if _is_credential(name, is_directory):
            found.append(path)
        elif is_directory and depth > 0:
            _scan_for_credentials(path, depth - 1, trees, scanned, found)


def _is_credential(name: str, is_directory: bool) -> bool:
    patterns = CREDENTIAL_DIRS if is_directory else CREDENTIAL_NAMES
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def _mtime(path: Path) -> int | None:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


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


# --- the process cap ------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcessCap:
    """How this host caps one sandbox's processes: ``mechanism`` and, for a cgroup, where runs get theirs."""

    mechanism: str  # "cgroup v2", "cgroup v1", "rlimit", "rlimit uid", "none" or "unavailable"
    parent: Path | None = None  # the pids cgroup each run's own cgroup is made in
    uids: range | None = None  # "rlimit uid": the uids (and gids) runs take one of, one per concurrent run
    why: str = ""  # "none" or "unavailable": why

    def describe(self) -> str:
        if self.parent is not None:
            return f"a pids cgroup per run ({self.mechanism}, under {self.parent})"
        if self.uids is not None:
            return (
                f"RLIMIT_NPROC under a uid of each run's own ({self.uids.start}-{self.uids.stop - 1}; "
                "HQ runs as root and has no writable pids cgroup)"
            )
        if self.mechanism == "rlimit":
            return "RLIMIT_NPROC (no writable pids cgroup: the cap counts every process of HQ's user)"
        return f"{self.mechanism}: {self.why}"


DEFAULT_UIDS = range(61000, 61064)


@cache
def process_cap(mode: str = "auto", uids: range = DEFAULT_UIDS) -> ProcessCap:
    """The cap ``mode`` (HQ_SANDBOX_PROCESS_CAP) asks for on this host, found once.

    auto: a pids cgroup HQ may create children in, else RLIMIT_NPROC (for root, under a uid of the run's
    own, where unprivileged user namespaces work), else none. cgroup / rlimit: that one, or "unavailable"
    (runs refuse to start). none: nothing caps processes.
    """
    if mode == "none":
        return ProcessCap("none", why="HQ_SANDBOX_PROCESS_CAP=none")
    if mode in ("auto", "cgroup"):
        for mechanism, parent in _pids_cgroup_candidates():
            if _can_make_cgroup(parent):
                _remove_orphans(parent)
                return ProcessCap(mechanism, parent)
        if mode == "cgroup":
            return ProcessCap("unavailable", why="HQ_SANDBOX_PROCESS_CAP=cgroup but no writable pids cgroup")
    if os.geteuid() != 0:
        return ProcessCap("rlimit")
    free = [uid for uid in uids if _unassigned(uid)]
    if len(free) < len(uids):
        problem = f"uids {uids.start}-{uids.stop - 1} (HQ_SANDBOX_UID_BASE) include accounts of this host"
        return ProcessCap("unavailable" if mode == "rlimit" else "none", why=problem)
    if mode == "auto" and not _user_namespaces_work(uids.start):
        return ProcessCap("none", why="no writable pids cgroup, and no user namespace for a uid of the run's own")
    return ProcessCap("rlimit uid", uids=uids)


def _unassigned(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
    except KeyError:
        try:
            grp.getgrgid(uid)
        except KeyError:
            return True
    return False


def _user_namespaces_work(uid: int) -> bool:
    """Whether bubblewrap can make a user namespace as ``uid`` (unprivileged user namespaces allowed)."""
    executable = shutil.which("bwrap")
    if executable is None:
        return False
    try:
        completed = _run_as_user(uid, [executable, "--unshare-user", "--ro-bind", "/", "/", "--", "/bin/true"], 30)
    except (OSError, subprocess.SubprocessError):
        return False
    return completed.returncode == 0


def _run_as_user(uid: int, argv: list[str], timeout: float) -> subprocess.CompletedProcess[bytes]:
    """A fixed command of HQ's own as ``uid`` (and its gid, no other group), with nothing of HQ's environment."""
    return subprocess.run(
        argv,
        user=uid,
        group=uid,
        extra_groups=[],
        cwd="/",
        env={},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=timeout,
    )


def _remove_orphans(parent: Path) -> None:
    """Runs' cgroups whose HQ process died (kill -9) before removing them: emptied and removed now.

    A cgroup names its maker by PID namespace and pid, and a pid means something only in its own namespace:
    another namespace's HQ (a container sharing the hierarchy) may be alive whatever our /proc says, so its
    cgroups are never killed, only removed once empty and older than ORPHAN_EMPTY_SECONDS.
    """
    namespace = _pid_namespace()
    for group in parent.glob(f"{CGROUP_PREFIX}*"):
        maker, pid = [*group.name.removeprefix(CGROUP_PREFIX).split("-"), "", ""][:2]
        if maker == namespace and pid.isdigit() and int(pid) != os.getpid() and not Path(f"/proc/{pid}").exists():
            log.warning("sandbox.orphan_cgroup", cgroup=str(group))
            _remove_cgroup(group)
        elif maker != namespace and not _words(group / "cgroup.procs") and _age(group) > ORPHAN_EMPTY_SECONDS:
            with contextlib.suppress(OSError):  # a task arrived meanwhile (EBUSY): it is in use after all
                group.rmdir()


def _pid_namespace() -> str:
    """This process's PID namespace, as its inode number ("0" where it cannot be read)."""
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return "0"


def _age(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return 0.0


def _pids_cgroup_candidates() -> list[tuple[str, Path]]:
    """Where a child pids cgroup could be made: HQ's own cgroup, then the hierarchy's root; v2 before v1."""
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
        membership = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return []
    own: dict[str, str] = {}
    for line in membership:
        number, controllers, path = [*line.split(":", 2), "", ""][:3]
        own["v2" if number == "0" and not controllers else controllers] = path
    found: list[tuple[str, Path]] = []
    for line in mounts:
        fields = line.split()
        if len(fields) < 4:
            continue
        root, kind, options = Path(fields[1]), fields[2], fields[3].split(",")
        if kind == "cgroup2":
            for place in (_below(root, own.get("v2")), root):
                if place is not None and "pids" in _words(place / "cgroup.subtree_control"):
                    found.insert(0, ("cgroup v2", place))
        elif kind == "cgroup" and "pids" in options:
            key = next((k for k in own if "pids" in k.split(",")), None)
            found += [("cgroup v1", place) for place in (_below(root, own.get(key or "")), root) if place is not None]
    return list(dict.fromkeys(found))


def _below(root: Path, own: str | None) -> Path | None:
    if not own or own == "/" or ".." in own.split("/"):
        return None
    return root / own.lstrip("/")


def _words(path: Path) -> list[str]:
    try:
        return path.read_text().split()
    except OSError:
        return []


def _can_make_cgroup(parent: Path) -> bool:
    if not os.access(parent, os.W_OK | os.X_OK):
        return False
    try:
        group = _make_cgroup(parent, 8)
    except OSError:
        return False
    _remove_cgroup(group)
    return True


def _make_cgroup(parent: Path, processes: int) -> Path:
    """A new pids cgroup for one run, at most ``processes`` tasks; OSError when it cannot be made."""
    group = parent / f"{CGROUP_PREFIX}{_pid_namespace()}-{os.getpid()}-{uuid.uuid4().hex[:12]}"
    group.mkdir(mode=0o755)
    try:
        (group / "pids.max").write_text(str(processes))
    except OSError:
        with contextlib.suppress(OSError):
            group.rmdir()
        raise
    return group


def _remove_cgroup(group: Path) -> bool:
    """Kill what is left in a run's cgroup, wait until it is empty, remove it: True when it is gone.

    Once it is empty no process of the run exists anywhere, so what it left on disk holds still.
    """
    deadline = time.monotonic() + CGROUP_EMPTY_SECONDS
    killer = group / "cgroup.kill"  # cgroup v2, Linux 5.14+
    while True:
        left = _words(group / "cgroup.procs")
        if not left:
            break
        if time.monotonic() > deadline:
            log.warning("sandbox.cgroup_not_empty", cgroup=str(group), processes=len(left))
            return False
        if killer.exists():
            with contextlib.suppress(OSError):
                killer.write_text("1")
        else:
            for pid in left:
                with contextlib.suppress(ProcessLookupError, PermissionError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
        time.sleep(0.005)
    for _ in range(200):  # the last task may still be leaving the cgroup: EBUSY for a moment
        try:
            group.rmdir()
            return True
        except FileNotFoundError:
            return True
        except OSError:
            time.sleep(0.005)
    log.warning("sandbox.cgroup_not_removed", cgroup=str(group))
    return False


def _process_cap(limits: Limits, cap: ProcessCap) -> tuple[list[str], int | None, Path | None]:
    """(the prefix that moves the command into its cgroup, the RLIMIT_NPROC to set, the run's cgroup) for one run.

    The caller removes the cgroup (_remove_cgroup) once the command has ended; OSError when it cannot
    be made (the run must not start uncapped on a host that caps) or the cap asked for is unavailable.
    """
    if cap.mechanism == "unavailable":
        raise OSError(cap.why)
    allowed = limits.processes + SANDBOX_OVERHEAD_PROCESSES
    if cap.parent is None:
        return [], (allowed if cap.mechanism == "rlimit" else None), None
    group = _make_cgroup(cap.parent, allowed)
    # The shell moves itself into the cgroup (writing 0 means "the writer") before it execs the rest:
    # every process of the run starts inside, nothing forked before the move.
    return ["/bin/sh", "-c", 'echo 0 > "$0" && exec "$@"', str(group / "cgroup.procs")], None, group


# --- a uid of the run's own (RLIMIT_NPROC as root) ---------------------------------------------------------

KILL_USER_SECONDS = 10.0
"""After a run as a uid of its own: how long its last processes get to die of SIGKILL."""


class _UidLease:
    """One uid of the range, held by one run: an abstract Unix socket bound to a name of the uid's.

    The kernel releases the name when its holder dies, however; every HQ process of the host (in one
    network namespace) sees the same names, so no two runs share a uid, its process count or its kill.
    """

    def __init__(self, uid: int, holder: socket.socket) -> None:
        self.uid = uid
        self._holder = holder

    @classmethod
    def take(cls, uids: range) -> _UidLease:
        offset = int.from_bytes(os.urandom(2)) % len(uids)  # spread starts: fewer tries when many run
        for index in range(len(uids)):
            uid = uids[(offset + index) % len(uids)]
            holder = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                holder.bind(f"\0hq-sandbox-uid-{uid}")
            except OSError:
                holder.close()
                continue
            return cls(uid, holder)
        raise OSError(f"every sandbox uid ({uids.start}-{uids.stop - 1}) is in use: raise HQ_SANDBOX_UID_COUNT")

    def release(self) -> None:
        self._holder.close()


def _tool(name: str) -> str:
    """A util-linux tool by the path it has inside the sandbox (/usr is bound there)."""
    found = shutil.which(name, path="/usr/bin:/usr/sbin:/bin:/sbin")
    return found or f"/usr/bin/{name}"


def _write_args(handle: IO[bytes], options: Sequence[str]) -> None:
    """bubblewrap's ``--args`` file: NUL-separated, read from the start."""
    handle.write(b"".join(f"{part}\0".encode() for part in options))
    handle.flush()
    handle.seek(0)


def _inner_namespace(executable: str) -> list[str]:
    """The inner bubblewrap's options: a user namespace over the outer sandbox's root, nothing more."""
    options = ["--unshare-user"]
    if _supports(executable, "--disable-userns"):
        options.append("--disable-userns")
    options += ["--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID), "--die-with-parent", "--cap-drop", "ALL"]
    return [*options, "--bind", "/", "/", "--dev-bind", "/dev", "/dev"]


def _own_tree(root: Path, uid: int) -> None:
    """Give the worktree to the run's uid (it writes there); tame_tree gives it back after the run.

    Symlinks are neither followed nor changed; no process of a run is alive, so nothing moves under it.
    """
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        os.fchown(fd, uid, uid)
        _own_directory(fd, uid)
    finally:
        os.close(fd)


def _own_directory(fd: int, uid: int) -> None:
    with os.scandir(fd) as listing:
        found = list(listing)
    for entry in found:
        if entry.is_symlink():
            continue
        os.chown(entry.name, uid, uid, dir_fd=fd, follow_symlinks=False)
        if entry.is_dir(follow_symlinks=False):
            child = os.open(entry.name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            try:
                _own_directory(child, uid)
            finally:
                os.close(child)


def _kill_user(uid: int) -> None:
    """SIGKILL every process of ``uid`` (kill -1 as that uid) until none is left, or KILL_USER_SECONDS."""
    deadline = time.monotonic() + KILL_USER_SECONDS
    while time.monotonic() < deadline:
        try:
            completed = _run_as_user(uid, [_tool("kill"), "-9", "-1"], KILL_USER_SECONDS)
        except (OSError, subprocess.SubprocessError) as error:
            log.warning("sandbox.kill_user_failed", uid=uid, error=str(error))
            return
        if completed.returncode != 0:  # ESRCH: no process of the uid is left
            return
        time.sleep(0.005)
    log.warning("sandbox.user_not_empty", uid=uid)


# --- what the command left in the worktree ------------------------------------------------------------


@dataclass
class Tamed:
    """What the walk after a run changed: counts, for the log."""

    entries: int = 0
    stripped: int = 0  # setuid/setgid bits removed (or capabilities)
    removed: int = 0  # device nodes, FIFOs, sockets
    unsafe: str | None = None  # why part of the tree could not be walked (then the run fails)


SETID = stat.S_ISUID | stat.S_ISGID
CTIME_SLACK_NS = 2_000_000_000
"""File times come from a coarse clock that may lag the one a run's start is read from: this much."""
CAPABILITY_XATTR = "security.capability"
MAX_TAME_DEPTH = 256
"""How deep the walk goes (it holds one open directory a level): deeper chains are refused, not walked."""


def tame_tree(root: Path, since_ns: int = 0, owner: tuple[int, int] | None = None) -> Tamed:
    """Make what a sandboxed command left under ``root`` harmless to the host.

    Every setuid/setgid bit is removed (files and directories), file capabilities too, and device
    nodes, FIFOs and sockets are deleted; directories get back their owner's rwx (one the command made
    unreadable is still walked). Symlinks are never followed: directories are opened with O_NOFOLLOW
    relative to their parent, and a change goes through an O_PATH descriptor checked to be what was
    walked. Called once every process of the run is gone, so nothing changes under the walk.

    ``since_ns``: when the run started. File capabilities are looked for (one more system call per
    file) only on files changed since (a ctime no process can set back: setting an attribute, writing,
    creating all move it to now).

    ``owner``: (uid, gid) every entry is given back to (a run as a uid of its own), symlinks included.
    """
    tamed = Tamed()
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as error:
        log.warning("sandbox.tame_failed", root=str(root), error=str(error))
        return tamed
    try:
        info = os.fstat(fd)
        if owner is not None and (info.st_uid, info.st_gid) != owner:
            os.fchown(fd, *owner)
        if info.st_mode & SETID or info.st_mode & 0o700 != 0o700:
            os.fchmod(fd, (stat.S_IMODE(info.st_mode) & ~SETID) | 0o700)
            tamed.stripped += bool(info.st_mode & SETID)
        _tame_directory(fd, str(root), since_ns, tamed, owner)
    finally:
        os.close(fd)
    if tamed.stripped or tamed.removed:
        log.warning("sandbox.tamed", root=str(root), stripped=tamed.stripped, removed=tamed.removed)
    return tamed


def _tame_directory(top: int, where: str, since_ns: int, tamed: Tamed, owner: tuple[int, int] | None) -> None:
    """Walk below the open directory ``top`` without recursion: one open directory a level, at most
    MAX_TAME_DEPTH of them. A deeper chain is not entered; ``tamed.unsafe`` says so, and the run fails."""
    frames: list[tuple[int, str, Iterator[os.DirEntry[str]]]] = [(top, where, _listing(top))]
    try:
        while frames:
            fd, place, pending = frames[-1]
            entry = next(pending, None)
            if entry is None:
                frames.pop()
                if fd != top:
                    os.close(fd)
                continue
            child = _tame_entry(fd, place, entry, since_ns, tamed, owner)
            if child is None:
                continue
            if len(frames) >= MAX_TAME_DEPTH:
                os.close(child)
                tamed.unsafe = f"the command left directories nested deeper than {MAX_TAME_DEPTH} levels"
                continue
            frames.append((child, f"{place}/{entry.name}", _listing(child)))
    finally:
        for fd, _place, _pending in frames:
            if fd != top:
                os.close(fd)


def _listing(fd: int) -> Iterator[os.DirEntry[str]]:
    with os.scandir(fd) as listing:
        return iter(list(listing))


def _tame_entry(
    fd: int, where: str, entry: os.DirEntry[str], since_ns: int, tamed: Tamed, owner: tuple[int, int] | None
) -> int | None:
    """Tame one entry of the directory ``fd``; an open descriptor of it when it is a directory to walk."""
    tamed.entries += 1
    try:
        info = entry.stat(follow_symlinks=False)
    except FileNotFoundError:
        return None
    mode = info.st_mode
    kind = stat.S_IFMT(mode)
    if owner is not None and (info.st_uid, info.st_gid) != owner:
        # no process of the run is alive: the name is what was listed; a symlink itself is changed
        with contextlib.suppress(FileNotFoundError):
            os.chown(entry.name, *owner, dir_fd=fd, follow_symlinks=False)
    if kind == stat.S_IFLNK:
        return None
    if kind not in (stat.S_IFREG, stat.S_IFDIR):  # a device node, FIFO or socket: never left on the host
        with contextlib.suppress(FileNotFoundError):
            os.unlink(entry.name, dir_fd=fd)
        tamed.removed += 1
        return None
    if kind == stat.S_IFDIR:
        if mode & SETID or mode & 0o700 != 0o700:
            _chmod_at(fd, entry.name, kind, (stat.S_IMODE(mode) & ~SETID) | 0o700)
            tamed.stripped += bool(mode & SETID)
        return os.open(entry.name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
    if mode & SETID:
        _chmod_at(fd, entry.name, kind, stat.S_IMODE(mode) & ~SETID)
        tamed.stripped += 1
    if info.st_ctime_ns >= since_ns and _has_capability(f"{where}/{entry.name}"):
        _drop_capability(fd, entry.name)
        tamed.stripped += 1
    return None


def tame_safely(root: Path, since_ns: int = 0, owner: tuple[int, int] | None = None) -> str | None:
    """tame_tree, never raising: why what the command left could not be made safe (None: it was).

    A walk that fails must fail the run: never lose the command's result to an exception, and never
    pass a tree that was not walked to the end.
    """
    try:
        tamed = tame_tree(root, since_ns, owner)
    except Exception as error:
        log.error("sandbox.tame_failed", root=str(root), error=str(error))
        return f"what the command left could not be checked ({type(error).__name__}: {error})"
    if tamed.unsafe:
        log.warning("sandbox.tree_unsafe", root=str(root), why=tamed.unsafe)
    return tamed.unsafe


def _writable_directories(mounts: Sequence[Mount]) -> list[Path]:
    return [mount.source for mount in mounts if mount.writable and mount.source.is_dir()]


def _tame_all(
    workdir: Path, mounts: Sequence[Mount], since_ns: int, owner: tuple[int, int] | None = None
) -> str | None:
    """tame_safely for every tree the command could write: the worktree and each writable directory mount."""
    for tree in (workdir, *_writable_directories(mounts)):
        unsafe = tame_safely(tree, since_ns, owner=owner)
        if unsafe:
            return unsafe
    return None


def judged(result: SandboxResult, unsafe: str | None) -> SandboxResult:
    """The command's result, failed (EXIT_UNSAFE_TREE) when what it left could not be made safe."""
    if unsafe is None:
        return result
    return dataclasses.replace(
        result, exit_code=EXIT_UNSAFE_TREE, output=f"{result.output}\n[sandbox] {unsafe}: the run is refused"
    )


def _chmod_at(dir_fd: int, name: str, kind: int, mode: int) -> None:
    """chmod of ``name`` in ``dir_fd`` if it is (still) of ``kind``: through an O_PATH descriptor, so a
    name swapped for a symlink is never followed."""
    handle = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        if stat.S_IFMT(os.fstat(handle).st_mode) == kind:
            os.chmod(f"/proc/self/fd/{handle}", mode)
    finally:
        os.close(handle)


def _has_capability(path: str) -> bool:
    try:
        os.getxattr(path, CAPABILITY_XATTR, follow_symlinks=False)
    except OSError:
        return False
    return True


def _drop_capability(dir_fd: int, name: str) -> None:
    handle = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        if stat.S_ISREG(os.fstat(handle).st_mode):
            with contextlib.suppress(OSError):
                os.removexattr(f"/proc/self/fd/{handle}", CAPABILITY_XATTR)
    finally:
        os.close(handle)
