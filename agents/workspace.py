"""An issue's workspace: a directory under the data dir that is also a git repository.

Agents read and write files only here. Paths are confined: absolute paths,
``..``, the ``.git`` directory, symlinks that lead outside, and oversized files
are refused. Every workflow step that changed files commits them, with the
agent, run id and issue in the message, so each issue has a reproducible
history of what was produced and by whom.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from agents.tools.registry import ToolError

MAX_FILE_BYTES = 1024 * 1024
MAX_FILES_LISTED = 500


class WorkspaceError(ToolError):
    """A path or file the workspace refuses."""


@dataclass(frozen=True)
class WrittenFile:
    path: str
    sha256: str
    size_bytes: int


def _git_env(name: str, email: str) -> dict[str, str]:
    # Isolated from the host's git config: the same commit on every machine.
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email,
        "GIT_COMMITTER_NAME": name, "GIT_COMMITTER_EMAIL": email,
        "LC_ALL": "C",
    }


class Workspace:
    def __init__(self, root: Path) -> None:
        self.root = root

    # --- git -------------------------------------------------------------------
    def _git(self, *args: str, author: str = "hq", email: str = "hq@heartbeat-hq.invalid") -> str:
        result = subprocess.run(
            ["git", "-C", str(self.root), *args], capture_output=True, text=True, timeout=60,
            env=_git_env(author, email),
        )
        if result.returncode != 0:
            raise WorkspaceError(f"git {args[0]} failed: {result.stderr.strip()[:300]}")
        return result.stdout

    def ensure(self) -> Workspace:
        self.root.mkdir(parents=True, exist_ok=True)
        if not (self.root / ".git").is_dir():
            self._git("init", "-q", "-b", "main")
        return self

    def commit(self, *, agent: str, run_id: uuid.UUID, issue_id: int, workflow: str) -> str | None:
        """Commit every change since the last commit; None when nothing changed."""
        if not (self.root / ".git").is_dir():
            return None
        email = f"{agent}@agents.heartbeat-hq.invalid"
        self._git("add", "-A", author=agent, email=email)
        if not self._git("status", "--porcelain", author=agent, email=email).strip():
            return None
        message = (f"{workflow}: {agent} on issue #{issue_id}\n\n"
                   f"Issue: {issue_id}\nAgent: {agent}\nWorkflow: {workflow}\nRun-Id: {run_id}\n")
        self._git("commit", "-q", "--no-gpg-sign", "-m", message, author=agent, email=email)
        return self._git("rev-parse", "HEAD").strip()

    def log(self) -> list[str]:
        if not (self.root / ".git").is_dir():
            return []
        try:
            return self._git("log", "--format=%H %an %s").splitlines()
        except WorkspaceError:
            return []  # no commits yet

    # --- confinement -------------------------------------------------------------
    def resolve(self, relative: str) -> Path:
        """The real path for a workspace-relative name, or WorkspaceError if it would leave the workspace."""
        if not relative or not relative.strip():
            raise WorkspaceError("path must not be empty")
        if "\x00" in relative or len(relative) > 255:
            raise WorkspaceError("path is not a valid file name")
        pure = PurePosixPath(relative.replace("\\", "/"))
        if pure.is_absolute():
            raise WorkspaceError(f"absolute paths are refused: {relative!r}; use a path inside the workspace")
        if ".." in pure.parts:
            raise WorkspaceError(f"'..' is refused: {relative!r} would leave the workspace")
        if pure.parts and pure.parts[0] == ".git":
            raise WorkspaceError("the .git directory is not part of the workspace")
        root = self.root.resolve()
        candidate = root.joinpath(*pure.parts)
        real = candidate.resolve()
        if real != root and root not in real.parents:
            raise WorkspaceError(f"{relative!r} leads outside the workspace (through a symlink)")
        return candidate

    # --- files -------------------------------------------------------------------
    def read(self, relative: str) -> str:
        path = self.resolve(relative)
        if not path.is_file():
            raise WorkspaceError(f"no such file: {relative}")
        if path.stat().st_size > MAX_FILE_BYTES:
            raise WorkspaceError(f"{relative} is larger than {MAX_FILE_BYTES} bytes")
        try:
            return path.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            raise WorkspaceError(f"{relative} is not UTF-8 text") from None

    def write(self, relative: str, content: str) -> WrittenFile:
        data = content.encode("utf-8")
        if len(data) > MAX_FILE_BYTES:
            raise WorkspaceError(f"content is larger than {MAX_FILE_BYTES} bytes")
        self.ensure()
        path = self.resolve(relative)
        if path.is_symlink():
            raise WorkspaceError(f"{relative} is a symlink; refusing to write through it")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.resolve(relative)  # a parent created above must not have become a way out
        temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
        os.replace(temporary, path)
        shown = path.relative_to(self.root.resolve()).as_posix()
        return WrittenFile(shown, hashlib.sha256(data).hexdigest(), len(data))

    def files(self) -> list[dict[str, object]]:
        if not self.root.is_dir():
            return []
        root = self.root.resolve()
        found = []
        for path in sorted(root.rglob("*")):
            relative = path.relative_to(root)
            if relative.parts[0] == ".git" or path.is_symlink() or not path.is_file():
                continue
            found.append({"path": relative.as_posix(), "size_bytes": path.stat().st_size})
            if len(found) >= MAX_FILES_LISTED:
                break
        return found
