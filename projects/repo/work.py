"""One run's hold on a project issue: its fresh worktree, the project's commands and the sandbox.

The git kind's Work (projects/kinds.py): execute prepares it before the model is asked (so a missing
``.hq/project.yaml`` costs no model call) and hands it to the tools; the commit and the push that close
the run happen here too (``keep``), so the compare-and-set is in one place.
"""

from __future__ import annotations

import dataclasses
import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from config.log import get_logger
from config.settings import Settings
from db.models import Artifact
from db.store.records import ProjectRecord
from projects import commits
from projects.kinds import NotKept, Run
from projects.repo import environment
from projects.repo.environment import Built
from projects.repo.project_file import ProjectFile
from projects.repo.repository import PushResult, Repository, RepositoryError, Worktree, issue_branch
from projects.sandbox import Sandbox, sandbox_for
from projects.watch import Watch
from projects.workspace import WorkspaceError

COMMIT_CONTENT_TYPE = "text/x-git-commit"
HQ_AUTHOR, HQ_EMAIL = "hq", "hq@heartbeat-hq.invalid"
INSTRUCTIONS = (
    "Make the change this issue asks for in the project's repository (your worktree; project names its commands "
    "and gate). Read the code first (list_files, search, read_file), change it with edit_file or write_file, run "
    "the gate commands with run_command until they pass, and check your change with diff. HQ commits and pushes "
    "what you leave. If project lists merge_conflicts, the base branch was merged in and those files hold "
    "conflict markers: resolve them first. If you cannot finish, call mark_blocked with what is missing. End with "
    "a one-sentence summary."
)

log = get_logger(__name__)


@dataclass(frozen=True)
class RepoWork:
    issue_id: int
    project: ProjectRecord
    repository: Repository
    project_file: ProjectFile
    worktree: Worktree
    sandbox: Sandbox
    base: str  # the base branch's commit the branch is compared with (their merge base)
    watch: Watch  # the run's lease keeper (projects/watch.py): stops a command once the issue is not the run's
    conflicts: tuple[str, ...] = ()  # paths the base's changes conflict with, left for the agent to resolve
    environment: Built | None = None  # the project's environment for this work (projects/repo/environment.py)

    instructions = INSTRUCTIONS

    @property
    def branch(self) -> str:
        return issue_branch(self.issue_id)

    @property
    def files(self) -> Worktree:
        return self.worktree

    def brief(self, context: dict[str, Any]) -> dict[str, Any]:
        """The repository and its commands instead of a deliverable file."""
        context = {key: value for key, value in context.items() if key != "deliverable_path"}
        context["project"] = {
            "name": self.project.name,
            "base_branch": self.project.base_branch,
            "branch": self.branch,
            "commands": sorted(self.project_file.commands),
            "gate": list(self.project_file.gate),
        }
        if self.conflicts:  # the base moved on and conflicts with this branch: the run's commit concludes the merge
            context["project"]["merge_conflicts"] = list(self.conflicts)
        return context

    def keep(self, run: Run, written: Sequence[str], summary: str) -> RepoKept:
        """Commit and push what the run left (the compare-and-set), its subject the agent's ``summary`` made
        safe (projects/commits.py); raises NotKept when it cannot be."""
        unresolved = self.worktree.conflicted(self.conflicts)
        if unresolved:
            raise NotKept(f"The base branch's changes conflict and were not resolved in: {', '.join(unresolved)}.")
        try:
            head, push = commit_and_push(
                self, agent=run.agent, run_id=run.held.run_id, workflow=run.workflow, summary=summary
            )
        except (RepositoryError, WorkspaceError) as error:
            raise NotKept(f"Could not commit and push the work: {error.message}") from error
        if not push.pushed:
            raise NotKept(f"The push of {self.branch} was refused: it moved since this run started.\n{push.detail}")
        nothing = f"changed nothing on {self.branch}" if self.worktree.unchanged(self.base, head) else None
        return RepoKept(self, run, head, nothing)

    def release(self) -> None:
        """The run is over: its worktree goes (quarantined if a command redirected its ``.git``).

        What the run did is on the remote's branch by now (or deliberately not: a lost lease, a failed
        attempt), so nothing is lost; any later run, on any host, starts from the pushed branch. A tree
        that cannot be removed is logged, never raised over what ended the run: its lease is let go, so
        the next Repository.sync() on this host retries it.
        """
        if self.environment is not None and self.environment.hold is not None:
            self.environment.hold.close()  # no command of this run mounts it any more: pruning may take it
        try:
            self.repository.drop(self.worktree)
        except Exception as error:  # never hide what ended the run (this runs in a finally); the next sync retries
            log.warning(
                "worktree.not_released",
                issue_id=self.issue_id,
                worktree=str(self.worktree.root),
                error=f"{type(error).__name__}: {error}",
            )


