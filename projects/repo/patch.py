"""An issue's change as a patch, read from the commits alone: what ``hq issue diff`` prints.

Which change: a done issue's is its merge on the base branch against the merge's first parent
(``issues.merged_sha``); any other issue's is its branch head as the database recorded it (``shown_head``:
the head the passing review saw, which deploy ships, while the issue waits for approval or deploy; else the
commit its last execute run recorded) against that head's merge base with the base branch. A head the
base branch already holds (merged, not yet marked done) is shown as the merge that brought it in.

The commits are read in HQ's clone under the data dir, fetched first so a commit another host pushed is
there; with the remote out of reach the clone as last fetched serves if it holds them. Never a worktree,
and every git call hardened (projects/git.py): no external diff driver, no textconv, no colour, so nothing
in the repository (its attributes naming a driver, say) runs or shapes what is shown. The text is the
repository's and a model's: the caller prints it safely.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from config.log import get_logger
from config.settings import Settings
from db.store.records import ProjectRecord
from projects.git import GitError, git
from projects.repo.repository import Repository, RepositoryError

MAX_PATCH_CHARS = 5_000_000
"""Characters of a patch printed at most; a larger one is cut at a line and says how to see it whole."""
STAT_WIDTH = "--stat=200"
# Options of every diff shown: nothing the repository configures or its attributes name may run or recolour it.
DIFF_OPTIONS = ("--no-color", "--no-ext-diff", "--no-textconv", "--src-prefix=a/", "--dst-prefix=b/")
SHIPPED = frozenset({"pending_approval", "approved", "deploying", "done"})
"""Statuses after a passing review: the head it saw (``issues.reviewed_sha``) is what ships."""
_COMMIT = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")

log = get_logger(__name__)


@dataclass(frozen=True)
class IssuePatch:
    """One issue's change: ``head`` against ``base``; ``merged`` when it is a merge against its first parent."""

    base: str
    head: str
    merged: bool
    stat: str
    text: str | None  # the patch; None when only the stat was asked for
    truncated: bool = False
    fetched: bool = True  # False: the remote was out of reach and the clone as last fetched was read


def shown_head(status: str, *, reviewed_sha: str | None, recorded_sha: str | None) -> str | None:
    """The branch head the database holds for an issue: the reviewed one once it passed review, else the
    last recorded (a rework after a revise or a failed deploy records a newer head than the reviewed one)."""
    if status in SHIPPED and reviewed_sha:
        return reviewed_sha
    return recorded_sha or None


def issue_patch(
    settings: Settings,
    project: ProjectRecord,
    *,
    head: str | None,
    merged: str | None,
    stat_only: bool = False,
) -> IssuePatch:
    """The change ``merged`` made on the base branch, else ``head``'s against its merge base with it.

    Raises RepositoryError when the commits cannot be read (the remote out of reach and the clone without
    them, a commit the remote no longer has), ValueError when neither commit is given or one is not a hash.
    """
    wanted = merged or head
    if wanted is None:
        raise ValueError("no commit to show")
    for commit in (head, merged):
        if commit is not None and not _COMMIT.fullmatch(commit):
            raise ValueError(f"not a commit hash: {commit!r}")
    repository, fetched = _synced(Repository(settings, project), wanted)
    if merged is not None:
        base, shown, is_merge = _first_parent(repository, merged), merged, True
    else:
        assert head is not None
        base, shown, is_merge = _against_base(repository, head)
    stat = _diff(repository, STAT_WIDTH, base, shown).strip("\n")
    if stat_only:
        return IssuePatch(base, shown, is_merge, stat, None, fetched=fetched)
    text = _diff(repository, base, shown)
    truncated = len(text) > MAX_PATCH_CHARS
    if truncated:
        text = text[: text.rfind("\n", 0, MAX_PATCH_CHARS) + 1]
    return IssuePatch(base, shown, is_merge, stat, text, truncated, fetched)


def _synced(repository: Repository, commit: str) -> tuple[Repository, bool]:
    """The clone fetched now; when the remote cannot be reached, the clone as it is if it holds ``commit``."""
    try:
        return repository.sync(), True
    except RepositoryError as error:
        if not _has(repository, commit):
            raise
        log.warning("patch.not_fetched", project=repository.project.name, error=error.message)
        return repository, False


def _has(repository: Repository, commit: str) -> bool:
    if not (repository.git_dir / "HEAD").is_file():
        return False
    try:
        found = git(None, "cat-file", "-e", f"{commit}^{{commit}}", git_dir=repository.git_dir)
    except GitError:
        return False
    return found.returncode == 0


def _against_base(repository: Repository, head: str) -> tuple[str, str, bool]:
    """(base, head, is a merge): the branch head against its merge base with the base branch, or the merge
    that brought it into the base branch when the base holds it already."""
    if not _has(repository, head):
        raise RepositoryError(f"{repository.project.name}: the remote no longer has commit {head[:12]}")
    base_head = repository.base_head()
    if repository.is_ancestor(head, base_head):
        merge = repository.merge_of(head, base_head)
        if merge is not None:
            return _first_parent(repository, merge), merge, True
    return repository.merge_base(base_head, head), head, False


def _first_parent(repository: Repository, merge: str) -> str:
    if not _has(repository, merge):
        raise RepositoryError(f"{repository.project.name}: the remote no longer has commit {merge[:12]}")
    try:
        found = git(None, "rev-parse", "--verify", "--quiet", f"{merge}^1", git_dir=repository.git_dir)
    except GitError as error:
        raise RepositoryError(error.message) from None
    if found.returncode != 0:  # a root commit: its whole tree is the change
        return _empty_tree(repository)
    return found.stdout.strip()


def _empty_tree(repository: Repository) -> str:
    try:
        made = git(None, "hash-object", "-t", "tree", "/dev/null", git_dir=repository.git_dir)
    except GitError as error:
        raise RepositoryError(error.message) from None
    return made.stdout.strip()


def _diff(repository: Repository, *args: str) -> str:
    try:
        result = git(None, "diff", *DIFF_OPTIONS, *args, git_dir=repository.git_dir)
    except GitError as error:
        raise RepositoryError(f"{repository.project.name}: {error.message}") from None
    if result.returncode != 0:
        raise RepositoryError(f"{repository.project.name}: git diff failed: {result.stderr.strip()[:300]}")
    return result.stdout
