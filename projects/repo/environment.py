"""A project's environment: built once per content by its setup command, then every command's, read-only.

Real projects need their dependencies, and the sandbox has no network. So the project file names a
``setup`` command (``environment`` in ``.hq/project.yaml``), the one command that runs with the host's
network, in a scratch worktree of the commit being worked, with an empty directory writable at ``/env``
(``HQ_ENV``). What it leaves there is the environment: every later command of the project (an agent's
``run_command``, the gate, deploy, verify, Claude Code's shell) gets it read-only at ``/env`` with
``/env/bin`` first on ``PATH``, and no network.

Built once per content: the key hashes the environment block, the interpreter the sandbox offers, and
the blob ids (contents) of the files matching ``inputs`` plus any file the setup command names, on the
commit being worked. A change to any of them builds a new environment; otherwise every issue and run on
this host reuses it. One process builds at a time (a lock per project); a build happens in a temporary
directory renamed into place, so no command ever sees half an environment. The newest few per project
are kept, and none in use is removed: a run holds a shared flock on its environment's directory for as
long as it may mount it (``Built.hold``; the kernel lets go when the process dies), and pruning takes
each one exclusively, without waiting, before it removes it. Pruning runs after every build and from
the upkeep job (prune()), which also removes what a builder killed mid-build left.

A setup that fails or times out raises EnvironmentFailed: the issue blocks with ``project_env`` (the
environment, not the agent's work, is broken), and no model is asked.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from config.log import get_logger
from config.settings import Settings
from projects.kinds import EnvironmentFailed
from projects.repo.project_file import Environment
from projects.repo.repository import Lease, Repository, remove_tree
from projects.sandbox import Mount, Sandbox, base_environment, limits_for
from projects.workspace import glob_regex

ENV_MOUNT = "/env"
KEEP_PER_PROJECT = 3
BUILD_LOCK = "build.lock"
FORMAT = "1"  # how environments are built: a change here builds every one afresh
MANIFEST = ".hq-environment.json"
TAIL_CHARS = 3000

log = get_logger(__name__)


@dataclass(frozen=True)
class Built:
    """An environment ready on this host: where it is, and whether this call built it."""

    key: str
    path: Path
    built: bool
    seconds: float  # the setup's time when built now, else the recorded one
    output: str = ""  # the setup's output tail when built now
    hold: Lease | None = field(default=None, compare=False, repr=False)  # the shared flock: in use while held

    def mounts(self, sandbox: Sandbox) -> list[Mount]:
        return [] if sandbox.name == "none" else [Mount(self.path, ENV_MOUNT)]

    def variables(self, sandbox: Sandbox) -> dict[str, str]:
        """``HQ_ENV`` and ``PATH`` with its ``bin`` first, as a command in ``sandbox`` sees them."""
        where = str(self.path) if sandbox.name == "none" else ENV_MOUNT
        system_path = base_environment(Path(sys.base_prefix).resolve())["PATH"]
        return {"HQ_ENV": where, "PATH": f"{where}/bin:{system_path}"}


def environment_key(spec: Environment, repository: Repository, commit: str) -> str:
    """What determines the environment: its block, the interpreter offered, the contents of its inputs."""
    digest = hashlib.sha256()
    digest.update(f"{FORMAT}\0{sys.version}\0{sys.base_prefix}\0{spec.model_dump_json()}\0".encode())
    patterns = [re.compile(glob_regex(glob)) for glob in spec.inputs]
    named = set(spec.setup.run)
    for path, blob in sorted(repository.blobs(commit).items()):
        if path in named or any(pattern.fullmatch(path) for pattern in patterns):
            digest.update(f"{path}\0{blob}\0".encode())
    return digest.hexdigest()[:32]


def environments_dir(settings: Settings, project_id: int) -> Path:
    return settings.data_path / "environments" / f"project-{project_id}"


def ready(settings: Settings, project_id: int, key: str) -> Built | None:
    """The environment of ``key`` when this host has it built."""
    path = environments_dir(settings, project_id) / key
    hold = _hold(path)
    if hold is None:
        return None
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError):
        hold.close()
        return None
    os.utime(path)  # used now: the newest are kept
    return Built(key, path, built=False, seconds=float(manifest.get("seconds", 0)), hold=hold)


def _hold(path: Path) -> Lease | None:
    """A shared flock on the environment at ``path``, once it is sure to be the one there; None if there is none.

    Pruning removes a directory only while it holds it exclusively, so after this waits (a prune in
    progress) the directory it locked may be gone: it is used only if it is still the one at ``path``.
    """
    try:
        hold = Lease(os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC))
    except OSError:
        return None
    fcntl.flock(hold.fd, fcntl.LOCK_SH)
    try:
        if os.stat(path, follow_symlinks=False).st_ino == os.fstat(hold.fd).st_ino:
            return hold
    except FileNotFoundError:
        pass
    hold.close()
    return None


def on_host(settings: Settings, project_id: int) -> list[dict[str, object]]:
    """The project's environments built on this host, newest first: key, when built, setup time, last used."""
    root = environments_dir(settings, project_id)
    found: list[dict[str, object]] = []
    for manifest_path in root.glob(f"*/{MANIFEST}") if root.is_dir() else ():
        try:
            manifest = json.loads(manifest_path.read_text())
        except (OSError, ValueError):
            continue
        used = manifest_path.parent.stat().st_mtime
        found.append({"key": manifest_path.parent.name, "seconds": manifest.get("seconds"), "last_used": used})
    return sorted(found, key=lambda entry: float(str(entry["last_used"])), reverse=True)


