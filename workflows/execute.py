"""execute: claim the top claimable issue and work it with the agent's tools.

Individual contributors take their top `todo` issue (or their own `in_progress`
issue whose worker died). Managers only assemble issues they decomposed, once
every sub-issue is done. The result goes to `in_review`, or `blocked` when the
agent says so, or back to `todo` while a research question is answered.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from agents.llm.budget import BudgetExceeded
from agents.llm.protocol import user_message
from agents.llm.router import ModelRequestError, ModelUnavailable
from agents.llm.tool_loop import LoopResult, run_tool_loop
from agents.submission import record_snapshot, restore_workspace
from agents.tools.context import ToolContext
from agents.workspace import MAX_FILE_BYTES, Workspace, WorkspaceError
from config.log import get_logger
from db.issues import add_comment, get_issue
from db.models import Issue
from workflows.lib import prompts
from workflows.lib.claims import Claim, claim, finish, give_back, release
from workflows.lib.context import WorkflowContext
from workflows.lib.escalation import block_and_escalate, next_manager

NAME = "execute"
INSTRUCTIONS = (
    "Do the work this issue asks for, as your role would. Write the deliverable to the workspace file named in "
    "deliverable_path with write_file, addressing every checklist item. If you cannot finish, call mark_blocked "
    "with what is missing; if a fact must be researched first, call ask_research. End with one line starting "
    "DONE:, BLOCKED: or WAITING: and a one-sentence summary."
)
STITCH_INSTRUCTIONS = (
    "Every sub-issue of this issue is finished. Assemble their results (children) into one deliverable at "
    "deliverable_path with write_file, check it against your checklist, and end with a line starting DONE:."
)
# Every file the workspace allows is stored whole: deploy publishes from the database, never a local folder.
MAX_ARTIFACT_BYTES = MAX_FILE_BYTES

log = get_logger(__name__)


def run(ctx: WorkflowContext) -> None:
    if ctx.should_stop():
        return
    held = claim(ctx, "reclaim_expired_work") or claim(ctx, "claim_stitch" if ctx.agent.delegates else "claim_todo")
    if held is None:
        return
    stitch = held.issue.playbook is not None and held.issue.module_key is None
    tools = ctx.tools(held.id, held.run_id)
    try:
        result = _work(ctx, held, tools, stitch=stitch)
    except BudgetExceeded as refused:
        if refused.scope != "issue":  # the agent's or company's month ran out: not this issue's fault
            release(ctx, held, refund=True)
        return  # an issue-budget refusal already blocked the issue and asked a human for money
    except ModelUnavailable:
        release(ctx, held, refund=True)  # transient: never escalates by itself
        return
    except ModelRequestError as error:
        _fail(ctx, held, f"the model refused the request: {error.message}")
        return
    except WorkspaceError as error:  # e.g. the workspace cannot even be created
        _fail(ctx, held, f"The workspace is unusable: {error.message}")
        return
    if result.timed_out:
        release(ctx, held, refund=False)  # past the maximum duration: the attempt counts
        return
    _conclude(ctx, held, result, tools, stitch=stitch)


def _work(ctx: WorkflowContext, held: Claim, tools: ToolContext, *, stitch: bool) -> LoopResult:
    with ctx.tx(held.run_id) as session:
        issue = get_issue(session, held.id)
        system = prompts.system_prompt(ctx, session)
        context = prompts.work_context(ctx, session, issue, stitch=stitch)
    user = user_message("stitch" if stitch else "execute", STITCH_INSTRUCTIONS if stitch else INSTRUCTIONS, context)
    workspace = Workspace(tools.workspace_root()).ensure()
    with ctx.tx(held.run_id) as session:  # earlier work done on another host is here before the agent starts
        if restore_workspace(session, held.id, workspace):
            workspace.commit(agent=ctx.agent.slug, run_id=held.run_id, issue_id=held.id, workflow=NAME)
    tier = "reasoning" if stitch else module_tier(held.issue) or ctx.agent.tier
    return run_tool_loop(
        ctx.router(),
        ctx.call(held.id, held.run_id),
        tools,
        tier=tier,
        system=system,
        user=user,
        deadline=ctx.item_deadline(),
    )


def module_tier(issue: Issue) -> str | None:
    """A playbook module may ask for another tier than its agent's default."""
    return next((label.split(":", 1)[1] for label in issue.labels if label.startswith("tier:")), None)


