"""One failure policy for model calls: for each kind of failure, refund or count, and whether to block.

| failure                               | the attempt | the issue                                          |
|---------------------------------------|-------------|----------------------------------------------------|
| provider unavailable (5xx, 429, ...)  | refunded    | given back; the workflow claims nothing more this beat |
| the agent's or company's month is out | refunded    | given back, likewise                               |
| the issue's budget is out             | —           | blocked (`budget`), a human is asked for money     |
| credentials refused (401/403), and no | —           | blocked (`provider_auth`), a human told once per   |
| deployment with other ones left       |             | key; calls with that key paused in this process    |
| the request refused (400, too long)   | counted     | given back with the reason; blocked when exhausted |

Every workflow hands its model failures here; none decides for itself. A call
whose answer the workflow can do without (routing's tie-break, decomposition,
an escalation decision) may say so, and then a budget refusal lets the workflow
carry on without the model instead of blocking the issue.
"""

from __future__ import annotations

import datetime as dt
import enum
from decimal import Decimal

from sqlalchemy.orm import Session

from config.log import get_logger
from db import outbox, store
from db.store import Claim, IssueRecord
from models.budget import BudgetExceeded
from models.router import ModelError, ModelRequestError, ModelUnavailable, ProviderAuthError
from workflows.lib.context import WorkflowContext
from workflows.lib.escalation import block_and_escalate, escalate_further

MODEL_FAILURES = (BudgetExceeded, ModelError)

log = get_logger(__name__)


class Action(enum.StrEnum):
    REFUND = "refund"
    COUNT = "count"
    BLOCK_FOR_BUDGET = "block_for_budget"
    BLOCK_FOR_AUTH = "block_for_auth"


def decide(error: BudgetExceeded | ModelError) -> Action:
    """The policy itself, as data: what this failure means for the issue."""
    if isinstance(error, BudgetExceeded):
        return Action.BLOCK_FOR_BUDGET if error.scope == "issue" else Action.REFUND
    if isinstance(error, ProviderAuthError):
        return Action.BLOCK_FOR_AUTH
    if isinstance(error, ModelRequestError):
        return Action.COUNT
    if isinstance(error, ModelUnavailable):
        return Action.REFUND
    raise TypeError(f"not a model failure: {type(error).__name__}")  # pragma: no cover


def handle(
    ctx: WorkflowContext, held: Claim | None, error: BudgetExceeded | ModelError, *, can_do_without: bool = False
) -> bool:
    """Apply the policy to the issue this run holds (if any); False when the workflow should go on without the model.

    Only a budget refusal of a call the workflow ``can_do_without`` returns False.
    """
    action = decide(error)
    log.warning(
        "model.failure",
        action=str(action),
        error=error.message,
        issue_id=held.id if held else None,
        agent=ctx.agent.slug,
        workflow=ctx.workflow,
    )
    if action is Action.BLOCK_FOR_BUDGET and can_do_without:
        return False
    if action is not Action.BLOCK_FOR_BUDGET:  # one issue's budget says nothing of the next issue's
        ctx.halted.add(ctx.workflow)
    if action is Action.BLOCK_FOR_AUTH:
        assert isinstance(error, ProviderAuthError)
        ctx.degraded.add(ctx.workflow)  # not the issue's fault: the beat says so
        _block_for_auth(ctx, held, error)
    elif held is None:
        pass  # nothing claimed (planning): nothing to give back
    elif action is Action.REFUND:
        give_back(ctx, held)
    elif action is Action.COUNT:
        count_failure(ctx, held, f"The model refused the request: {error.message}")
    else:
        assert isinstance(error, BudgetExceeded)
        _block_for_budget(ctx, held, error)
    return True


