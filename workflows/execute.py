"""execute: claim the top claimable issue and work it with the agent's tools.

Individual contributors take their top `todo` issue (or their own `in_progress`
issue whose worker died). Managers only assemble issues they decomposed, once
every sub-issue is done. The result goes to `in_review`, or `blocked` when the
agent says so, or back to `todo` while a research question is answered.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from agents.llm.protocol import user_message
from agents.llm.tool_loop import LoopResult, run_tool_loop
from agents.submission import record_snapshot, restore_workspace
from agents.tools.context import ToolContext
from agents.workspace import MAX_FILE_BYTES, Workspace, WorkspaceError
from config.log import get_logger
from db import store
from db.store import Claim, IssueRecord
from workflows.lib import failures, prompts
from workflows.lib.claims import claim
from workflows.lib.context import WorkflowContext
from workflows.lib.escalation import block_and_escalate

INSTRUCTIONS = (
    "Do the work this issue asks for, as your role would. Write the deliverable to the workspace file named in "
    "deliverable_path with write_file, addressing every checklist item. If you cannot finish, call mark_blocked "
    "with what is missing; if a fact must be researched first, call ask_research. End with a one-sentence "
    "summary of what you did."
)
STITCH_INSTRUCTIONS = (
    "Every sub-issue of this issue is finished. Assemble their results (children) into one deliverable at "
    "deliverable_path with write_file, check it against your checklist, and end with a one-sentence summary."
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
    except failures.MODEL_FAILURES as error:
        failures.handle(ctx, held, error)
        return
    except WorkspaceError as error:  # e.g. the workspace cannot even be created
        failures.count_failure(ctx, held, f"The workspace is unusable: {error.message}")
        return
    if result.timed_out:
        failures.count_failure(ctx, held, "The run passed its maximum duration.")
        return
    _conclude(ctx, held, result, tools, stitch=stitch)


def _work(ctx: WorkflowContext, held: Claim, tools: ToolContext, *, stitch: bool) -> LoopResult:
    with ctx.tx(held.run_id) as session:
        issue = store.get_issue(session, held.id)
        system = prompts.system_prompt(ctx, session)
        context = prompts.work_context(ctx, session, issue, stitch=stitch)
    user = user_message("stitch" if stitch else "execute", STITCH_INSTRUCTIONS if stitch else INSTRUCTIONS, context)
    workspace = Workspace(tools.workspace_root()).ensure()
    with ctx.tx(held.run_id) as session:  # earlier work done on another host is here before the agent starts
        if restore_workspace(session, held.id, workspace):
            workspace.commit(agent=ctx.agent.slug, run_id=held.run_id, issue_id=held.id, workflow=ctx.workflow)
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


def module_tier(issue: IssueRecord) -> str | None:
    """A playbook module may ask for another tier than its agent's default."""
    return next((label.split(":", 1)[1] for label in issue.labels if label.startswith("tier:")), None)


def _conclude(ctx: WorkflowContext, held: Claim, result: LoopResult, tools: ToolContext, *, stitch: bool) -> None:
    outcome = tools.outcome
    workspace = Workspace(tools.workspace_root())
    try:
        workspace.commit(agent=ctx.agent.slug, run_id=held.run_id, issue_id=held.id, workflow=ctx.workflow)
    except WorkspaceError as error:  # the work cannot be kept: this attempt failed, and says why
        log.warning(
            "execute.commit_failed",
            issue_id=held.id,
            error=error.message,
            agent=ctx.agent.slug,
            run_id=str(held.run_id),
            workflow=ctx.workflow,
        )
        failures.count_failure(ctx, held, f"Could not commit the workspace: {error.message}")
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
        moved: IssueRecord | None
        if outcome.blocked is not None:
            moved = block_and_escalate(
                session,
                held.issue,
                held=held,
                reason="agent",
                actor=ctx.actor,
                note=outcome.blocked.reason,
                deadline_hours=ctx.settings.approval_deadline_hours,
            )
        elif outcome.research:
            moved = store.return_to_todo(session, held)
            if moved is not None:
                asked = ", ".join(f"#{i}" for i in outcome.research_issue_ids)
                store.add_comment(
                    session, held.id, f"Waiting on research: issue(s) {asked}.", author=ctx.actor, kind="system"
                )
        elif result.exhausted or not written:
            why = "ran out of steps" if result.exhausted else "produced no deliverable"
            moved = failures.count_failure_in(ctx, session, held, f"The work {why}. {result.text[:500]}".strip())
        else:
            moved = store.submit(session, held, reviewer_id=_reviewer(session, ctx))
            if moved is not None:
                # The closing text is only the summary; a model's habit of prefixing it is trimmed for people.
                summary = result.text.removeprefix("DONE:").strip() or f"Submitted {', '.join(written)}."
                store.add_comment(
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
        workflow=ctx.workflow,
    )


def _reviewer(session: Session, ctx: WorkflowContext) -> int | None:
    """The author's reviewer if active, else the nearest active manager."""
    reviewer = store.get_agent(session, ctx.agent.reviewer_id) if ctx.agent.reviewer_id else None
    if reviewer is not None and reviewer.active:
        return reviewer.id
    manager = store.next_manager(session, ctx.agent.id)
    return manager.id if manager else None


def _record_artifacts(ctx: WorkflowContext, session: Session, held: Claim, workspace: Workspace) -> None:
    """Record the workspace as this run leaves it: every file, content included (agents/submission.py).

    Only while this run still holds the issue (its row locked until the transaction ends): a run that lost its
    lease writes nothing. Deploy, on whichever host, ships the last submission from these rows alone.
    The rows carry the workspace's HEAD as it is then: bringing back files from another host's run may
    add a commit of its own.
    """
    if store.get_issue(session, held.id, lock=True).lease_owner != held.run_id:
        log.warning(
            "execute.artifacts_not_recorded",
            issue_id=held.id,
            reason="lease lost",
            agent=ctx.agent.slug,
            run_id=str(held.run_id),
            workflow=ctx.workflow,
        )
        return
    record_snapshot(session, issue_id=held.id, run_id=held.run_id, agent_id=ctx.agent.id, workspace=workspace)
