"""deploy_verify: ship approved work with the project's deploy command, then prove it with verify.

`approved` → `deploying` (the claim) → `done` with a cost summary, or back to
`todo` with the failing output for the author to rework. An issue of a git
project ships by merge instead (projects/repo/shipping.py): only its reviewed
branch head, and `done` records the merge commit. The commands come from
settings, never from a model (projects/document/commands.py). What ships is what the issue's
last submission stored in the database (its `artifacts` rows), staged afresh on
this host, so any host can deploy any issue whichever host did the work.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.orm import Session

from config.log import get_logger
from db import outbox, store
from db.store import Claim, ProjectRecord
from projects.document.commands import deploy_submission
from projects.repo.checks import Check
from projects.repo.repository import Repository, issue_branch
from projects.repo.shipping import Shipment, Shipped, ship
from projects.sandbox import sandbox_for
from workflows.lib import projects
from workflows.lib.claims import claim
from workflows.lib.context import WorkflowContext
from workflows.lib.escalation import block_and_escalate
from workflows.lib.evidence import passed_at

PER_BEAT = 10

log = get_logger(__name__)


def run(ctx: WorkflowContext) -> None:
    for _ in range(PER_BEAT):
        if ctx.should_stop():
            return
        held = claim(ctx, "reclaim_expired_deploy") or claim(ctx, "claim_deploy")
        if held is None:
            return
        _deploy(ctx, held)


def _deploy(ctx: WorkflowContext, held: Claim) -> None:
    project = projects.project_of(ctx, held)
    if project is not None:
        _ship(ctx, held, project)
        return
    deployed, verified = deploy_submission(ctx.engine, ctx.settings, held.id)
    with ctx.tx(held.run_id) as session:
        if verified is not None and verified.ok:
            moved = store.finish_deploy(session, held)
            if moved is not None:
                _done(session, held, ctx, f"{deployed.output.strip()}\n{verified.output.strip()}")
                outbox.done(session, moved)
        else:
            failed = verified or deployed
            moved = store.return_to_todo(session, held)
            if moved is not None:
                store.add_comment(
                    session,
                    held.id,
                    f"{failed.kind} failed (exit {failed.returncode}); rework needed:\n{failed.output.strip()}",
                    author=ctx.actor,
                    kind="failure",
                    run_id=held.run_id,
                )
    log.info(
        "deploy.done",
        issue_id=held.id,
        deployed=deployed.ok,
        verified=bool(verified and verified.ok),
        status=moved.status if moved else "lease-lost",
        agent=ctx.agent.slug,
        run_id=str(held.run_id),
        workflow=ctx.workflow,
    )


def _done(session: Session, held: Claim, ctx: WorkflowContext, details: str) -> None:
    summary = outbox.cost_summary(session, held.id)
    tiers = ", ".join(f"{tier} ${cost}" for tier, cost in summary["by_tier"].items()) or "no model calls"
    store.add_comment(
        session,
        held.id,
        f"Deployed and verified. Cost: ${summary['total_usd']} over {summary['calls']} model calls ({tiers})."
        f"\n\n{details}",
        author=ctx.actor,
        kind="system",
        run_id=held.run_id,
    )


def _ship(ctx: WorkflowContext, held: Claim, project: ProjectRecord) -> None:
    """Merge the reviewed head, check, deploy, push, verify (projects/repo/shipping.py); then move the issue."""

    def record(ran: Sequence[Check], commit: str, stage: str) -> None:
        projects.record_checks(ctx, held, project, ran, commit=commit, stage=stage)

    deadline = ctx.item_deadline()
    try:
        repository = Repository(ctx.settings, project).sync()
        project_file = repository.project_file()
        head = repository.head(issue_branch(held.id))
        with ctx.tx(held.run_id) as session:
            reviewed = head is not None and passed_at(session, held.id, head, project_file.gate)
        if head is None or not reviewed:
            shipped = Shipped(
                False,
                f"{issue_branch(held.id)} at {(head or 'nothing')[:12]} has no passing gate "
                "evidence: it changed after review, so it goes back for another round.",
            )
        else:
            email = f"{ctx.agent.slug}@agents.heartbeat-hq.invalid"
            what = Shipment(held.id, held.issue.title, head, ctx.agent.slug, email, deadline)
            shipped = ship(ctx.settings, repository, project_file, sandbox_for(ctx.settings), what, record)
    except projects.PROJECT_FAILURES as error:
        projects.handle(ctx, held, error)
        return
    if shipped.unfinished:  # merged and pushed; the lease runs out and the reclaim verifies the merge
        log.warning(
            "deploy.unfinished",
            issue_id=held.id,
            merged=shipped.merged,
            why=shipped.summary,
            agent=ctx.agent.slug,
            run_id=str(held.run_id),
            workflow=ctx.workflow,
        )
        return
    with ctx.tx(held.run_id) as session:
        if shipped.ok:
            moved = store.finish_deploy(session, held, merged_sha=shipped.merged)
            if moved is not None:
                _done(session, held, ctx, shipped.summary)
                outbox.done(session, moved)
        elif shipped.revert_failed:
            moved = block_and_escalate(
                session,
                held.issue,
                held=held,
                reason="verify",
                actor=ctx.actor,
                note=shipped.summary,
                deadline_hours=ctx.settings.approval_deadline_hours,
            )
        else:
            moved = store.return_to_todo(session, held)
            if moved is not None:
                store.add_comment(
                    session,
                    held.id,
                    f"Not shipped; rework needed:\n{shipped.summary}",
                    author=ctx.actor,
                    kind="failure",
                    run_id=held.run_id,
                )
    log.info(
        "deploy.shipped",
        issue_id=held.id,
        ok=shipped.ok,
        merged=shipped.merged,
        reverted=shipped.reverted,
        conflicts=len(shipped.conflicts),
        status=moved.status if moved else "lease-lost",
        agent=ctx.agent.slug,
        run_id=str(held.run_id),
        workflow=ctx.workflow,
    )
