"""escalate: a manager handles a blocked issue that climbed to it.

Four moves: reassign to another direct report, unblock with guidance, split it
into sub-issues for its reports, or pass it to its own manager (above the root:
a human, as an `escalation` approval). A decision the manager is not entitled
to (a report that is not its own) becomes an escalation instead.
"""

from __future__ import annotations

import hashlib

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from config.log import get_logger
from config.vocabulary import SPLIT_PLAYBOOK
from db import store
from db.models import Comment
from db.store import AgentRecord, Claim, IssueDraft, IssueRecord
from models.protocol import user_message
from models.schemas import EscalationDecision
from models.structured import complete_json
from workflows.lib import failures, prompts
from workflows.lib.claims import claim
from workflows.lib.context import WorkflowContext
from workflows.lib.escalation import escalate_further

PER_BEAT = 5
INSTRUCTIONS = (
    "A blocked issue has been escalated to you. Decide: reassign it to another of your direct reports, unblock "
    "it with concrete guidance, split it into smaller sub-issues for your reports, or escalate it to your own "
    "manager when the decision is above your authority."
)

log = get_logger(__name__)


def run(ctx: WorkflowContext) -> None:
    for _ in range(PER_BEAT):
        if ctx.should_stop():
            return
        held = claim(ctx, "claim_escalation")
        if held is None:
            return
        _handle(ctx, held)


def _handle(ctx: WorkflowContext, held: Claim) -> None:
    with ctx.tx(held.run_id) as session:
        issue = store.get_issue(session, held.id)
        reports = store.active_reports(session, ctx.agent.id)
        assignee = store.get_agent(session, issue.assignee_id) if issue.assignee_id else None
        prior_unblocks = (
            session.scalar(
                select(func.count())
                .select_from(Comment)
                .where(Comment.issue_id == issue.id, Comment.kind == "guidance", Comment.author.like("agent:%"))
            )
            or 0
        )
        context = {
            "manager": ctx.agent.slug,
            "issue": prompts.issue_brief(issue),
            "blocked_reason": issue.blocked_reason,
            "assignee": assignee.slug if assignee else None,
            "chain": list(issue.escalation_chain),
            "reports": [r.slug for r in reports],
            "prior_unblocks": prior_unblocks,
            "comments": prompts.comments(session, issue.id),
        }
        system = prompts.system_prompt(ctx, session)
    try:
        decision = complete_json(
            ctx.router(),
            ctx.call(held.id, held.run_id),
            "reasoning",
            system=system,
            user=user_message("escalate", INSTRUCTIONS, context, EscalationDecision),
            schema=EscalationDecision,
        )
    except failures.MODEL_FAILURES as error:
        if failures.handle(ctx, held, error, can_do_without=True):
            return
        # No money left to think about it: let the humans decide.
        decision = EscalationDecision(action="escalate", reason=f"no budget to decide: {error.message}")
    report_slugs = {r.slug for r in reports}
    if decision.action == "reassign" and decision.assignee not in report_slugs:
        decision = EscalationDecision(action="escalate", reason=f"{decision.assignee!r} is not one of my reports")
    if decision.action == "split" and (
        not decision.subissues or any(s.assignee not in report_slugs for s in decision.subissues)
    ):
        decision = EscalationDecision(action="escalate", reason="the proposed split went outside my reports")
    with ctx.tx(held.run_id) as session:
        issue = store.get_issue(session, held.id, lock=True)
        moved = _apply(ctx, session, held, issue, ctx.agent, decision, {r.slug: r for r in reports})
    log.info(
        "escalate.decided",
        issue_id=held.id,
        action=decision.action,
        moved=moved,
        agent=ctx.agent.slug,
        run_id=str(held.run_id),
        workflow=ctx.workflow,
    )


def _apply(
    ctx: WorkflowContext,
    session: Session,
    held: Claim,
    issue: IssueRecord,
    manager: AgentRecord,
    decision: EscalationDecision,
    reports: dict[str, AgentRecord],
) -> bool:
    if decision.action == "escalate":
        return (
            escalate_further(
                session,
                held,
                manager,
                actor=ctx.actor,
                reason=decision.reason or "needs a decision",
                deadline_hours=ctx.settings.approval_deadline_hours,
            )
            is not None
        )
    if decision.action == "split":
        return _split(ctx, session, held, issue, manager, decision, reports)
    if decision.action == "reassign":
        target = reports[decision.assignee or ""]
        moved = store.resume(session, held, assignee_id=target.id)
        note = f"Reassigned to {target.slug} by {manager.slug}: {decision.reason}\n{decision.guidance}".strip()
    else:  # unblock
        moved = store.resume(session, held)
        note = decision.guidance or decision.reason or "Proceed with the documented defaults."
    if moved is not None:
        store.add_comment(session, issue.id, note, author=ctx.actor, kind="guidance")
    return moved is not None


def _split(
    ctx: WorkflowContext,
    session: Session,
    held: Claim,
    issue: IssueRecord,
    manager: AgentRecord,
    decision: EscalationDecision,
    reports: dict[str, AgentRecord],
) -> bool:
    """Sub-issues for the manager's reports; the parent keeps waiting on them, then comes back to be assembled.

    ``issue`` was read with its row locked, so checking the lease first means a run that lost the issue
    creates no children.
    """
    if issue.lease_owner != held.run_id:
        return False
    share = issue.budget_left / len(decision.subissues)  # carved out of the parent, never minted
    children = []
    try:
        with session.begin_nested():  # every part funded, or none opened
            for spec in decision.subissues:
                digest = hashlib.sha256(spec.title.lower().encode()).hexdigest()[:16]
                child = store.create_funded_issue(
                    session,
                    IssueDraft(title=spec.title, body=spec.body, priority=issue.priority),
                    parent_id=issue.id,
                    amount_usd=share,
                    actor=ctx.actor,
                    assignee=reports[spec.assignee],
                    goal_id=issue.goal_id,
                    max_attempts=issue.max_attempts,
                    idempotency_key=f"split:{issue.id}:{digest}",
                )
                children.append(child.id)
    except store.CarveRefused as refused:
        reason = f"cannot fund a split into {len(decision.subissues)} parts: {refused.message}"
        moved = escalate_further(
            session, held, manager, actor=ctx.actor, reason=reason, deadline_hours=ctx.settings.approval_deadline_hours
        )
        return moved is not None
    store.add_dependencies(session, issue.id, children)
    row = store.wait_on_parts(session, held, assignee_id=manager.id, playbook=SPLIT_PLAYBOOK)
    if row is not None:
        store.add_comment(
            session,
            issue.id,
            f"Split by {manager.slug} into {', '.join(f'#{c}' for c in children)}: {decision.reason}",
            author=ctx.actor,
            kind="guidance",
        )
    return row is not None