def ensure(
    settings: Settings,
    sandbox: Sandbox,
    repository: Repository,
    spec: Environment,
    commit: str,
    *,
    rebuild: bool = False,
) -> Built:
    """The environment for ``commit``: reused when this host has it, else built now (one builder at a time)."""
    project_id = repository.project.id
    key = environment_key(spec, repository, commit)
    if not rebuild and (found := ready(settings, project_id, key)) is not None:
        return found
    with _builder(environments_dir(settings, project_id)) as root:
        if not rebuild and (found := ready(settings, project_id, key)) is not None:
            return found  # built by another run while this one waited
        built = _build(settings, sandbox, repository, spec, commit, root, key)
        _prune(root)
        return built


@contextmanager
def _builder(root: Path) -> Iterator[Path]:
    """One builder per project on this host, across threads and processes; the others wait, then reuse."""
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(root / BUILD_LOCK, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield root
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build(
    settings: Settings,
    sandbox: Sandbox,
    repository: Repository,
    spec: Environment,
    commit: str,
    root: Path,
    key: str,
) -> Built:
    final = root / key
    # Unconfined commands see host paths: the environment is built where it will stay (its manifest, written
    # last, says it is whole). In the sandbox it is always /env, so it is built aside and renamed into place.
    target = final if sandbox.name == "none" else root / f".build-{key}-{uuid.uuid4().hex[:8]}"
    for stale in (final, target):
        if stale.exists():
            remove_tree(stale)
    target.mkdir(mode=0o700)
    tree = repository.worktree(f"env-{key[:12]}-{uuid.uuid4().hex[:8]}", commit)
    started = time.monotonic()
    try:
        partial = Built(key, target, built=True, seconds=0.0)
        result = sandbox.run(
            spec.setup.run,
            workdir=tree.root,
            limits=limits_for(settings, spec.setup_timeout_seconds),
            env=partial.variables(sandbox),
            mounts=[Mount(target, ENV_MOUNT, writable=True)] if sandbox.name != "none" else [],
            network=True,
        )
    finally:
        repository.drop(tree)
    seconds = time.monotonic() - started
    output = result.output[-TAIL_CHARS:]
    if not result.ok:
        remove_tree(target)
        why = f"timed out after {spec.setup_timeout_seconds}s" if result.timed_out else f"exit {result.exit_code}"
        log.warning("environment.setup_failed", key=key, why=why, seconds=round(seconds, 1))
        raise EnvironmentFailed(f"The project's environment setup failed ({why}):\n{output.strip()}")
    manifest = {"key": key, "commit": commit, "seconds": round(seconds, 3), "built_at": time.time()}
    (target / MANIFEST).write_text(json.dumps(manifest))
    if target != final:
        os.rename(target, final)
    log.info("environment.built", key=key, seconds=round(seconds, 1))
    return Built(key, final, built=True, seconds=seconds, output=output, hold=_hold(final))


def prune(settings: Settings, project_id: int) -> list[str]:
    """The upkeep's pass over a project's environments (see _prune()); skipped while one is being built.

    Returns what it removed, by name.
    """
    root = environments_dir(settings, project_id)
    if not root.is_dir():
        return []
    with open(root / BUILD_LOCK, "a+b") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return []  # a builder is at work: it prunes when it is done
        try:
            return _prune(root)
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _prune(root: Path) -> list[str]:
    """Keep the newest KEEP_PER_PROJECT whole environments and every one in use; remove the rest (caller builds).

    Also removes what a builder killed mid-build left: a ``.build-*`` directory, or (unconfined builds
    happen in place) a directory without its manifest. The caller holds the build lock, so no build
    is in progress. Returns the names removed, one log line each.
    """
    whole, broken = [], []
    for path in root.iterdir():
        if path.is_symlink() or not path.is_dir():
            continue
        if path.name.startswith(".build-"):
            broken.append(path)
        elif (path / MANIFEST).is_file():
            whole.append(path)
        else:
            broken.append(path)
    whole.sort(key=lambda path: path.stat().st_mtime, reverse=True)
    removed = []
    for path in whole[KEEP_PER_PROJECT:]:
        if _remove_unused(path):
            log.info("environment.pruned", environment=path.name, directory=str(root))
            removed.append(path.name)
    for path in broken:
        if _remove_unused(path):
            log.info("environment.unfinished_removed", environment=path.name, directory=str(root))
            removed.append(path.name)
    return removed


def _remove_unused(path: Path) -> bool:
    """Remove the environment at ``path`` unless a run holds it (its shared flock); whether it was removed."""
    try:
        handle = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # in use
        remove_tree(path)  # while locked: a run that waits on it finds it gone, and builds afresh
        return True
    finally:
        os.close(handle)
