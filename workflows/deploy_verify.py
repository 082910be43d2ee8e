"""deploy_verify: ship approved work, then prove it, through the issue's project (projects/kinds.py).

`approved` → `deploying` (the claim) → `done` with a cost summary, or back to
`todo` with the failing output for the author to rework. A document issue ships
what its last submission stored in the database, staged afresh on this host
with the configured deploy and verify commands (projects/document/commands.py),
so any host can deploy any issue whichever host did the work. A git project's
issue ships by merge (projects/repo/shipping.py): only its reviewed branch
head, and `done` records the merge commit.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from config.log import get_logger
from db import outbox, store
from db.store import Claim
from projects.choose import PROJECT_FAILURES, project_for
from workflows.lib import projects
from workflows.lib.claims import claim
from workflows.lib.context import WorkflowContext
from workflows.lib.escalation import block_and_escalate

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
    """Ship (projects/kinds.py), then move the issue: done, back for rework, or blocked when a revert failed."""
    run = projects.run_of(ctx, held)
    try:
        shipped = project_for(ctx.settings, ctx.engine, run).ship()
    except PROJECT_FAILURES as error:
        projects.handle(ctx, held, error)
        return
    if run.watch.stopped.is_set():  # the lease went mid-ship: the run that holds the issue now finishes it
        log.warning("deploy.stopped", issue_id=held.id, merged=shipped.merged, run_id=str(held.run_id))
        return
    if shipped.unfinished:  # merged and pushed; the lease runs out and the reclaim verifies the merge
        log.warning("deploy.unfinished", issue_id=held.id, merged=shipped.merged, why=shipped.summary)
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
        "deploy.done",
        issue_id=held.id,
        ok=shipped.ok,
        merged=shipped.merged,
        reverted=shipped.reverted,
        conflicts=len(shipped.conflicts),
        status=moved.status if moved else "lease-lost",
        run_id=str(held.run_id),
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
