"""execute: claim the top claimable issue and work it with the agent's tools.

Individual contributors take their top `todo` issue (or their own `in_progress`
issue whose worker died). Managers only assemble issues they decomposed, once
every sub-issue is done. The result goes to `in_review`, or `blocked` when the
agent says so, or back to `todo` while a research question is answered.

One path for every issue: the issue's project prepares the work before any
model call (projects/choose.py: a document workspace, or a git worktree on
``hq/issue-<id>``), the role's runtime works it (runtimes/choose.py: the
built-in loop or Claude Code), and the project keeps what the run produced (a
workspace commit, a pushed branch) before the issue moves. This module keeps
the store moves; the projects and runtimes do the work.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from agents.tools.context import ToolContext, ToolOutcome
from config.log import get_logger
from db import store
from db.store import Claim, IssueRecord
from models.protocol import user_message
from projects.choose import PROJECT_FAILURES, project_for
from projects.kinds import Kept, NotKept, Run, Work
from runtimes import RunRequest, RunResult, RuntimeFailed
from runtimes.choose import runtime_for
from workflows.lib import failures, projects, prompts
from workflows.lib.claims import claim
from workflows.lib.context import WorkflowContext
from workflows.lib.escalation import block_and_escalate

log = get_logger(__name__)


def run(ctx: WorkflowContext) -> None:
    if ctx.should_stop():
        return
    held = claim(ctx, "reclaim_expired_work") or claim(ctx, "claim_stitch" if ctx.agent.delegates else "claim_todo")
    if held is None:
        return
    run = projects.run_of(ctx, held)
    try:  # before any model call: a broken project file or remote costs nothing
        work = project_for(ctx.settings, ctx.engine, run).prepare()
    except PROJECT_FAILURES as error:
        projects.handle(ctx, held, error)
        return
    tools = ctx.tools(held.id, held.run_id)
    tools.work = work
    try:
        _run_claimed(ctx, run, tools, work)
    finally:
        work.release()  # a worktree lives only while the run holds it


def _run_claimed(ctx: WorkflowContext, run: Run, tools: ToolContext, work: Work) -> None:
    held = run.held
    try:
        result = _work(ctx, run, tools, work)
    except failures.MODEL_FAILURES as error:
        failures.handle(ctx, held, error)
        return
    except RuntimeFailed as error:  # the coding agent's CLI gave nothing usable
        failures.count_failure(ctx, held, error.message)
        return
    if result.stopped:  # its lease keeper found the issue gone: another run has it, this one keeps nothing
        log.warning("execute.stopped", issue_id=held.id, reason="lease lost", run_id=str(held.run_id))
        return
    if result.timed_out:  # HQ's limit on a run, not a verdict on the issue: the attempt is refunded
        assert tools.limit is not None
        why = f"The run stopped at HQ's limit on one run ({tools.limit.setting} seconds); nothing was kept."
        failures.give_back(ctx, held, why)
        return
    with ctx.tx(held.run_id) as session:  # a run that lost the issue keeps nothing (the push is the real CAS)
        if not store.still_held(session, held):
            log.warning("execute.not_kept", issue_id=held.id, reason="lease lost", run_id=str(held.run_id))
            return
    try:
        kept = work.keep(run, result.written, result.text)
    except NotKept as error:
        log.warning("execute.not_kept", issue_id=held.id, error=error.message, run_id=str(held.run_id))
        failures.count_failure(ctx, held, error.message)
        return
    _conclude(ctx, held, result, tools.outcome, kept)


def _work(ctx: WorkflowContext, run: Run, tools: ToolContext, work: Work) -> RunResult:
    held = run.held
    assembly = _assembles(held)
    with ctx.tx(held.run_id) as session:
        issue = store.get_issue(session, held.id)
        system = prompts.system_prompt(ctx, session)
        context = work.brief(prompts.work_context(ctx, session, issue, stitch=assembly))
    tier = "reasoning" if assembly else module_tier(held.issue) or ctx.agent.tier
    router = ctx.router()
    runtime = runtime_for(ctx.roster.roles.get(ctx.agent.slug), work, router.models, tier)
    tools.limit = runtime.limit(ctx.settings)  # the commands its tools run end with it too
    request = RunRequest(
        settings=ctx.settings,
        router=router,
        call=ctx.call(held.id, held.run_id),
        tools=tools,
        tier=tier,
        system=system,
        user=user_message("stitch" if assembly else "execute", runtime.instructions(work.instructions), context),
        remaining_usd=issue.budget_usd - issue.spent_usd,
        limit=tools.limit,
        watch=run.watch,
    )
    return runtime.run(request)


def _assembles(held: Claim) -> bool:
    """A manager's run on an issue it decomposed: it assembles the finished parts."""
    return held.issue.playbook is not None and held.issue.module_key is None


