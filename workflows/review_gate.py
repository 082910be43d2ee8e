"""review_gate: score submitted work against its author's checklist, then pass it on or send it back.

Pass: `pending_approval` (a human must approve) or `approved`. Fail: back to
`todo` with the notes as a comment. Too many failed rounds: `blocked`, escalated.

Every issue is held to its project's evidence before any model sees it
(projects/kinds.py): a git project's gate commands run at the pushed branch
head, and a red one is the round's verdict, with its output as the review
comment; a document's evidence is its latest submitted files. Work that comes
back on files the gate already failed on is blocked (`no_progress`): the
same red evidence is never paid for twice.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from config.log import get_logger
from db import outbox, store
from db.store import AgentRecord, Claim, IssueRecord
from models.protocol import user_message
from models.schemas import ReviewVerdict
from models.structured import complete_json
from projects.choose import PROJECT_FAILURES, project_for
from projects.kinds import Evidence
from workflows.lib import failures, projects, prompts
from workflows.lib.claims import claim
from workflows.lib.context import WorkflowContext
from workflows.lib.escalation import block_and_escalate

PASS_SCORE = 0.7
PER_BEAT = 10
INSTRUCTIONS = (
    "Review the submitted work for this issue against the author's checklist. Score it from 0 to 1, decide "
    "whether it passes, and give specific notes the author can act on."
)

log = get_logger(__name__)


def run(ctx: WorkflowContext) -> None:
    for _ in range(PER_BEAT):
        if ctx.should_stop():
            return
        held = claim(ctx, "claim_review")
        if held is None:
            return
        _review(ctx, held)


def _checklist(ctx: WorkflowContext, issue: IssueRecord, author: AgentRecord | None) -> list[str]:
    """The author's checklist; an assembled result is also held to its playbook's quality checklist."""
    own = list(author.checklist) if author else []
    playbook = ctx.playbooks.get(issue.playbook) if ctx.playbooks and issue.module_key is None else None
    return (list(playbook.quality_checklist) if playbook else []) + own


def _review(ctx: WorkflowContext, held: Claim) -> None:
    run = projects.run_of(ctx, held)
    try:  # the evidence first: red evidence sends the work back without asking any model
        evidence = project_for(ctx.settings, ctx.engine, run).evidence()
    except PROJECT_FAILURES as error:
        projects.handle(ctx, held, error)
        return
    if run.watch.stopped.is_set():  # the lease went while the gate ran: another run reviews, this one says nothing
        log.warning("review.stopped", issue_id=held.id, reason="lease lost", run_id=str(held.run_id))
        return
    if evidence.no_progress:  # the same red evidence again: neither the gate nor the engineer is paid twice
        with ctx.tx(held.run_id) as session:
            block_and_escalate(
                session,
                held.issue,
                held=held,
                reason="no_progress",
                actor=ctx.actor,
                note=evidence.report,
                deadline_hours=ctx.settings.approval_deadline_hours,
            )
        return
    if not evidence.passed:
        _conclude(ctx, held, passed=False, score=Decimal(0), notes=evidence.report, evidence=evidence)
        return
    with ctx.tx(held.run_id) as session:
        issue = store.get_issue(session, held.id)
        author = store.get_agent(session, issue.assignee_id) if issue.assignee_id else None
        context = {
            "reviewer": ctx.agent.slug,
            "author": author.slug if author else None,
            "issue": prompts.issue_brief(issue),
            "checklist": _checklist(ctx, issue, author),
            "round": issue.review_rounds + 1,
            "comments": prompts.comments(session, issue.id, limit=10),
        } | evidence.for_reviewer(session)
        system = prompts.system_prompt(ctx, session)
    try:
        verdict = complete_json(
            ctx.router(),
            ctx.call(held.id, held.run_id),
            "reasoning",
            system=system,
            user=user_message("review", INSTRUCTIONS, context, ReviewVerdict),
            schema=ReviewVerdict,
        )
    except failures.MODEL_FAILURES as error:
        failures.handle(ctx, held, error)
        return
    passed = verdict.passed and verdict.score >= PASS_SCORE
    notes = "\n".join(f"- {note}" for note in verdict.notes) or "- (no notes)"
    if evidence.report:  # what the verdict stood on: each gate command's result, run or reused (check N)
        notes += f"\n\n{evidence.report}"
    score = Decimal(str(round(verdict.score, 3)))
    _conclude(ctx, held, passed=passed, score=score, notes=notes, evidence=evidence)


def _conclude(
    ctx: WorkflowContext, held: Claim, *, passed: bool, score: Decimal, notes: str, evidence: Evidence
) -> None:
    """Move the issue on the verdict (a model's, or the gate's red evidence) and say why in a review comment.

    A change to ``.hq/`` (what HQ runs for the project) always waits for a person's approval.
    """
    rounds = held.issue.review_rounds + 1
    changes_what_runs = evidence.changes_what_runs
    with ctx.tx(held.run_id) as session:
        if passed and (held.issue.needs_approval or changes_what_runs):
            moved = store.record_review(
                session, held, "pending_approval", score=score, rounds=rounds, reviewed_sha=evidence.commit
            )
            if moved is not None:
                approval = store.open_approval(
                    session,
                    held.id,
                    "work",
                    requested_by=ctx.actor,
                    reason=f"review passed with {score}"
                    + ("; the change edits .hq/ (what HQ runs for this project)" if changes_what_runs else ""),
                    deadline=dt.datetime.now(dt.UTC) + dt.timedelta(hours=ctx.settings.approval_deadline_hours),
                )
                outbox.pending_approval(session, moved, approval)
        elif passed:
            moved = store.record_review(
                session, held, "approved", score=score, rounds=rounds, reviewed_sha=evidence.commit
            )
        elif rounds >= ctx.settings.max_review_rounds:
            moved = block_and_escalate(
                session,
                held.issue,
                held=held,
                reason="review_rounds",
                actor=ctx.actor,
                note=f"failed review {rounds} times; last notes:\n{notes}",
                deadline_hours=ctx.settings.approval_deadline_hours,
                quality_score=score,
                review_rounds=rounds,
            )
        else:
            moved = store.record_review(session, held, "todo", score=score, rounds=rounds)
        if moved is not None:
            verdict_line = "passed" if passed else "failed"
            store.add_comment(
                session,
                held.id,
                f"Review round {rounds} {verdict_line} (score {score}):\n{notes}",
                author=ctx.actor,
                kind="review",
                run_id=held.run_id,
                idempotency_key=f"review:{held.run_id}",
            )
    log.info(
        "review.done",
        issue_id=held.id,
        passed=passed,
        score=float(score),
        round=rounds,
        commit=evidence.commit,
        status=moved.status if moved else "lease-lost",
        agent=ctx.agent.slug,
        run_id=str(held.run_id),
        workflow=ctx.workflow,
    )
