"""Deploy by merge: the reviewed branch head merged into the base branch, checked, pushed, verified.

In order: merge ``hq/issue-<id>`` into the base with a merge commit ("Merge
issue #N: title", the title made one safe line, then HQ's trailers naming the
issue, the deploy run and its agent: projects/commits.py); run the gate on the
merged commit; run ``deploy`` if the project defines one; push the base branch (never forced; rejected because the
base moved: fetch and merge again, once); then run ``verify`` (absent: the gate
on the merged commit was the verification). A failing verify pushes a revert of
the merge. Every command runs in the sandbox and is recorded against the merged
commit in the ``book`` (projects/repo/checks.py). The gate on the merge reuses
the review's results when the merge holds exactly the reviewed files (the base
did not move), so an unmoved base runs the suite once per issue. A run that
finds its head already merged (a crash after the push) goes straight to
verify, so shipping twice never merges twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

from config.settings import Settings
from projects import commits
from projects.kinds import Shipped
from projects.repo import checks
from projects.repo.checks import Check, CheckBook
from projects.repo.environment import Built
from projects.repo.project_file import ProjectFile
from projects.repo.repository import Repository, RepositoryError, Worktree, issue_branch
from projects.sandbox import Sandbox
from projects.watch import Watch

MERGE_TRIES = 2  # the first push, and once more after the base moved
REVERT_TRIES = 3


@dataclass(frozen=True)
class Shipment:
    """What to ship: the issue, the exact reviewed commit, and who signs the merge."""

    issue_id: int
    title: str
    head: str
    author: str
    email: str
    watch: Watch  # the run's lease keeper: told what runs, and stops it when the issue is no longer the run's
    run_id: uuid.UUID | None = None  # the deploy run: its merge and revert commits name it in their trailers
    environment_at: Callable[[str], Built | None] = lambda commit: None  # the project's environment for a commit


def ship(
    settings: Settings,
    repository: Repository,
    project_file: ProjectFile,
    sandbox: Sandbox,
    what: Shipment,
    book: CheckBook,
) -> Shipped:
    base_branch = repository.project.base_branch
    for attempt in range(1, MERGE_TRIES + 1):
        base = repository.base_head()
        if repository.is_ancestor(what.head, base):  # merged already: by a run that died after its push, or raced
            return _merged_before(settings, repository, project_file, sandbox, what, base, book)
        tree = repository.scratch_worktree(what.issue_id, base)
        try:
            outcome = _merge_and_check(settings, project_file, sandbox, what, tree, book)
        finally:
            repository.drop(tree)
        if isinstance(outcome, Shipped):
            return outcome
        deployed = _deploy(settings, repository, project_file, sandbox, what, outcome, book)
        if deployed is not None:
            return deployed
        pushed = repository.push(outcome, base_branch)
        if pushed.pushed:
            return _verify(settings, repository, project_file, sandbox, what, outcome, book)
        if attempt == MERGE_TRIES:
            return Shipped(False, f"{base_branch} kept moving; the push was refused twice:\n{pushed.detail}")
        repository.sync()
    raise AssertionError("unreachable")


def _merged_before(
    settings: Settings,
    repository: Repository,
    project_file: ProjectFile,
    sandbox: Sandbox,
    what: Shipment,
    base: str,
    book: CheckBook,
) -> Shipped:
    """The head is on the base already: verify its merge, unless a revert of it is there too."""
    merged = repository.merge_of(what.head, base)
    if merged is None:
        return Shipped(False, f"{issue_branch(what.issue_id)} is already in the base branch, but not by a merge")
    revert = repository.revert_of(merged, base)
    if revert is not None:
        return Shipped(
            False, f"Verify failed after the merge {merged[:12]}, which {revert[:12]} reverted.", reverted=revert
        )
    return _verify(settings, repository, project_file, sandbox, what, merged, book)


def _merge_and_check(
    settings: Settings,
    project_file: ProjectFile,
    sandbox: Sandbox,
    what: Shipment,
    tree: Worktree,
    book: CheckBook,
) -> str | Shipped:
    """The merge commit, gate-checked and deployed; a Shipped failure when any step says no."""
    message = commits.message(
        f"Merge issue #{what.issue_id}: {what.title}",
        fallback=f"Merge issue #{what.issue_id}",
        issue_id=what.issue_id,
        run_id=what.run_id,
        agent=what.author,
    )
    merge = tree.merge(what.head, message, author=what.author, email=what.email)
    if merge.commit is None:
        paths = "\n".join(f"- {path}" for path in merge.conflicts)
        return Shipped(False, f"Merge conflict with the base branch in:\n{paths}", conflicts=merge.conflicts)
    gate = checks.run_gate(
        settings,
        sandbox,
        project_file,
        lambda: nullcontext(tree),
        tree.run("rev-parse", f"{merge.commit}^{{tree}}").strip(),
        book,
        commit=merge.commit,
        stage="merge",
        issue_id=what.issue_id,
        watch=what.watch,
        env=what.environment_at(merge.commit),
    )
    if not all(check.ok for check in gate):
        return Shipped(False, "The gate failed on the merged commit.\n" + checks.report(gate, commit=merge.commit))
    return merge.commit


def _deploy(
    settings: Settings,
    repository: Repository,
    project_file: ProjectFile,
    sandbox: Sandbox,
    what: Shipment,
    merged: str,
    book: CheckBook,
) -> Shipped | None:
    """Run ``deploy`` (if any) in a fresh tree of the merged commit, not the one the gate's code ran in."""
    if project_file.deploy is None:
        return None
    deployed = _run_at(settings, repository, project_file, sandbox, what, merged, "deploy")
    _record(book, repository, what, deployed, merged, "deploy")
    return None if deployed.ok else Shipped(False, "deploy failed.\n" + checks.report([deployed], commit=merged))