def module_tier(issue: IssueRecord) -> str | None:
    """A playbook module may ask for another tier than its agent's default."""
    return next((label.split(":", 1)[1] for label in issue.labels if label.startswith("tier:")), None)


def _conclude(ctx: WorkflowContext, held: Claim, result: RunResult, outcome: ToolOutcome, kept: Kept) -> None:
    """Record what was kept, then submit, block, wait for research or count the attempt."""
    with ctx.tx(held.run_id) as session:
        moved: IssueRecord | None
        details = _record(session, held, kept)
        if details is None:
            moved = None
        elif outcome.blocked is not None or outcome.research:
            moved = _stop_for(ctx, session, held, outcome)
        elif result.exhausted or kept.nothing:
            why = "ran out of steps" if result.exhausted else kept.nothing
            moved = failures.count_failure_in(ctx, session, held, f"The work {why}. {result.text[:500]}".strip())
        else:
            moved = store.submit(session, held, reviewer_id=_reviewer(session, ctx))
            if moved is not None:
                # The closing text is only the summary; a model's habit of prefixing it is trimmed for people.
                summary = result.text.removeprefix("DONE:").strip() or kept.summary
                store.add_comment(
                    session,
                    held.id,
                    summary + details,
                    author=ctx.actor,
                    kind="note",
                    run_id=held.run_id,
                    idempotency_key=f"submitted:{held.run_id}",
                )
    log.info(
        "execute.concluded",
        issue_id=held.id,
        status=moved.status if moved else "lease-lost",
        commit=kept.commit,
        tools=len(result.tool_results),
        run_id=str(held.run_id),
    )


def _record(session: Session, held: Claim, kept: Kept) -> str | None:
    """Record what the run kept (projects/kinds.py), only while it still holds the issue (its row locked until
    the transaction ends): a run that lost its lease writes nothing, and None says so. Deploy, on whichever
    host, ships the last submission from these rows alone.
    """
    if not store.still_held(session, held, lock=True):
        log.warning("execute.artifacts_not_recorded", issue_id=held.id, reason="lease lost", run_id=str(held.run_id))
        return None
    return kept.record(session)


def _stop_for(ctx: WorkflowContext, session: Session, held: Claim, outcome: ToolOutcome) -> IssueRecord | None:
    """The agent said it cannot go on: blocked (escalated), or waiting for research answers in `todo`."""
    if outcome.blocked is not None:
        return block_and_escalate(
            session,
            held.issue,
            held=held,
            reason="agent",
            actor=ctx.actor,
            note=outcome.blocked.reason,
            deadline_hours=ctx.settings.approval_deadline_hours,
        )
    moved = store.return_to_todo(session, held)
    if moved is not None:
        asked = ", ".join(f"#{i}" for i in outcome.research_issue_ids)
        store.add_comment(session, held.id, f"Waiting on research: issue(s) {asked}.", author=ctx.actor, kind="system")
    return moved


def _reviewer(session: Session, ctx: WorkflowContext) -> int | None:
    """The author's reviewer if active, else the nearest active manager."""
    reviewer = store.get_agent(session, ctx.agent.reviewer_id) if ctx.agent.reviewer_id else None
    if reviewer is not None and reviewer.active:
        return reviewer.id
    manager = store.next_manager(session, ctx.agent.id)
    return manager.id if manager else None
