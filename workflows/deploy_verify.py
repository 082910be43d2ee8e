"""deploy_verify: ship approved work with the project's deploy command, then prove it with verify.

`approved` → `deploying` (the claim) → `done` with a cost summary, or back to
`todo` with the failing output for the author to rework. The commands come from
settings, never from a model (agents/project.py). What ships is what the issue's
last submission stored in the database (its `artifacts` rows), staged afresh on
this host, so any host can deploy any issue whichever host did the work.
"""

from __future__ import annotations

from agents.project import deploy_submission
from config.log import get_logger
from db import outbox, store
from db.store import Claim
from workflows.lib.claims import claim
from workflows.lib.context import WorkflowContext

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
    deployed, verified = deploy_submission(ctx.engine, ctx.settings, held.id)
    with ctx.tx(held.run_id) as session:
        if verified is not None and verified.ok:
            moved = store.finish_deploy(session, held)
            if moved is not None:
                summary = outbox.cost_summary(session, held.id)
                tiers = ", ".join(f"{tier} ${cost}" for tier, cost in summary["by_tier"].items()) or "no model calls"
                store.add_comment(
                    session,
                    held.id,
                    f"Deployed and verified. Cost: ${summary['total_usd']} over {summary['calls']} model "
                    f"calls ({tiers}).\n\n{deployed.output.strip()}\n{verified.output.strip()}",
                    author=ctx.actor,
                    kind="system",
                    run_id=held.run_id,
                )
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
