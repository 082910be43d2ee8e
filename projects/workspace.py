"""An issue's workspace: a directory under the data dir that is also a git repository.

Agents read and write files only here. Paths are confined: absolute paths,
``..``, directories, any ``.git`` component (in any case) and git's other own
files, symlinks that lead outside, and oversized files are refused; git itself
runs hardened (projects/git.py). Every workflow step that changed files commits them, with the
agent, run id and issue in the message, so each issue has a reproducible
history of what was produced and by whom.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from config.errors import ToolError
from projects import commits
from projects.git import GitError, is_git_name, run_git

MAX_FILE_BYTES = 1024 * 1024
MAX_FILES_LISTED = 500
MAX_GLOBSTARS = 3


class WorkspaceError(ToolError):
    """A path or file the workspace refuses."""


@dataclass(frozen=True)
class WrittenFile:
    path: str
    sha256: str
    size_bytes: int


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: no file name, and no audit row, can hold it
        return False
    return True


def _glob_match(path: str, pattern: str) -> bool:
    """``*`` within a name, ``**`` across directories; a pattern without '/' matches the file name anywhere."""
    pure = PurePosixPath(path)
    if "/" not in pattern:
        return fnmatch.fnmatchcase(pure.name, pattern)
    return re.fullmatch(glob_regex(pattern), path) is not None


def glob_regex(pattern: str) -> str:
    """The glob as a regular expression; repeated ``**/`` collapse and at most MAX_GLOBSTARS are allowed,
    since each one multiplies the backtracking a hostile pattern can make the matcher do."""
    pattern = re.sub(r"(\*\*/)+", "**/", pattern)
    if pattern.count("**") > MAX_GLOBSTARS:
        raise WorkspaceError(f"a pattern may use '**' at most {MAX_GLOBSTARS} times")
    parts = []
    for piece in re.split(r"(\*\*/?|\*|\?)", pattern):
        if piece in ("**", "**/"):
            parts.append("(?:.*/)?" if piece == "**/" else ".*")
        elif piece == "*":
            parts.append("[^/]*")
        elif piece == "?":
            parts.append("[^/]")
        else:
            parts.append(re.escape(piece))
    return "".join(parts)


class Workspace:
    """A document workspace (its own repository at ``root/.git``), or, given ``git_dir``, a project worktree.

    A worktree's ``.git`` is a file anything run in the worktree could rewrite, so the
    worktree's git directory is named by HQ (projects/repo/repository.py), never read from it.
    """

    def __init__(self, root: Path, *, git_dir: Path | None = None) -> None:
        self.root = root
        self.worktree = git_dir is not None
        self.git_dir = git_dir if git_dir is not None else root / ".git"

    # --- git -------------------------------------------------------------------
    def _git(self, *args: str, author: str = "hq", email: str = "hq@heartbeat-hq.invalid") -> str:
        try:
            return run_git(self.root, *args, git_dir=self.git_dir, author=author, email=email)
        except GitError as error:
            raise WorkspaceError(error.message) from None

    def ensure(self) -> Workspace:
        if self.worktree:  # made by the project's repository, never here
            if not self.root.is_dir() or not self.git_dir.is_dir():
                raise WorkspaceError(f"the worktree {self.root} is missing")
            return self
        self.root.mkdir(parents=True, exist_ok=True)
        if not self.git_dir.is_dir():
            self._git("init", "-q", "-b", "main")
        return self

    def commit(
        self, *, agent: str, run_id: uuid.UUID, issue_id: int, workflow: str, summary: str | None = None
    ) -> str | None:
        """Commit every change since the last commit; None when nothing changed.

        The subject is the agent's ``summary`` made safe (projects/commits.py), else
        "<workflow>: <agent> on issue #N"; the trailers say the issue, the run and the agent.
        """
        if not self.git_dir.is_dir():
            return None
        email = f"{agent}@agents.heartbeat-hq.invalid"
        self._git("add", "-A", author=agent, email=email)
        if not self._git("status", "--porcelain", author=agent, email=email).strip():
            return None
        text = commits.message(
            summary, fallback=f"{workflow}: {agent} on issue #{issue_id}", issue_id=issue_id, run_id=run_id, agent=agent
        )
        self._git("commit", "-q", "--no-gpg-sign", "--cleanup=verbatim", "-m", text, author=agent, email=email)
        return self._git("rev-parse", "HEAD").strip()

    def log(self) -> list[str]:
        if not self.git_dir.is_dir():
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
        if "\x00" in relative or len(relative) > 255 or not _encodable(relative):
            raise WorkspaceError("path is not a valid file name")
        pure = PurePosixPath(relative.replace("\\", "/"))
        if pure.is_absolute():
            raise WorkspaceError(f"absolute paths are refused: {relative!r}; use a path inside the workspace")
        if ".." in pure.parts:
            raise WorkspaceError(f"'..' is refused: {relative!r} would leave the workspace")
        if relative.replace("\\", "/").rstrip().split("/")[-1] in ("", "."):
            raise WorkspaceError(f"{relative!r} names a directory; give a file path such as 'notes/plan.md'")
        if any(is_git_name(part) for part in pure.parts):
            raise WorkspaceError(
                f"{relative!r} is refused: git's own files (.git, .gitmodules, .gitattributes, "
                ".gitignore) are not part of the workspace"
            )
        root = self.root.resolve()
        candidate = root.joinpath(*pure.parts)
        real = candidate.resolve()
        if real != root and root not in real.parents:
            raise WorkspaceError(f"{relative!r} leads outside the workspace (through a symlink)")
        if any(is_git_name(part) for part in real.relative_to(root).parts):
            raise WorkspaceError(f"{relative!r} leads into git's own files (through a symlink)")
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
        self.resolve(relative)  # refused before anything is created
        self.ensure()
        path = self.resolve(relative)
        if path.is_symlink():
            raise WorkspaceError(f"{relative} is a symlink; refusing to write through it")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.resolve(relative)  # a parent created above must not have become a way out
        if path.is_dir():
            raise WorkspaceError(f"{relative!r} is a directory; give a file path inside it")
        # Written beside the repository's own files, so no commit can pick up a half-written file.
        scratch = self.git_dir.resolve() / "hq-tmp"
        scratch.mkdir(exist_ok=True)
        temporary = scratch / f"{uuid.uuid4().hex}.tmp"
        try:
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(data)
            os.replace(temporary, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()
        shown = path.relative_to(self.root.resolve()).as_posix()
        return WrittenFile(shown, hashlib.sha256(data).hexdigest(), len(data))

    def files(self, pattern: str | None = None) -> list[dict[str, object]]:
        """Regular files (never git's own, never through a link), or those matching a glob like 'src/**/*.py'."""
        if not self.root.is_dir():
            return []
        root = self.root.resolve()
        found = []
        for path in sorted(root.rglob("*")):
            relative = path.relative_to(root)
            if any(is_git_name(part) for part in relative.parts) or path.is_symlink() or not path.is_file():
                continue
            if pattern is not None and not _glob_match(relative.as_posix(), pattern):
                continue
            found.append({"path": relative.as_posix(), "size_bytes": path.stat().st_size})
            if len(found) >= MAX_FILES_LISTED:
                break
        return found