def _conclude(ctx: WorkflowContext, held: Claim, result: LoopResult, tools: ToolContext, *, stitch: bool) -> None:
    blocked_reason = tools.outcome.blocked_reason or (
        result.text.removeprefix("BLOCKED:").strip() if result.text.startswith("BLOCKED:") else None
    )
    workspace = Workspace(tools.workspace_root())
    try:
        workspace.commit(agent=ctx.agent.slug, run_id=held.run_id, issue_id=held.id, workflow=NAME)
    except WorkspaceError as error:  # the work cannot be kept: this attempt failed, and says why
        log.warning(
            "execute.commit_failed",
            issue_id=held.id,
            error=error.message,
            agent=ctx.agent.slug,
            run_id=str(held.run_id),
            workflow=NAME,
        )
        _fail(ctx, held, f"Could not commit the workspace: {error.message}")
        return
    written = sorted(
        {
            r.result["path"]
            for r in result.tool_results
            if r.name == "write_file" and r.ok and r.result and "path" in r.result
        }
    )
    with ctx.tx(held.run_id) as session:
        _record_artifacts(ctx, session, held, workspace)
        if blocked_reason:
            moved = block_and_escalate(
                session,
                held.issue,
                reason="agent",
                actor=ctx.actor,
                note=blocked_reason,
                lease_owner=held.run_id,
                deadline_hours=ctx.settings.approval_deadline_hours,
            )
        elif tools.outcome.research_issue_ids:
            moved = finish(session, held, "todo")
            if moved is not None:
                add_comment(
                    session,
                    held.id,
                    f"Waiting on research: issue(s) {', '.join(f'#{i}' for i in tools.outcome.research_issue_ids)}.",
                    author=ctx.actor,
                    kind="system",
                )
        elif result.exhausted or not written:
            why = "ran out of steps" if result.exhausted else "produced no deliverable"
            moved = give_back(ctx, session, held, f"The work {why}. {result.text[:500]}".strip())
        else:
            # A finished run resets the attempt counter: attempts count consecutive failures only.
            moved = finish(session, held, "in_review", reviewer_id=_reviewer(session, ctx), attempts=0)
            if moved is not None:
                summary = result.text.removeprefix("DONE:").strip() or f"Submitted {', '.join(written)}."
                add_comment(
                    session,
                    held.id,
                    summary,
                    author=ctx.actor,
                    kind="note",
                    run_id=held.run_id,
                    idempotency_key=f"submitted:{held.run_id}",
                )
    log.info(
        "execute.concluded",
        issue_id=held.id,
        status=moved.status if moved else "lease-lost",
        tools=len(result.tool_results),
        stitch=stitch,
        agent=ctx.agent.slug,
        run_id=str(held.run_id),
        workflow=NAME,
    )


def _reviewer(session: Session, ctx: WorkflowContext) -> int | None:
    """The author's reviewer if active, else the nearest active manager."""
    from db.models import Agent

    reviewer = session.get(Agent, ctx.agent.reviewer_id) if ctx.agent.reviewer_id else None
    if reviewer is not None and reviewer.status == "active":
        return reviewer.id
    manager = next_manager(session, ctx.agent.id)
    return manager.id if manager else None


def _record_artifacts(ctx: WorkflowContext, session: Session, held: Claim, workspace: Workspace) -> None:
    """Record the workspace as this run leaves it: every file, content included (agents/submission.py).

    Only while this run still holds the issue (its row locked until the transaction ends): a run that lost its
    lease writes nothing. Deploy, on whichever host, ships the last submission from these rows alone.
    The rows carry the workspace's HEAD as it is then: bringing back files from another host's run may
    add a commit of its own.
    """
    owner = session.execute(
        select(Issue.lease_owner).where(Issue.id == held.id).with_for_update(key_share=True)
    ).scalar_one_or_none()
    if owner != held.run_id:
        log.warning(
            "execute.artifacts_not_recorded",
            issue_id=held.id,
            reason="lease lost",
            agent=ctx.agent.slug,
            run_id=str(held.run_id),
            workflow=NAME,
        )
        return
    record_snapshot(session, issue_id=held.id, run_id=held.run_id, agent_id=ctx.agent.id, workspace=workspace)


def _fail(ctx: WorkflowContext, held: Claim, why: str) -> None:
    """A failure that is this issue's: the attempt counts (the poison-pill guard sees it)."""
    with ctx.tx(held.run_id) as session:
        give_back(ctx, session, held, why)
