"""This host's copy of a project: a bare clone under the data dir, and one worktree per issue.

The remote (a path or URL) is the truth every host shares: an issue's work is
branch ``hq/issue-<id>`` there, pushed after every execute run, so any host can
continue it. A push is never forced; a rejected push is the compare-and-set that
says another run moved the branch (its lease was lost) or the base moved.

Worktrees are rebuilt from a commit at the start of every step that needs one:
whatever the last step's commands left behind (build output, a nested
repository, a rewritten ``.git`` file) is deleted, never cleaned up in place.
A worktree lives only while a run holds it: the run removes it when it ends (its
work is on the remote by then), and one whose ``.git`` a command redirected is
quarantined, made inert, never left for a person's git to run what it planted.
Every git call is hardened (agents/git.py); remote transports are limited to
file, http(s) and git (ssh would need the operator's keys in a home HQ does not read).
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from agents.git import GitError, git, run_git
from agents.projects.project_file import PROJECT_FILE, ProjectFile, parse_project_file
from agents.workspace import Workspace, WorkspaceError
from config.datadir import private_data_dir
from config.errors import HQError
from config.log import get_logger
from config.settings import Settings
from db.store.records import ProjectRecord

FETCH_TIMEOUT_SECONDS = 300
QUARANTINE = "quarantine"
"""Under the data dir: worktrees whose ``.git`` a command redirected, made inert and kept private."""
CONFLICT_MARKER = re.compile(r"^(<{7}|>{7})( |$)", re.MULTILINE)
MAX_DIFF_CHARS = 60_000

log = get_logger(__name__)


class RepositoryError(HQError):
    """The remote or the clone cannot do what was asked (unreachable, a missing branch, git failing)."""


@dataclass(frozen=True)
class PushResult:
    pushed: bool
    detail: str  # git's own words when rejected


@dataclass(frozen=True)
class MergeResult:
    commit: str | None  # the merge commit; None on a conflict
    conflicts: tuple[str, ...]


def issue_branch(issue_id: int) -> str:
    return f"hq/issue-{issue_id}"


class Worktree(Workspace):
    """One issue's working directory on this host: a Workspace whose git directory HQ names."""

    def __init__(self, root: Path, git_dir: Path) -> None:
        super().__init__(root, git_dir=git_dir)

    def run(self, *args: str, author: str = "hq", email: str = "hq@heartbeat-hq.invalid") -> str:
        try:
            return run_git(self.root, *args, git_dir=self.git_dir, author=author, email=email)
        except GitError as error:
            raise RepositoryError(error.message) from None

    def head(self) -> str:
        return self.run("rev-parse", "HEAD").strip()

    def diff_stat(self, base: str) -> str:
        """What the worktree changes against ``base``, uncommitted files included, as ``git diff --stat``."""
        self.run("add", "-A", "--intent-to-add")
        return self.run("diff", "--stat=100", base).strip()

    def diff(self, base: str) -> str:
        self.run("add", "-A", "--intent-to-add")
        text = self.run("diff", "--no-color", "--no-ext-diff", base)
        return text if len(text) <= MAX_DIFF_CHARS else text[:MAX_DIFF_CHARS] + "\n… (diff truncated)\n"

    def merge(self, commit: str, message: str, *, author: str, email: str) -> MergeResult:
        """Merge ``commit`` into what is checked out with a merge commit; a conflict is aborted and named."""
        conflicts = self.update_from(commit, message, author=author, email=email)
        if not conflicts:
            return MergeResult(self.head(), ())
        git(self.root, "merge", "--abort", git_dir=self.git_dir)
        return MergeResult(None, conflicts)

    def update_from(self, commit: str, message: str, *, author: str, email: str) -> tuple[str, ...]:
        """Merge ``commit`` into the branch; a conflict is left in place (markers in the files) and its paths
        returned, for the next commit to conclude."""
        result = git(
            self.root,
            "merge",
            "--no-ff",
            "--no-edit",
            "-m",
            message,
            commit,
            git_dir=self.git_dir,
            author=author,
            email=email,
        )
        if result.returncode == 0:
            return ()
        conflicts = self._unmerged()
        if not conflicts:
            raise RepositoryError(f"git merge failed: {(result.stderr or result.stdout).strip()[:300]}")
        return conflicts

    def _unmerged(self) -> tuple[str, ...]:
        return tuple(self.run("diff", "--name-only", "-z", "--diff-filter=U").split("\0")[:-1])

    def conflicted(self, paths: tuple[str, ...]) -> list[str]:
        """Those of ``paths`` that still hold conflict markers (a merge the agent did not finish)."""
        left = []
        for path in paths:
            try:
                text = self.read(path)
            except WorkspaceError:
                continue  # deleted, or no longer text: resolved one way or another
            if CONFLICT_MARKER.search(text):
                left.append(path)
        return left

    def unchanged(self, base: str, commit: str) -> bool:
        """Whether ``commit`` has exactly ``base``'s files (a merge of the base alone changes nothing)."""
        return git(self.root, "diff", "--quiet", base, commit, git_dir=self.git_dir).returncode == 0

    def revert_merge(self, merge_commit: str, message: str, *, author: str, email: str) -> str:
        """A commit undoing ``merge_commit`` (against its first parent) on top of what is checked out."""
        self.run("revert", "--no-commit", "-m", "1", merge_commit, author=author, email=email)
        self.run("commit", "-q", "--no-verify", "-m", message, author=author, email=email)
        return self.head()