@dataclass(frozen=True)
class RepoKept:
    """The branch head a run pushed."""

    work: RepoWork
    run: Run
    commit: str
    nothing: str | None  # the branch head is where the run started: nothing to review

    @property
    def summary(self) -> str:
        return f"Pushed {self.work.branch}."

    def record(self, session: Session) -> str:
        if self.nothing:
            return ""
        run_id, agent_id = self.run.held.run_id, self.run.agent_id
        stat = record_commit(session, self.work, commit=self.commit, run_id=run_id, agent_id=agent_id)
        return f"\n\nCommit {self.commit[:12]} on {self.work.branch}:\n{stat}"


def prepare(
    settings: Settings,
    project: ProjectRecord,
    issue_id: int,
    *,
    run_id: uuid.UUID,
    watch: Watch,
    agent: str = HQ_AUTHOR,
) -> RepoWork:
    """Fetch, read the base branch's project file, and build the issue's worktree from its pushed branch.

    When the base has moved on since the branch left it, the base is merged in first, so the
    work (and a rework after a merge conflict) is done against the code it will be merged into:
    a clean merge is committed at once; a conflicting one is left in the worktree, its paths
    named to the agent, and the run's commit concludes it.

    The project's environment is built (or reused) for the commit the work starts from, before any
    model is asked.

    Raises ProjectConfigError (the file), EnvironmentFailed (its setup) or RepositoryError (the remote, git).
    """
    repository = Repository(settings, project).sync()
    project_file = repository.project_file()
    worktree, start = repository.issue_worktree(issue_id, run_id)
    base_head = repository.base_head()
    conflicts: tuple[str, ...] = ()
    if not repository.is_ancestor(base_head, start):
        message = commits.message(
            f"Merge {project.base_branch} into {issue_branch(issue_id)}",
            fallback=f"Merge the base branch into {issue_branch(issue_id)}",
            issue_id=issue_id,
            run_id=run_id,
            agent=agent,
        )
        conflicts = worktree.update_from(base_head, message, author=HQ_AUTHOR, email=HQ_EMAIL)
    base = worktree.run("merge-base", base_head, "HEAD").strip() if not conflicts else base_head
    sandbox = sandbox_for(settings)
    work = RepoWork(issue_id, project, repository, project_file, worktree, sandbox, base, watch, conflicts)
    if project_file.environment is None:
        return work
    try:
        watch.doing("environment")  # built once per content: a first build may take many minutes
        built = environment.ensure(settings, sandbox, repository, project_file.environment, worktree.head())
    except BaseException:
        work.release()
        raise
    return dataclasses.replace(work, environment=built)


def commit_and_push(
    work: RepoWork, *, agent: str, run_id: uuid.UUID, workflow: str, summary: str | None = None
) -> tuple[str, PushResult]:
    """Commit what the run left (author: the agent) and push the branch, never forced.

    Returns the branch head after the run and the push's result; with nothing to
    commit the head is the worktree's (where the run started, or its merge of the
    base) and it is pushed only if the remote branch is not there yet. The push is
    fast-forward only, so a branch another run moved since this one started refuses it.
    """
    committed = work.worktree.commit(
        agent=agent, run_id=run_id, issue_id=work.issue_id, workflow=workflow, summary=summary
    )
    head = committed or work.worktree.head()  # a clean merge of the base may be the run's only commit
    if committed is None and work.repository.head(work.branch) == head:
        return head, PushResult(True, "")
    return head, work.repository.push(head, work.branch)


def record_commit(session: Session, work: RepoWork, *, commit: str, run_id: uuid.UUID, agent_id: int) -> str:
    """Record the run's branch head as the issue's artifact (its diff stat against the base); returns the stat.

    The caller holds the issue's lease with its row locked, so a run that lost the issue records nothing.
    """
    stat = work.worktree.run("diff", "--stat=100", work.base, commit).strip()
    content = f"commit {commit}\nbranch {work.branch}\nbase {work.base}\n\n{stat}\n"
    data = content.encode("utf-8")
    session.execute(
        insert(Artifact)
        .values(
            issue_id=work.issue_id,
            path=work.branch,
            sha256=hashlib.sha256(data).hexdigest(),
            size_bytes=len(data),
            content_type=COMMIT_CONTENT_TYPE,
            content=content,
            agent_id=agent_id,
            run_id=run_id,
            commit_sha=commit,
        )
        .on_conflict_do_nothing(index_elements=[Artifact.issue_id, Artifact.path, Artifact.sha256])
    )
    return stat
