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
are kept, and none used in the last hour is removed (a command may still have it mounted).

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
from dataclasses import dataclass
from pathlib import Path

from config.log import get_logger
from config.settings import Settings
from projects.kinds import EnvironmentFailed
from projects.repo.project_file import Environment
from projects.repo.repository import Repository, remove_tree
from projects.sandbox import Mount, Sandbox, base_environment, limits_for
from projects.workspace import glob_regex

ENV_MOUNT = "/env"
KEEP_PER_PROJECT = 3
IN_USE_SECONDS = 3600  # an environment used this recently may still be mounted by a running command
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
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    os.utime(path)  # used now: pruning keeps it
    return Built(key, path, built=False, seconds=float(manifest.get("seconds", 0)))


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
        _prune(root, keep=built.path)
        return built


@contextmanager
def _builder(root: Path) -> Iterator[Path]:
    """One builder per project on this host, across threads and processes; the others wait, then reuse."""
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(root / "build.lock", "a+b") as handle:
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
    return Built(key, final, built=True, seconds=seconds, output=output)


def _prune(root: Path, *, keep: Path) -> None:
    """Keep the newest KEEP_PER_PROJECT (and ``keep``); never one used within IN_USE_SECONDS."""
    now = time.time()
    built = sorted(
        (path for path in root.iterdir() if path.is_dir() and (path / MANIFEST).exists()),
        key=lambda path: path.stat().st_mtime,
        reverse=True,
    )
    for path in built[KEEP_PER_PROJECT:]:
        if path != keep and now - path.stat().st_mtime > IN_USE_SECONDS:
            remove_tree(path)
    for leftover in root.glob(".build-*"):  # a builder killed mid-build: this one holds the lock now
        remove_tree(leftover)
