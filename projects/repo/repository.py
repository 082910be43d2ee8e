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
quarantined: kept only as a tar archive, never as a directory a person's git could
take for a repository.

Holding a worktree is a lease: an exclusive flock on ``<home>/leases/<name>``,
taken before the tree is made and let go when it is removed, or by the kernel when
the process dies (kill -9, a crash: no ``finally`` needed). Every sync() removes
(or quarantines) each tree whose lease nobody holds, so a killed run's tree does not
outlive it, and a live run of any process on this host sharing the data dir is
never touched: its lease is held.

Everything a command may have shaped (a chain of directories deeper than Python's
recursion limit, symlinks to host paths, directories it made unreadable) is removed
and archived by an iterative walk over directory descriptors that never follows a
symlink nor leaves the tree's filesystem (remove_tree(), _walk()).

Every git call is hardened (projects/git.py); remote transports are limited to
file, http(s) and git (ssh would need the operator's keys in a home HQ does not read).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import stat
import tarfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

from config.datadir import private_data_dir
from config.errors import HQError
from config.log import get_logger
from config.settings import Settings
from db.store.records import ProjectRecord
from projects.git import GitError, git, run_git
from projects.repo.project_file import PROJECT_FILE, ProjectFile, parse_project_file
from projects.walk import entries
from projects.workspace import Workspace, WorkspaceError

FETCH_TIMEOUT_SECONDS = 300
QUARANTINE = "quarantine"
"""Under the data dir (0700): worktrees whose ``.git`` a command redirected, each kept as one tar archive."""
QUARANTINE_MAX_BYTES = 64 * 1024 * 1024
"""Bytes of file content a quarantine archive keeps at most: a larger tree is deleted, with a log line."""
QUARANTINE_MAX_ENTRIES = 100_000
LEASES = "leases"
"""Under a repository's home: one lock file per worktree, flocked while a run holds the tree."""
GC_TIMEOUT_SECONDS = 1800
ISSUE_BRANCH = re.compile(r"hq/issue-([1-9][0-9]{0,17})")
"""Exactly the branches HQ names for issues (issue_branch()); nothing else on a remote is ever deleted."""
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


@dataclass(frozen=True)
class Collected:
    """What a garbage collection of the clone did: its objects' bytes before and after."""

    before: int
    after: int


def issue_branch(issue_id: int) -> str:
    return f"hq/issue-{issue_id}"


class Lease:
    """A flock held on a worktree's lease file: while it is, a live run holds the tree (see Repository._sweep()).

    Closing the descriptor lets it go; so does the kernel when the process dies, and so does the garbage
    collector when a Worktree is abandoned without drop(), with no warning: an abandoned tree is free
    for the next sweep to remove, which is what it should be.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __del__(self) -> None:
        self.close()


class Worktree(Workspace):
    """One issue's working directory on this host: a Workspace whose git directory HQ names."""

    def __init__(self, root: Path, git_dir: Path, lease: Lease | None = None) -> None:
        """``lease``: the flock that says a live run holds this tree (see Repository._sweep())."""
        super().__init__(root, git_dir=git_dir)
        self.lease = lease

    def run(self, *args: str, author: str = "hq", email: str = "hq@heartbeat-hq.invalid") -> str:
        try:
            return run_git(self.root, *args, git_dir=self.git_dir, author=author, email=email)
        except GitError as error:
            raise RepositoryError(error.message) from None

    def head(self) -> str:
        return self.run("rev-parse", "HEAD").strip()

    def files_tree(self) -> str:
        """The tree id of the files as they are now, staged whole as the run's commit will stage them."""
        self.run("add", "-A")
        return self.run("write-tree").strip()

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
    def _exclusive(self, *, wait: bool = True) -> Iterator[bool]:
        """One git writer at a time on this clone, across the threads and processes of this host.

        Concurrent fetches, pushes and worktree changes of one repository would fail on git's own
        ref and index locks instead of waiting; project commands run outside this lock. With
        ``wait=False`` it yields False at once when another holder has it (upkeep skips a busy clone).
        """
        if self.data_path is not None:
            private_data_dir(self.data_path)
        self.home.mkdir(parents=True, exist_ok=True)
        with open(self.home / "clone.lock", "a+b") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def sync(self) -> Repository:
        """Create the clone if needed and fetch every branch of the remote (remote-tracking refs only).

        Every step of a project issue starts here, so this is also where the trees of runs that died
        on this host (no ``finally`` ran: kill -9, a crash) are removed: see _sweep().
        """
        with self._exclusive():
            self._sweep()
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

    def blobs(self, commit: str) -> dict[str, str]:
        """Every file of a commit's tree and its blob id (its content's hash): what an environment's key reads."""
        listing = self._git("ls-tree", "-r", "-z", "--full-tree", commit)
        blobs: dict[str, str] = {}
        for entry in filter(None, listing.split("\0")):
            meta, path = entry.split("\t", 1)
            _mode, kind, blob = meta.split()
            if kind == "blob":
                blobs[path] = blob
        return blobs

    def tree_of(self, commit: str) -> str:
        """The commit's tree id: two commits with one tree hold exactly the same files."""
        return self._git("rev-parse", "--verify", f"{commit}^{{tree}}").strip()

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

    def issue_branches(self) -> dict[int, str]:
        """The remote's issue branches as last fetched (issue id → head); only names exactly ``hq/issue-<id>``."""
        listed = self._git("for-each-ref", "--format=%(objectname) %(refname)", "refs/remotes/origin/hq/")
        found: dict[int, str] = {}
        for line in listed.splitlines():
            head, _, ref = line.partition(" ")
            name = ref.removeprefix("refs/remotes/origin/")
            match = ISSUE_BRANCH.fullmatch(name)
            if match is not None and issue_branch(int(match.group(1))) == name:
                found[int(match.group(1))] = head
        return found

    def delete_issue_branch(self, issue_id: int, expected: str) -> bool:
        """Delete ``hq/issue-<id>`` from the remote if its head is still ``expected`` (a compare-and-set).

        False when the remote refused (the branch moved, or is gone already); RepositoryError when git
        cannot reach the remote. Only the issue's own branch is ever named: nothing else can be deleted.
        """
        branch = issue_branch(issue_id)
        if not re.fullmatch(r"[0-9a-f]{40}", expected):
            raise ValueError(f"not a commit id: {expected!r}")
        lease = f"--force-with-lease=refs/heads/{branch}:{expected}"  # the lease is the expected head, nothing more
        with self._exclusive():
            return self._push_ref(f":refs/heads/{branch}", f"delete {branch}", lease).pushed

    def collect_garbage(self) -> Collected | None:
        """``git gc`` of this host's clone, never while a run uses it; None when skipped or nothing to do.

        Skipped without waiting when another holder has the clone's lock, or any worktree's lease is
        held: a live run of this host may be between git commands in its tree. Holding the clone's lock
        meanwhile keeps every run from starting a git command or a worktree until it is done. Run only
        when git has something to pack (loose objects, several packs, garbage).
        """
        if not (self.git_dir / "HEAD").is_file():
            return None
        with self._exclusive(wait=False) as mine:
            if not mine:
                return None
            self._sweep()
            if self._busy():
                return None
            before = self._objects()
            if before["count"] == 0 and before["packs"] <= 1 and before["garbage"] == 0:
                return None
            self._git("worktree", "prune")
            result = git(None, "gc", "--quiet", git_dir=self.git_dir, timeout=GC_TIMEOUT_SECONDS)
            if result.returncode != 0:
                raise RepositoryError(f"{self.project.name}: git gc failed: {result.stderr.strip()[:300]}")
            after = self._objects()
        return Collected(_object_bytes(before), _object_bytes(after))

    def _objects(self) -> dict[str, int]:
        """``git count-objects -v`` as numbers (sizes in KiB, as git gives them)."""
        counted: dict[str, int] = {}
        for line in self._git("count-objects", "-v").splitlines():
            key, _, value = line.partition(":")
            with contextlib.suppress(ValueError):
                counted[key.strip()] = int(value.strip())
        return counted

    def _busy(self) -> bool:
        """Whether a live run holds any worktree of this clone (caller holds _exclusive(): none can start)."""
        with contextlib.suppress(FileNotFoundError):
            for name in os.listdir(self.home / LEASES):
                lease = self._take_lease(name)
                if lease is None:
                    return True
                self._let_go(name, lease)
        return False

    def disk_used(self) -> dict[str, int]:
        """Bytes this host's copy takes: the clone (with its lock and lease files) and the worktrees."""
        trees = disk_used(self.home / "worktrees")
        return {"clone": max(disk_used(self.home) - trees, 0), "worktrees": trees}

    def _push(self, commit: str, branch: str) -> PushResult:
        return self._push_ref(f"{commit}:refs/heads/{branch}", f"push {branch}")

    def _push_ref(self, refspec: str, what: str, *options: str) -> PushResult:
        """One ``git push`` of ``refspec`` to origin, never forced beyond ``options``' lease: pushed, or refused by
        the remote (a compare-and-set that failed, in git's words); RepositoryError when git cannot do it."""
        result = git(
            None,
            "push",
            "--porcelain",
            *options,
            "origin",
            refspec,
            git_dir=self.git_dir,
            remote=True,
            timeout=FETCH_TIMEOUT_SECONDS,
        )
        if result.returncode == 0:
            return PushResult(True, "")
        words = (result.stdout + result.stderr).strip()
        if "[rejected]" in words or "[remote rejected]" in words or "non-fast-forward" in words:
            return PushResult(False, words[-500:])
        raise RepositoryError(f"{self.project.name}: cannot {what}: {words[-300:]}")

    # --- worktrees -------------------------------------------------------------------------------
    def worktree(self, name: str, commit: str, *, branch: str | None = None) -> Worktree:
        """A fresh worktree ``name`` at ``commit`` (on local ``branch``, else detached), replacing any old one.

        The tree is leased to the caller (held until drop(), or until this process ends).
        """
        with self._exclusive():
            return self._worktree(name, commit, branch)

    def _worktree(self, name: str, commit: str, branch: str | None) -> Worktree:
        path = self.home / "worktrees" / name
        admin = self.git_dir / "worktrees" / name
        lease = self._take_lease(name)  # before the tree exists: no sweep ever sees it unheld
        if lease is None:
            raise RepositoryError(f"{self.project.name}: the worktree {name} is held by a live run")
        try:
            self._discard(Worktree(path, admin))  # a leftover of the same name: quarantined if tampered with
            self._git("worktree", "prune")
            path.parent.mkdir(parents=True, exist_ok=True)
            where = ["-B", branch] if branch else ["--detach"]
            self._git("worktree", "add", "--quiet", "--force", *where, str(path), commit)
            if not admin.is_dir():  # git chose another administrative name: never guess which
                raise RepositoryError(f"{self.project.name}: git did not create the worktree {name} where expected")
        except BaseException:
            self._let_go(name, lease)
            raise
        return Worktree(path, admin, lease)

    def issue_worktree(self, issue_id: int, run_id: uuid.UUID | None = None) -> tuple[Worktree, str]:
        """This run's worktree of the issue, at the pushed ``hq/issue-<id>`` if there is one, else the base.

        One directory per run, detached (no local branch two runs could share): a run whose lease
        ran out while it worked can never touch the tree of the run that took the issue over, nor
        this one its tree. Older runs' trees on this host go when no live run holds them (_sweep()).
        Returns the worktree and the commit it starts from (the compare-and-set's expected value).
        """
        start = self.head(issue_branch(issue_id)) or self.base_head()
        name = f"issue-{issue_id}-{(run_id or uuid.uuid4()).hex[:12]}"
        return self.worktree(name, start), start

    def scratch_worktree(self, issue_id: int, commit: str) -> Worktree:
        """A detached worktree for checking or merging one commit of the issue (review, deploy)."""
        return self.worktree(f"check-{issue_id}-{uuid.uuid4().hex[:8]}", commit)

    def drop(self, tree: Worktree) -> None:
        """Remove a worktree once its run is over, so nothing a command left waits for a person.

        A tree whose ``.git`` no longer points where HQ put it (a command rewrote it, to plant a
        repository whose configuration runs a program) is never removed silently nor left in place:
        it is quarantined first (see _quarantine()). Git is never run in it to find out. Called from
        ``finally`` blocks, so a tree that cannot be removed is logged, never raised over what ended
        the step: its lease is let go, and the next sync() on this host retries it.
        """
        with self._exclusive():
            try:
                self._drop(tree)
            except OSError as error:
                log.warning(
                    "worktree.not_removed", project=self.project.name, worktree=tree.root.name, error=str(error)
                )

    def _drop(self, tree: Worktree) -> None:
        try:
            self._discard(tree)
        finally:
            if tree.lease is not None:
                self._let_go(tree.root.name, tree.lease)
                tree.lease = None

    def _discard(self, tree: Worktree) -> None:
        """Quarantine the tree if it was tampered with, then remove it and git's administrative entry for it."""
        if tree.root.exists() or tree.root.is_symlink():
            if tree.root.is_dir() and not tree.root.is_symlink() and not _points_home(tree):
                self._quarantine(tree)
            remove_tree(tree.root)
        remove_tree(tree.git_dir)

    def sweep(self) -> None:
        """Remove every worktree of this host that no live run holds (see _sweep()), without fetching."""
        with self._exclusive():
            self._sweep()

    def _sweep(self) -> None:
        """Remove every worktree on this host whose lease no live run holds (caller holds _exclusive()).

        The rule: a tree is live exactly while the flock on its lease file is held. A run takes it
        before its tree is made and lets it go after the tree is gone; the kernel lets it go when the
        process dies, however it dies. So a tree whose lease can be taken belongs to a finished or dead
        run, of this process or of any other process on this host sharing the data dir (flocks on one
        file conflict across processes and across open files in one process alike), and nothing else.
        A data dir on a network filesystem where flock is not shared between hosts is not supported.
        """
        names: set[str] = set()
        for where in (self.home / "worktrees", self.home / LEASES, self.git_dir / "worktrees"):
            with contextlib.suppress(FileNotFoundError):
                names.update(os.listdir(where))
        for name in sorted(names):
            lease = self._take_lease(name)
            if lease is None:
                continue  # a live run's
            tree = Worktree(self.home / "worktrees" / name, self.git_dir / "worktrees" / name, lease)
            left = tree.root.exists() or tree.root.is_symlink()
            try:
                self._drop(tree)
            except OSError as error:
                log.warning("worktree.not_swept", project=self.project.name, worktree=name, error=str(error))
                continue
            if left:
                log.info("worktree.swept", project=self.project.name, worktree=name)

    def _take_lease(self, name: str) -> Lease | None:
        """The lease on worktree ``name``, flocked; None when a live run holds it. Never waits."""
        leases = self.home / LEASES
        leases.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = leases / name
        while True:
            lease = Lease(os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))
            try:
                fcntl.flock(lease.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                lease.close()
                return None
            try:  # the file locked is still the one at the path (not one a finishing run just unlinked)
                if os.stat(path).st_ino == os.fstat(lease.fd).st_ino:
                    return lease
            except FileNotFoundError:
                pass
            lease.close()

    def _let_go(self, name: str, lease: Lease) -> None:
        """Delete the lease file, then unlock it (in that order: nobody can lock a file that is about to go)."""
        with contextlib.suppress(FileNotFoundError):
            (self.home / LEASES / name).unlink()
        lease.close()

    def _quarantine(self, tree: Worktree) -> None:
        """Keep a tampered worktree as one tar archive in ``<data>/quarantine`` (0700), for a person to see
        what was attempted; the caller then deletes the tree.

        An archive, not a directory: git takes many shapes of directory for a repository (a ``.git``
        file or directory, a bare layout, a ``HEAD`` beside a ``commondir`` naming another directory,
        ...), and renaming the entry points of the shapes one knows leaves the others. No git command
        run in the quarantine, by a person or a shell prompt, finds anything in a tarball. Extracting it
        is a deliberate act (and what comes out is the command's, never to run git in). A tree over
        QUARANTINE_MAX_BYTES or QUARANTINE_MAX_ENTRIES is not kept: a log line says so.
        """
        parent = (self.data_path or self.home) / QUARANTINE
        parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        parent.chmod(0o700)
        target = parent / f"{self.project.id}-{tree.root.name}-{uuid.uuid4().hex[:8]}.tar.gz"
        try:
            kept = _archive(tree.root, target, max_bytes=QUARANTINE_MAX_BYTES, max_entries=QUARANTINE_MAX_ENTRIES)
        except OSError as error:  # the tree goes anyway: a trap is never left standing for want of a copy
            log.warning(
                "worktree.quarantine_failed", project=self.project.name, worktree=tree.root.name, error=str(error)
            )
            return
        if kept is None:
            log.warning(
                "worktree.quarantine_too_large",
                project=self.project.name,
                worktree=tree.root.name,
                detail=f"over {QUARANTINE_MAX_BYTES} bytes or {QUARANTINE_MAX_ENTRIES} entries: deleted, not kept",
            )
            return
        log.warning(
            "worktree.quarantined",
            project=self.project.name,
            worktree=tree.root.name,
            archive=str(target),
            entries=kept,
        )


@contextmanager
def scratch(repository: Repository, issue_id: int, commit: str) -> Iterator[Worktree]:
    """A detached worktree of ``commit`` for one job, dropped when it is done."""
    tree = repository.scratch_worktree(issue_id, commit)
    try:
        yield tree
    finally:
        repository.drop(tree)


def _object_bytes(counted: dict[str, int]) -> int:
    return (counted.get("size", 0) + counted.get("size-pack", 0) + counted.get("size-garbage", 0)) * 1024


def disk_used(top: Path) -> int:
    """Bytes on disk under ``top`` (as ``du`` counts them: allocated blocks, each hard-linked file once).

    Iterative, never following a symlink nor leaving ``top``'s filesystem; what cannot be read is not counted.
    """
    seen: set[tuple[int, int]] = set()
    total = 0
    try:
        device = top.lstat().st_dev
    except OSError:
        return 0
    for entry in entries(top, descend=lambda entry: entry.stat(follow_symlinks=False).st_dev == device):
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if info.st_dev != device:
            continue
        if info.st_nlink > 1 and not stat.S_ISDIR(info.st_mode):
            if (info.st_dev, info.st_ino) in seen:
                continue
            seen.add((info.st_dev, info.st_ino))
        total += info.st_blocks * 512
    return total


def _points_home(tree: Worktree) -> bool:
    """Whether the tree's ``.git`` is still the file git wrote, naming the administrative directory HQ made."""
    dotgit = tree.root / ".git"
    try:
        if not dotgit.is_file() or dotgit.is_symlink() or dotgit.stat().st_size > 4096:
            return False
        return dotgit.read_text(encoding="utf-8", errors="replace").strip() == f"gitdir: {tree.git_dir}"
    except OSError:
        return False


class _Entry(NamedTuple):
    """One step of _walk(): ``name`` in the directory open as ``dir_fd``; ``path`` relative to the top."""

    kind: Literal["dir", "other", "leave"]  # entering a directory, a non-directory, a directory done with
    dir_fd: int
    name: str
    path: str


_OPEN_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _walk(top: Path) -> Iterator[_Entry]:
    """Every entry under ``top``, a directory before its contents and its "leave" after them; iterative.

    Only the directory being read is open (a chain of any depth needs neither recursion nor a
    descriptor per level): going down opens a child relative to its parent with O_NOFOLLOW, going up
    opens ``..`` and checks it is the directory it came from (device and inode). No symlink is ever
    followed; a directory on another filesystem is yielded as "other", never entered. A directory
    the command made unreadable gets its owner's rwx back first. ``dir_fd`` is valid only until the
    next step; the consumer may unlink or rmdir through it. Raises OSError.
    """
    try:
        parent = os.open(top.parent, _OPEN_DIRECTORY)
    except FileNotFoundError:
        return
    current = -1
    try:
        try:
            info = os.stat(top.name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return
        if not stat.S_ISDIR(info.st_mode):
            yield _Entry("other", parent, top.name, "")
            return
        current = _enter(parent, top.name, info)
        device = info.st_dev
        frames: list[tuple[str, str, os.stat_result, list[str]]] = []  # (name, path, stat, subdirectories left)
        name, path = top.name, ""
        while True:
            with os.scandir(current) as listing:
                found = list(listing)
            subdirectories = []
            for entry in found:
                child = f"{path}/{entry.name}" if path else entry.name
                if entry.is_dir(follow_symlinks=False):
                    subdirectories.append(entry.name)
                else:
                    yield _Entry("other", current, entry.name, child)
            subdirectories.reverse()
            frames.append((name, path, info, subdirectories))
            while frames:
                name, path, info, left = frames[-1]
                if left:
                    child_name = left.pop()
                    child_path = f"{path}/{child_name}" if path else child_name
                    try:
                        child_info = os.stat(child_name, dir_fd=current, follow_symlinks=False)
                    except FileNotFoundError:
                        continue
                    if not stat.S_ISDIR(child_info.st_mode) or child_info.st_dev != device:
                        yield _Entry("other", current, child_name, child_path)
                        continue
                    yield _Entry("dir", current, child_name, child_path)
                    below = _enter(current, child_name, child_info)
                    os.close(current)
                    current = below
                    name, path, info = child_name, child_path, child_info
                    break  # read it
                frames.pop()
                if not frames:
                    os.close(current)
                    current = -1
                    yield _Entry("leave", parent, top.name, "")
                    return
                above = os.open("..", _OPEN_DIRECTORY, dir_fd=current)
                expected = frames[-1][2]
                seen = os.fstat(above)
                if (seen.st_dev, seen.st_ino) != (expected.st_dev, expected.st_ino):
                    os.close(above)
                    raise OSError(f"{top}/{path}: moved while it was walked")
                os.close(current)
                current = above
                yield _Entry("leave", current, name, path)
    finally:
        if current >= 0:
            os.close(current)
        os.close(parent)


def _enter(dir_fd: int, name: str, info: os.stat_result) -> int:
    """Open directory ``name`` (as it was when stat'ed: ``info``), giving its owner rwx back if needed."""
    if info.st_mode & 0o700 != 0o700:
        handle = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        try:
            seen = os.fstat(handle)
            if stat.S_ISDIR(seen.st_mode) and seen.st_ino == info.st_ino:
                os.chmod(f"/proc/self/fd/{handle}", stat.S_IMODE(seen.st_mode) | 0o700)
        finally:
            os.close(handle)
    opened = os.open(name, _OPEN_DIRECTORY, dir_fd=dir_fd)
    seen = os.fstat(opened)
    if (seen.st_dev, seen.st_ino) != (info.st_dev, info.st_ino):
        os.close(opened)
        raise OSError(f"{name}: replaced while it was walked")
    return opened


def remove_tree(top: Path) -> None:
    """Delete ``top`` and everything under it, whatever shape a command gave it (see _walk()); OSError if not.

    Used for every worktree HQ removes: ``shutil.rmtree`` recurses (RecursionError on a chain deeper
    than the interpreter's limit, which ``ignore_errors`` does not catch), and a command can make one.
    """
    for entry in _walk(top):
        with contextlib.suppress(FileNotFoundError):
            if entry.kind == "leave":
                os.rmdir(entry.name, dir_fd=entry.dir_fd)
            elif entry.kind == "other":
                os.unlink(entry.name, dir_fd=entry.dir_fd)


class _TooLarge(Exception):
    pass


def _archive(top: Path, target: Path, *, max_bytes: int, max_entries: int) -> int | None:
    """Write the tree at ``top`` to ``target`` as a gzipped tar (0600): directories, regular files (setid
    bits dropped) and symlinks (as links, never followed); sockets, FIFOs and devices are left out.
    Returns the number of entries, or None (and no file) when the tree is over a limit."""
    partial = target.with_name(target.name + ".partial")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    entries = size = 0
    try:
        with (
            os.fdopen(descriptor, "wb") as output,
            tarfile.open(fileobj=output, mode="w:gz", format=tarfile.PAX_FORMAT) as archive,
        ):
            for entry in _walk(top):
                if entry.kind == "leave" or not entry.path:
                    continue
                entries += 1
                if entries > max_entries:
                    raise _TooLarge
                size += _add(archive, entry, max_bytes - size)
    except _TooLarge:
        partial.unlink(missing_ok=True)
        return None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.rename(target)
    return entries


def _add(archive: tarfile.TarFile, entry: _Entry, room: int) -> int:
    """Add one entry to the archive; the bytes of file content it took. _TooLarge when over ``room``."""
    info = os.stat(entry.name, dir_fd=entry.dir_fd, follow_symlinks=False)
    member = tarfile.TarInfo(entry.path)
    member.mtime = int(info.st_mtime)
    member.mode = stat.S_IMODE(info.st_mode) & 0o777
    if entry.kind == "dir":
        member.type = tarfile.DIRTYPE
        archive.addfile(member)
        return 0
    if stat.S_ISLNK(info.st_mode):
        member.type = tarfile.SYMTYPE
        member.linkname = os.readlink(entry.name, dir_fd=entry.dir_fd)
        archive.addfile(member)
        return 0
    if not stat.S_ISREG(info.st_mode):
        return 0
    handle = os.open(entry.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=entry.dir_fd)
    with os.fdopen(handle, "rb") as content:
        opened = os.fstat(handle)
        if not stat.S_ISREG(opened.st_mode) or opened.st_ino != info.st_ino:
            return 0
        if opened.st_size > room:
            raise _TooLarge
        member.size = opened.st_size
        archive.addfile(member, content)
        return opened.st_size
