"""The review gate's evidence for a project issue: its gate commands, run at the pushed branch head.

The commands run in a fresh detached worktree of exactly that commit, in the
sandbox, and every result is stored in ``check_runs`` against it. Only this
commit's evidence is shown to the reviewer and later trusted by deploy
(``passed_at``): a green run on an older commit vouches for nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from db import store
from db.store import Claim, Executor, ProjectRecord
from projects.repo import checks
from projects.repo.checks import Check
from projects.repo.project_file import PROJECT_FILE
from projects.repo.repository import Repository, RepositoryError, issue_branch
from projects.sandbox import sandbox_for
from workflows.lib import projects
from workflows.lib.context import WorkflowContext

DIFF_FOR_REVIEWER = 30_000


@dataclass(frozen=True)
class Evidence:
    commit: str
    checks: tuple[Check, ...]
    stat: str
    patch: str
    paths: tuple[str, ...]

    @property
    def changes_what_runs(self) -> bool:
        """Whether the change touches HQ's own folder of the project (a path in it, or ``.hq`` itself made a
        file or a link): then a person must approve it. ``paths`` holds both sides of a rename."""
        return any(path in (PROJECT_FILE, ".hq") or path.startswith(".hq/") for path in self.paths)

    @property
    def passed(self) -> bool:
        return all(check.ok for check in self.checks)

    @property
    def report(self) -> str:
        return checks.report(self.checks, commit=self.commit)

    def for_reviewer(self) -> dict[str, Any]:
        return {
            "commit": self.commit,
            "checks": [check.line() for check in self.checks],
            "diff_stat": self.stat,
            "diff": self.patch[:DIFF_FOR_REVIEWER],
        }


def gather_evidence(ctx: WorkflowContext, held: Claim, project: ProjectRecord) -> Evidence:
    """Run the gate at the branch head and record it; RepositoryError when there is no pushed branch."""
    deadline = ctx.item_deadline()
    repository = Repository(ctx.settings, project).sync()
    project_file = repository.project_file()
    branch = issue_branch(held.id)
    head = repository.head(branch)
    if head is None:
        raise RepositoryError(f"{branch} is not on the remote: there is nothing to review")
    base = repository.merge_base(repository.base_head(), head)
    stat, patch, paths = repository.changes(base, head)  # before anything runs: from the commits alone
    tree = repository.scratch_worktree(held.id, head)
    try:
        ran = checks.run_all(
            ctx.settings,
            sandbox_for(ctx.settings),
            project_file,
            project_file.gate,
            tree,
            issue_id=held.id,
            deadline=deadline,
        )
    finally:
        repository.drop(tree)
    projects.record_checks(ctx, held, project, ran, commit=head, stage="review")
    return Evidence(head, tuple(ran), stat, patch, paths)


def passed_at(db: Executor, issue_id: int, commit: str, gate: Sequence[str]) -> bool:
    """Whether every gate command's latest review result for exactly ``commit`` passed."""
    latest = {check.command: check.ok for check in store.checks_at(db, issue_id, commit) if check.stage == "review"}
    return all(latest.get(name, False) for name in gate)