def _verify(
    settings: Settings,
    repository: Repository,
    project_file: ProjectFile,
    sandbox: Sandbox,
    what: Shipment,
    merged: str,
    book: CheckBook,
) -> Shipped:
    if project_file.verify is None:
        return Shipped(True, f"Merged as {merged[:12]}; the gate passed on the merged commit.", merged=merged)
    verified = _run_at(settings, repository, project_file, sandbox, what, merged, "verify")
    if verified.result.cancelled:  # the run lost its issue: the merge stands; the run that holds it verifies
        return Shipped(False, verified.result.output, merged=merged, unfinished=True)
    _record(book, repository, what, verified, merged, "verify")
    if verified.ok:
        return Shipped(True, f"Merged as {merged[:12]} and verified.", merged=merged)
    failed = "verify failed after the merge.\n" + checks.report([verified], commit=merged)
    try:
        revert = _revert(repository, what, merged)
    except RepositoryError as error:
        return Shipped(False, f"{failed}\n\nThe revert failed too: {error.message}", revert_failed=True)
    if revert is None:
        return Shipped(False, f"{failed}\n\nThe revert could not be pushed.", revert_failed=True)
    return Shipped(False, f"{failed}\n\nReverted by {revert[:12]}.", reverted=revert)


def _run_at(
    settings: Settings,
    repository: Repository,
    project_file: ProjectFile,
    sandbox: Sandbox,
    what: Shipment,
    commit: str,
    name: str,
) -> Check:
    """One project command in a fresh tree of ``commit``: never in a tree another command already ran in."""
    tree = repository.scratch_worktree(what.issue_id, commit)
    try:
        return checks.run_named(
            settings,
            sandbox,
            project_file,
            name,
            tree,
            issue_id=what.issue_id,
            watch=what.watch,
            environment=what.environment_at(commit),
        )
    finally:
        repository.drop(tree)


def _record(book: CheckBook, repository: Repository, what: Shipment, check: Check, commit: str, stage: str) -> None:
    built = what.environment_at(commit)
    tree = repository.tree_of(commit)
    book.record([check], commit=commit, tree=tree, env_key=built.key if built else None, stage=stage)


def _revert(repository: Repository, what: Shipment, merged: str) -> str | None:
    """Push a revert of ``merged`` on top of the base as it is now; None when every push was refused."""
    message = commits.message(
        f"Revert issue #{what.issue_id}: verify failed",
        fallback=f"Revert issue #{what.issue_id}",
        issue_id=what.issue_id,
        run_id=what.run_id,
        agent=what.author,
        body=f"This reverts merge {merged}.",
    )
    for _ in range(REVERT_TRIES):
        tree = repository.scratch_worktree(what.issue_id, repository.sync().base_head())
        try:
            revert = tree.revert_merge(merged, message, author=what.author, email=what.email)
            if repository.push(revert, repository.project.base_branch).pushed:
                return revert
        finally:
            repository.drop(tree)
    return None