def give_back(ctx: WorkflowContext, held: Claim, why: str | None = None) -> bool:
    """Not the issue's fault: the attempt is refunded (``why``, if given, a comment on the issue), and this
    workflow claims nothing more this beat."""
    with ctx.tx(held.run_id) as session:
        released = store.release(session, held, counts=False) is not None
        if released and why is not None:
            store.add_comment(session, held.id, why, author=ctx.actor, kind="system", run_id=held.run_id)
    ctx.degraded.add(ctx.workflow)
    ctx.halted.add(ctx.workflow)
    _released(ctx, held, refund=True, lost=not released)
    return released


def count_failure(ctx: WorkflowContext, held: Claim, why: str) -> bool:
    """The issue's failure: the attempt counts, the reason is a comment, and a used-up issue blocks and escalates."""
    with ctx.tx(held.run_id) as session:
        left = count_failure_in(ctx, session, held, why)
    _released(ctx, held, refund=False, lost=left is None)
    return left is not None


def count_failure_in(ctx: WorkflowContext, session: Session, held: Claim, why: str) -> IssueRecord | None:
    """``count_failure`` inside the caller's transaction: the issue as it leaves, None if the lease was lost."""
    issue = store.get_issue(session, held.id, lock=True)
    if issue.lease_owner != held.run_id:
        return None
    used = store.attempts_after(held, issue, counts=True)
    hours = ctx.settings.approval_deadline_hours
    if used < issue.max_attempts:
        left = store.release(session, held, counts=True)
        if left is not None:
            store.add_comment(session, held.id, why, author=ctx.actor, kind="failure")
        return left
    note = f"{why} (attempt {used} of {issue.max_attempts})"
    if issue.status == "blocked":  # a manager's failed decision: the issue climbs instead
        return escalate_further(session, held, ctx.agent, actor=ctx.actor, reason=note, deadline_hours=hours)
    return block_and_escalate(
        session, issue, held=held, reason="max_attempts", actor=ctx.actor, note=note, deadline_hours=hours
    )


def _block_for_budget(ctx: WorkflowContext, held: Claim, refused: BudgetExceeded) -> None:
    with ctx.tx(held.run_id) as session:
        issue = store.get_issue(session, held.id, lock=True)
        blocked = store.block(session, issue, held=held, reason="budget", escalated_to_id=None)
        if blocked is None:
            return
        approval = store.open_approval(
            session,
            held.id,
            "budget",
            requested_by=ctx.actor,
            reason=f"budget exhausted: the next model call needs up to {refused.needed:.4f} USD, "
            f"{issue.budget_left:.4f} left",
            deadline=dt.datetime.now(dt.UTC) + dt.timedelta(hours=ctx.settings.approval_deadline_hours),
            amount_usd=refused.needed.quantize(Decimal("0.0001")),
        )
        outbox.budget_exhausted(session, blocked, approval)


def _block_for_auth(ctx: WorkflowContext, held: Claim | None, error: ProviderAuthError) -> None:
    """Block the work that found out, and tell a human once per deployment and key."""
    with ctx.tx(held.run_id if held else None) as session:
        blocked = None
        if held is not None:
            issue = store.get_issue(session, held.id, lock=True)
            blocked = store.block(
                session, issue, held=held, reason="provider_auth", escalated_to_id=None, escalation_chain=["human"]
            )
            if blocked is not None:
                store.add_comment(
                    session,
                    held.id,
                    f"Blocked (provider_auth): the provider refused the credentials of deployment "
                    f"{error.deployment}: {error.message}. Calls to it are paused until its key is replaced; "
                    f"then `hq unblock {held.id}`.",
                    author=ctx.actor,
                    kind="system",
                )
        outbox.provider_auth(
            session,
            deployment=error.deployment,
            key_fingerprint=error.key_fingerprint,
            error=error.message,
            issue=blocked,
        )


def _released(ctx: WorkflowContext, held: Claim, *, refund: bool, lost: bool) -> None:
    log.info(
        "claim.released",
        issue_id=held.id,
        refund=refund,
        lost=lost,
        run_id=str(held.run_id),
        agent=ctx.agent.slug,
        workflow=ctx.workflow,
    )
