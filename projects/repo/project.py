"""The git kind of project: a remote and its `.hq/project.yaml`, one worktree per run, shipped by merge.

Execute works on ``hq/issue-<id>`` in a fresh worktree built from the pushed branch (projects/repo/work.py),
so any host continues where the last run stopped. Review is held to evidence before any model sees the
work: the project's gate commands, run at the pushed head in the sandbox (projects/repo/evidence.py).
Deploy merges exactly the reviewed head, checks, pushes and verifies it (projects/repo/shipping.py), then
deletes the issue's branch from the remote unless the project keeps branches (``keep_branches``).

Every command's result is recorded against the commit it ran on, only while the run holds its issue.
An unreachable remote, failing git or a missing sandbox is ``ProjectUnusable`` (the attempt counts: the
next beat may find it back); a broken project file is ``ProjectConfigError`` (the issue blocks).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from config.log import get_logger
from config.settings import Settings
from db import store
from db.store import CheckRunRecord, ProjectRecord
from projects.kinds import ProjectUnusable, Run, Shipped
from projects.repo import checks, environment
from projects.repo.checks import Check
from projects.repo.environment import Built
from projects.repo.evidence import GateEvidence, passed_at
from projects.repo.project_file import ProjectFile
from projects.repo.repository import Repository, RepositoryError, issue_branch, scratch
from projects.repo.shipping import Shipment, ship
from projects.repo.work import RepoWork, prepare
from projects.sandbox import Sandbox, SandboxUnavailable, sandbox_for

log = get_logger(__name__)


@contextmanager
def _usable() -> Iterator[None]:
    """The remote, git, the sandbox or the disk failing: this attempt's failure, saying which."""
    try:
        yield
    except (RepositoryError, SandboxUnavailable, OSError) as error:
        message = error.message if isinstance(error, RepositoryError | SandboxUnavailable) else str(error)
        raise ProjectUnusable(f"The project's repository could not be used: {message}") from error


def _shipped_before(repository: Repository, reviewed: str | None) -> bool:
    """Whether the reviewed head is on the base already (a run that merged it deleted its branch, then died)."""
    return reviewed is not None and repository.is_ancestor(reviewed, repository.base_head())


def _delete_branch(repository: Repository, issue_id: int, head: str) -> None:
    """The shipped branch goes from the remote (a compare-and-set on the head shipped); a failure only waits
    for the upkeep job (projects/repo/upkeep.py), which deletes what is left of done issues."""
    try:
        deleted = repository.delete_issue_branch(issue_id, head)
    except (RepositoryError, OSError) as error:
        message = error.message if isinstance(error, RepositoryError) else str(error)
        log.warning("branch.not_deleted", project=repository.project.name, issue_id=issue_id, error=message)
        return
    if deleted:
        log.info("branch.deleted", project=repository.project.name, issue_id=issue_id, branch=issue_branch(issue_id))


@dataclass(frozen=True)
class GitProject:
    settings: Settings
    project: ProjectRecord
    run: Run

    def prepare(self) -> RepoWork:
        """Fetch, read the base branch's project file, build the issue's worktree (projects/repo/work.py)."""
        run = self.run
        with _usable():
            return prepare(
                self.settings,
                self.project,
                run.issue_id,
                run_id=run.held.run_id,
                watch=run.watch,
                agent=run.agent,
            )

    def evidence(self) -> GateEvidence:
        """The gate at the pushed branch head: reused where those files already passed, else run in a fresh
        worktree of exactly that commit and recorded; files the gate already failed on are not gated again."""
        run = self.run
        with _usable():
            repository = Repository(self.settings, self.project).sync()
            project_file = repository.project_file()
            branch = issue_branch(run.issue_id)
            head = repository.head(branch)
            if head is None:
                raise RepositoryError(f"{branch} is not on the remote: there is nothing to review")
            base = repository.merge_base(repository.base_head(), head)
            stat, patch, paths = repository.changes(base, head)  # before anything runs: from the commits alone
            sandbox = sandbox_for(self.settings)
            built = self._environment(sandbox, repository, project_file, head)
            files = repository.tree_of(head)
            with run.tx() as session:
                red = store.gated_red_on_tree(
                    session, project_id=self.project.id, tree_sha=files, env_key=built.key if built else None
                )
            if red is not None:
                return GateEvidence(head, (Check.reusing(red),), stat, patch, paths, no_progress=True)
            ran = checks.run_gate(
                self.settings,
                sandbox,
                project_file,
                lambda: scratch(repository, run.issue_id, head),
                files,
                self,
                commit=head,
                stage="review",
                issue_id=run.issue_id,
                watch=run.watch,
                env=built,
            )
        return GateEvidence(head, tuple(ran), stat, patch, paths)

    def ship(self) -> Shipped:
        """Merge the reviewed head, check, deploy, push, verify; a head other than the reviewed one goes back."""
        run = self.run
        with _usable():
            repository = Repository(self.settings, self.project).sync()
            project_file = repository.project_file()
            branch = issue_branch(run.issue_id)
            head = repository.head(branch)
            if head is None and _shipped_before(repository, run.held.issue.reviewed_sha):
                head = run.held.issue.reviewed_sha  # merged, its branch deleted, the run ended before `done`
            reviewed = head is not None and head == run.held.issue.reviewed_sha
            if head is not None and not reviewed and run.held.issue.reviewed_sha is None:
                with run.tx() as session:  # approved before reviews recorded the head they saw
                    reviewed = passed_at(session, run.issue_id, head, project_file.gate)
            if head is None or not reviewed:
                return Shipped(
                    False,
                    f"{branch} at {(head or 'nothing')[:12]} has no passing gate "
                    "evidence: it changed after review, so it goes back for another round.",
                )
            email = f"{run.agent}@agents.heartbeat-hq.invalid"
            sandbox = sandbox_for(self.settings)

            def environment_at(commit: str) -> Built | None:
                return self._environment(sandbox, repository, project_file, commit)

            what = Shipment(
                run.issue_id,
                run.held.issue.title,
                head,
                run.agent,
                email,
                run.watch,
                run_id=run.held.run_id,
                environment_at=environment_at,
            )
            shipped = ship(self.settings, repository, project_file, sandbox, what, self)
        if shipped.ok and not self.project.keep_branches:
            _delete_branch(repository, run.issue_id, head)
        return shipped

    # --- the check book (projects/repo/checks.py): this project's evidence in check_runs ----------------------
    def passed(self, tree: str, env_key: str | None, command: str) -> CheckRunRecord | None:
        with self.run.tx() as session:
            return store.passed_on_tree(
                session, project_id=self.project.id, tree_sha=tree, env_key=env_key, command=command
            )

    def record(self, ran: Sequence[Check], *, commit: str, tree: str | None, env_key: str | None, stage: str) -> None:
        """Store the evidence, only while the run still holds the issue (a run that lost it records nothing)."""
        run = self.run
        with run.tx() as session:
            if ran and run.holds(session):
                checks.record(
                    session,
                    ran,
                    issue_id=run.issue_id,
                    project_id=self.project.id,
                    commit=commit,
                    stage=stage,
                    run_id=run.held.run_id,
                    agent_id=run.agent_id,
                    tree=tree,
                    env_key=env_key,
                )

    def _environment(
        self, sandbox: Sandbox, repository: Repository, project_file: ProjectFile, commit: str
    ) -> Built | None:
        """The project's environment for ``commit``, built now or reused; None when it declares none."""
        if project_file.environment is None:
            return None
        return environment.ensure(self.settings, sandbox, repository, project_file.environment, commit)
