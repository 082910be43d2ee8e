"""What execute, review_gate and deploy_verify share for issues of a git project.

A project file that is missing or invalid blocks the issue with reason
``project_config`` and says why in a comment: never a crash, never a silent pass.
An unreachable remote or failing git is this attempt's failure (counted), since
the next beat may find it back.
"""

from __future__ import annotations

from collections.abc import Sequence

from config.log import get_logger
from db import store
from db.store import Claim, ProjectRecord
from projects.repo import checks
from projects.repo.checks import Check
from projects.repo.project_file import ProjectConfigError
from projects.repo.repository import RepositoryError
from projects.sandbox import SandboxUnavailable
from workflows.lib import failures
from workflows.lib.context import WorkflowContext
from workflows.lib.escalation import block_and_escalate

PROJECT_FAILURES = (ProjectConfigError, RepositoryError, SandboxUnavailable, OSError)

log = get_logger(__name__)


def project_of(ctx: WorkflowContext, held: Claim) -> ProjectRecord | None:
    """The project the issue's work happens in; None for document work.

    A decomposed parent is document work even on a project: its sub-issues each ship their code
    by merge, and the parent's own result is the assembly of theirs.
    """
    decomposed = held.issue.playbook is not None and held.issue.module_key is None
    if held.issue.project_id is None or decomposed:
        return None
    with ctx.tx(held.run_id) as session:
        return store.get_project(session, held.issue.project_id)


def record_checks(
    ctx: WorkflowContext, held: Claim, project: ProjectRecord, ran: Sequence[Check], *, commit: str, stage: str
) -> None:
    """Store the evidence, only while this run still holds the issue (a run that lost it records nothing)."""
    with ctx.tx(held.run_id) as session:
        if store.still_held(session, held, lock=True):
            checks.record(
                session,
                ran,
                issue_id=held.id,
                project_id=project.id,
                commit=commit,
                stage=stage,
                run_id=held.run_id,
                agent_id=ctx.agent.id,
            )


def handle(ctx: WorkflowContext, held: Claim, error: Exception) -> None:
    """The issue's project could not be used: block it (its file) or count the attempt (everything else)."""
    log.warning(
        "project.unusable",
        issue_id=held.id,
        error=str(error),
        kind=type(error).__name__,
        agent=ctx.agent.slug,
        run_id=str(held.run_id),
        workflow=ctx.workflow,
    )
    if isinstance(error, ProjectConfigError):
        with ctx.tx(held.run_id) as session:
            block_and_escalate(
                session,
                held.issue,
                held=held,
                reason="project_config",
                actor=ctx.actor,
                note=f"{error.message}. Fix the file on the base branch, then unblock the issue.",
                deadline_hours=ctx.settings.approval_deadline_hours,
            )
        return
    message = error.message if isinstance(error, RepositoryError | SandboxUnavailable) else str(error)
    failures.count_failure(ctx, held, f"The project's repository could not be used: {message}")
