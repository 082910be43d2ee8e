"""What execute, review_gate and deploy_verify share about an issue's project (projects/kinds.py).

A project file that is missing or invalid blocks the issue with reason
``project_config``, an environment whose setup fails with ``project_env``, and
either says why in a comment (the setup's output tail included): never a
crash, never a silent pass, never an attempt or a review round counted.
A project that cannot be used this time (an unreachable remote, failing git, a
broken workspace) is this attempt's failure (counted), since the next beat may
find it back.
"""

from __future__ import annotations

from config.log import get_logger
from db.store import Claim
from projects.kinds import EnvironmentFailed, ProjectUnusable, Run
from projects.repo.project_file import ProjectConfigError
from workflows.lib import failures
from workflows.lib.context import WorkflowContext
from workflows.lib.escalation import block_and_escalate

log = get_logger(__name__)


def run_of(ctx: WorkflowContext, held: Claim) -> Run:
    """The run, as the issue's project serves it: its claim, its agent, its lease keeper's watch, its
    transactions."""
    return Run(
        held=held,
        agent_id=ctx.agent.id,
        agent=ctx.agent.slug,
        workflow=ctx.workflow,
        watch=ctx.watch(held),
        tx=lambda: ctx.tx(held.run_id),
    )


def handle(ctx: WorkflowContext, held: Claim, error: ProjectConfigError | EnvironmentFailed | ProjectUnusable) -> None:
    """The issue's project could not be used: block it (its file, its environment) or count the attempt."""
    log.warning(
        "project.unusable", issue_id=held.id, error=error.message, kind=type(error).__name__, run_id=str(held.run_id)
    )
    if isinstance(error, ProjectConfigError | EnvironmentFailed):
        config = isinstance(error, ProjectConfigError)
        fix = "the file" if config else "the environment's setup (`hq project check` tries it)"
        with ctx.tx(held.run_id) as session:
            block_and_escalate(
                session,
                held.issue,
                held=held,
                reason="project_config" if config else "project_env",
                actor=ctx.actor,
                note=f"{error.message.rstrip('.')}.\nFix {fix} on the base branch, then unblock the issue.",
                deadline_hours=ctx.settings.approval_deadline_hours,
            )
        return
    failures.count_failure(ctx, held, error.message)