class Repository:
    """A project's bare clone on this host (``<data>/projects/<id>-<name>/repo.git``) and its worktrees."""

    def __init__(self, settings: Settings, project: ProjectRecord, *, home: Path | None = None) -> None:
        """``home`` other than the project's own place under the data dir: a scratch clone (hq project add)."""
        self.project = project
        self.data_path = None if home else settings.data_path
        self.home = home or settings.data_path / "projects" / f"{project.id}-{project.name}"
        self.git_dir = self.home / "repo.git"

    # --- the clone ------------------------------------------------------------------------------
    def _git(self, *args: str, remote: bool = False) -> str:
        try:
            return run_git(None, *args, git_dir=self.git_dir, remote=remote)
        except GitError as error:
            raise RepositoryError(f"{self.project.name}: {error.message}") from None

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        """One git writer at a time on this clone, across the threads and processes of this host.

        Concurrent fetches, pushes and worktree changes of one repository would fail on git's own
        ref and index locks instead of waiting; project commands run outside this lock.
        """
        if self.data_path is not None:
            private_data_dir(self.data_path)
        self.home.mkdir(parents=True, exist_ok=True)
        with open(self.home / "clone.lock", "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def sync(self) -> Repository:
        """Create the clone if needed and fetch every branch of the remote (remote-tracking refs only)."""
        with self._exclusive():
            return self._sync()

    def _sync(self) -> Repository:
        if not (self.git_dir / "HEAD").is_file():
            self.git_dir.mkdir(parents=True, exist_ok=True)
            self._git("init", "-q", "--bare")
            self._git("remote", "add", "origin", "--", self.project.repo)
            self._git("config", "remote.origin.fetch", "+refs/heads/*:refs/remotes/origin/*")
        result = git(
            None,
            "fetch",
            "--prune",
            "--no-tags",
            "origin",
            git_dir=self.git_dir,
            remote=True,
            timeout=FETCH_TIMEOUT_SECONDS,
        )
        if result.returncode != 0:
            raise RepositoryError(
                f"{self.project.name}: cannot fetch {self.project.repo}: {result.stderr.strip()[:300]}"
            )
        return self

    def head(self, branch: str) -> str | None:
        """The remote's ``branch`` as last fetched, or None when it has no such branch."""
        result = git(
            None, "rev-parse", "--verify", "--quiet", f"refs/remotes/origin/{branch}^{{commit}}", git_dir=self.git_dir
        )
        return result.stdout.strip() if result.returncode == 0 else None

    def base_head(self) -> str:
        head = self.head(self.project.base_branch)
        if head is None:
            raise RepositoryError(f"{self.project.name}: the remote has no branch {self.project.base_branch!r}")
        return head

    def read_at(self, commit: str, path: str) -> bytes | None:
        """A file's bytes at a commit, or None when it has none there."""
        try:
            result = git(None, "cat-file", "blob", f"{commit}:{path}", git_dir=self.git_dir)
        except GitError as error:
            raise RepositoryError(error.message) from None
        return result.stdout.encode("utf-8") if result.returncode == 0 else None

    def project_file(self) -> ProjectFile:
        """The base branch's ``.hq/project.yaml`` (never the issue branch's): ProjectConfigError if unusable."""
        return parse_project_file(self.read_at(self.base_head(), PROJECT_FILE))

    def is_ancestor(self, commit: str, of: str) -> bool:
        return git(None, "merge-base", "--is-ancestor", commit, of, git_dir=self.git_dir).returncode == 0

    def merge_of(self, commit: str, base: str, *, depth: int = 500) -> str | None:
        """The merge commit on ``base``'s first-parent line that brought ``commit`` in, if any."""
        lines = self._git("rev-list", "--first-parent", "--merges", "--parents", f"-{depth}", base).splitlines()
        for line in lines:
            merge, *parents = line.split()
            if commit in parents[1:]:
                return merge
        return None

    def changes(self, base: str, head: str) -> tuple[str, str, tuple[str, ...]]:
        """``git diff --stat``, the patch and the changed paths from one commit to another, read from the
        commits alone: nothing a command did in a worktree can change what a reviewer is shown."""
        stat = self._git("diff", "--no-ext-diff", "--no-textconv", "--stat=100", base, head).strip()
        patch = self._git("diff", "--no-color", "--no-ext-diff", "--no-textconv", base, head)
        if len(patch) > MAX_DIFF_CHARS:
            patch = patch[:MAX_DIFF_CHARS] + "\n… (diff truncated)\n"
        # Both sides of every change: with rename detection a moved file shows only its new path, and moving
        # .hq/project.yaml away would look like a change elsewhere.
        paths = tuple(self._git("diff", "--name-only", "--no-renames", "-z", base, head).split("\0")[:-1])
        return stat, patch, paths

    def merge_base(self, a: str, b: str) -> str:
        return self._git("merge-base", a, b).strip()

    def revert_of(self, merge: str, base: str, *, depth: int = 500) -> str | None:
        """The revert HQ pushed for ``merge`` on ``base``'s first-parent line, if any (shipping.py's message)."""
        found = self._git(
            "log",
            "--first-parent",
            f"-{depth}",
            "--format=%H",
            "--fixed-strings",
            f"--grep=This reverts merge {merge}.",
            base,
        ).split()
        return found[0] if found else None

    def log(self, branch: str, limit: int = 20) -> list[str]:
        return self._git("log", "--oneline", "--no-decorate", f"-{limit}", f"refs/remotes/origin/{branch}").splitlines()

    def push(self, commit: str, branch: str) -> PushResult:
        """Push ``commit`` to the remote's ``branch``, fast-forward only: never forced."""
        with self._exclusive():
            return self._push(commit, branch)

    def _push(self, commit: str, branch: str) -> PushResult:
        result = git(
            None,
            "push",
            "--porcelain",
            "origin",
            f"{commit}:refs/heads/{branch}",
            git_dir=self.git_dir,
            remote=True,
            timeout=FETCH_TIMEOUT_SECONDS,
        )
        if result.returncode == 0:
            return PushResult(True, "")
        words = (result.stdout + result.stderr).strip()
        if "[rejected]" in words or "[remote rejected]" in words or "non-fast-forward" in words:
            return PushResult(False, words[-500:])
        raise RepositoryError(f"{self.project.name}: cannot push {branch}: {words[-300:]}")

    # --- worktrees -------------------------------------------------------------------------------
    def worktree(self, name: str, commit: str, *, branch: str | None = None) -> Worktree:
        """A fresh worktree ``name`` at ``commit`` (on local ``branch``, else detached), replacing any old one."""
        with self._exclusive():
            return self._worktree(name, commit, branch)

    def _worktree(self, name: str, commit: str, branch: str | None) -> Worktree:
        path = self.home / "worktrees" / name
        admin = self.git_dir / "worktrees" / name
        if path.exists() or path.is_symlink():
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
        if admin.exists():
            shutil.rmtree(admin)
        self._git("worktree", "prune")
        path.parent.mkdir(parents=True, exist_ok=True)
        where = ["-B", branch] if branch else ["--detach"]
        self._git("worktree", "add", "--quiet", "--force", *where, str(path), commit)
        if not admin.is_dir():  # git chose another administrative name: never guess which
            raise RepositoryError(f"{self.project.name}: git did not create the worktree {name} where expected")
        return Worktree(path, admin)

    def issue_worktree(self, issue_id: int, run_id: uuid.UUID | None = None) -> tuple[Worktree, str]:
        """This run's worktree of the issue, at the pushed ``hq/issue-<id>`` if there is one, else the base.

        One directory per run, detached (no local branch two runs could share): a run whose lease
        ran out while it worked can never touch the tree of the run that took the issue over. Older
        runs' trees on this host are removed. Returns the worktree and the commit it starts from (the
        compare-and-set's expected value).
        """
        start = self.head(issue_branch(issue_id)) or self.base_head()
        name = f"issue-{issue_id}-{(run_id or uuid.uuid4()).hex[:12]}"
        for old in sorted((self.home / "worktrees").glob(f"issue-{issue_id}-*")):
            if old.name != name:
                self.drop(Worktree(old, self.git_dir / "worktrees" / old.name))
        return self.worktree(name, start), start

    def scratch_worktree(self, issue_id: int, commit: str) -> Worktree:
        """A detached worktree for checking or merging one commit of the issue (review, deploy)."""
        return self.worktree(f"check-{issue_id}-{uuid.uuid4().hex[:8]}", commit)

    def drop(self, tree: Worktree) -> None:
        """Remove a worktree once its run is over, so nothing a command left waits for a person.

        A tree whose ``.git`` no longer points where HQ put it (a command rewrote it, to plant a
        repository whose configuration runs a program) is never removed silently nor left in place:
        it is quarantined (see quarantine()). Git is never run in it to find out.
        """
        with self._exclusive():
            if tree.root.exists() and not _points_home(tree):
                self._quarantine(tree)
            shutil.rmtree(tree.root, ignore_errors=True)
            shutil.rmtree(tree.git_dir, ignore_errors=True)

    def _quarantine(self, tree: Worktree) -> None:
        """Move a tampered worktree to ``<data>/quarantine`` (0700), every git entry point in it renamed.

        Kept for a person to see what was attempted, and made inert for them first: each ``.git`` in the
        tree and each directory that git would take for a repository (HEAD, objects, refs) gets its
        ``HEAD``/``.git`` renamed, so no git command run there, by a person or a shell prompt, finds a
        configuration to execute.
        """
        parent = (self.data_path or self.home) / QUARANTINE
        parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        parent.chmod(0o700)
        target = parent / f"{self.project.id}-{tree.root.name}-{uuid.uuid4().hex[:8]}"
        tree.root.rename(target)
        neutralised = _neutralise(target)
        log.warning(
            "worktree.quarantined",
            project=self.project.name,
            worktree=tree.root.name,
            moved_to=str(target),
            neutralised=neutralised,
        )


def _points_home(tree: Worktree) -> bool:
    """Whether the tree's ``.git`` is still the file git wrote, naming the administrative directory HQ made."""
    dotgit = tree.root / ".git"
    try:
        if not dotgit.is_file() or dotgit.is_symlink() or dotgit.stat().st_size > 4096:
            return False
        return dotgit.read_text(encoding="utf-8", errors="replace").strip() == f"gitdir: {tree.git_dir}"
    except OSError:
        return False


def _neutralise(root: Path) -> int:
    """Rename every ``.git`` (any case) and the HEAD of every directory git would take for a repository."""
    renamed = 0
    for directory, names, files in os.walk(root):  # symlinks to directories are not followed
        here = Path(directory)
        for name in names + files:
            if name.lower() == ".git" or (name == "HEAD" and {"objects", "refs"} <= set(names)):
                (here / name).rename(here / f"{name}.quarantined")
                renamed += 1
        names[:] = [name for name in names if name.lower() != ".git"]
    return renamed
