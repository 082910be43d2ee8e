"""execute: claim the top claimable issue and work it with the agent's tools.

Individual contributors take their top `todo` issue (or their own `in_progress`
issue whose worker died). Managers only assemble issues they decomposed, once
every sub-issue is done. The result goes to `in_review`, or `blocked` when the
agent says so, or back to `todo` while a research question is answered.

An issue of a git project is worked in its own worktree on ``hq/issue-<id>``
(projects/repo/work.py), built from the pushed branch so any host continues
where the last run stopped; the run's commit is pushed before the issue moves.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from agents.roster import RuntimeOptions
from agents.tools.context import ToolContext, ToolOutcome
from config.log import get_logger
from db import store
from db.store import Claim, IssueRecord
from models.protocol import user_message
from projects.document.snapshots import record_snapshot, restore_workspace
from projects.repo.repository import RepositoryError
from projects.repo.work import RepoWork, commit_and_push, prepare, record_commit, release
from projects.workspace import MAX_FILE_BYTES, Workspace, WorkspaceError
from runtimes import RuntimeFailed
from runtimes.builtin import LoopResult, run_tool_loop
from workflows.lib import failures, projects, prompts
from workflows.lib.claims import claim
from workflows.lib.context import WorkflowContext
from workflows.lib.escalation import block_and_escalate

INSTRUCTIONS = (
    "Do the work this issue asks for, as your role would. Write the deliverable to the workspace file named in "
    "deliverable_path with write_file, addressing every checklist item. If you cannot finish, call mark_blocked "
    "with what is missing; if a fact must be researched first, call ask_research. End with a one-sentence "
    "summary of what you did."
)
CODE_INSTRUCTIONS = (
    "Make the change this issue asks for in the project's repository (your worktree; project names its commands "
    "and gate). Read the code first (list_files, search, read_file), change it with edit_file or write_file, run "
    "the gate commands with run_command until they pass, and check your change with diff. HQ commits and pushes "
    "what you leave. If project lists merge_conflicts, the base branch was merged in and those files hold "
    "conflict markers: resolve them first. If you cannot finish, call mark_blocked with what is missing. End with "
    "a one-sentence summary."
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
    project = projects.project_of(ctx, held)
    if project is not None:
        try:  # before any model call: a broken project file or remote costs nothing
            tools.work = prepare(ctx.settings, project, held.id, run_id=held.run_id, deadline=ctx.item_deadline())
        except projects.PROJECT_FAILURES as error:
            projects.handle(ctx, held, error)
            return
    try:
        _run_claimed(ctx, held, tools, stitch=stitch)
    finally:
        if tools.work is not None:  # the worktree lives only while the run holds it
            release(tools.work)


def _run_claimed(ctx: WorkflowContext, held: Claim, tools: ToolContext, *, stitch: bool) -> None:
    try:
        result = _work(ctx, held, tools, stitch=stitch)
    except failures.MODEL_FAILURES as error:
        failures.handle(ctx, held, error)
        return
    except WorkspaceError as error:  # e.g. the workspace cannot even be created
        failures.count_failure(ctx, held, f"The workspace is unusable: {error.message}")
        return
    except RuntimeFailed as error:  # the coding agent's CLI gave nothing usable
        failures.count_failure(ctx, held, error.message)
        return
    if result.timed_out:
        failures.count_failure(ctx, held, "The run passed its maximum duration.")
        return
    if tools.work is not None:
        _conclude_code(ctx, held, result, tools, tools.work)
    else:
        _conclude(ctx, held, result, tools, stitch=stitch)


def _work(ctx: WorkflowContext, held: Claim, tools: ToolContext, *, stitch: bool) -> LoopResult:
    with ctx.tx(held.run_id) as session:
        issue = store.get_issue(session, held.id)
        system = prompts.system_prompt(ctx, session)
        context = prompts.work_context(ctx, session, issue, stitch=stitch)
    tier = "reasoning" if stitch else module_tier(held.issue) or ctx.agent.tier
    if tools.work is not None:
        context = code_context(context, tools.work)
        runtime = _coding_agent(ctx, tier)
        if runtime is not None:
            from models.forwarder import forwarder_for  # the CLI's runtime: only a role that has it pays
            from runtimes import claude_code

            return claude_code.run(
                ctx.settings,
                forwarder_for(ctx.router()),
                ctx.call(held.id, held.run_id),
                tools,
                tools.work,
                tier=tier,
                options=runtime,
                system=system,
                user=user_message("execute", claude_code.CLI_INSTRUCTIONS, context),
                remaining_usd=issue.budget_usd - issue.spent_usd,
                deadline=ctx.item_deadline(),
            )
        user = user_message("execute", CODE_INSTRUCTIONS, context)
    else:
        instructions = STITCH_INSTRUCTIONS if stitch else INSTRUCTIONS
        user = user_message("stitch" if stitch else "execute", instructions, context)
        workspace = Workspace(tools.workspace_root()).ensure()
        with ctx.tx(held.run_id) as session:  # earlier work done on another host is here before the agent starts
            if restore_workspace(session, held.id, workspace):
                workspace.commit(agent=ctx.agent.slug, run_id=held.run_id, issue_id=held.id, workflow=ctx.workflow)
    return run_tool_loop(
        ctx.router(),
        ctx.call(held.id, held.run_id),
        tools,
        tier=tier,
        system=system,
        user=user,
        deadline=ctx.item_deadline(),
    )


def _coding_agent(ctx: WorkflowContext, tier: str) -> RuntimeOptions | None:
    """The role's coding-agent options, when it has one and a provider the CLI can talk to serves its tier.

    The CLI speaks only Anthropic's Messages API: with no Anthropic deployment (the offline
    model, say) the role works with HQ's own tool loop, and says so once per run.
    """
    role = ctx.roster.roles.get(ctx.agent.slug)
    if role is None or role.spec.runtime != "claude-code":
        return None
    from runtimes.claude_code import serves

    options = role.spec.runtime_settings
    if serves(ctx.router().models, options.tier or tier):
        return options
    log.info(
        "execute.builtin_runtime",
        reason="no Anthropic deployment serves the tier",
        tier=options.tier or tier,
        agent=ctx.agent.slug,
        workflow=ctx.workflow,
    )
    return None


def code_context(context: dict[str, Any], work: RepoWork) -> dict[str, Any]:
    """The work context for a project issue: the repository and its commands instead of a deliverable file."""
    context = {key: value for key, value in context.items() if key != "deliverable_path"}
    context["project"] = {
        "name": work.project.name,
        "base_branch": work.project.base_branch,
        "branch": work.branch,
        "commands": sorted(work.project_file.commands),
        "gate": list(work.project_file.gate),
    }
    if work.conflicts:  # the base moved on and conflicts with this branch: the run's commit concludes the merge
        context["project"]["merge_conflicts"] = list(work.conflicts)
    return context


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
        if outcome.blocked is not None or outcome.research:
            moved = _stop_for(ctx, session, held, outcome)
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


def _conclude_code(ctx: WorkflowContext, held: Claim, result: LoopResult, tools: ToolContext, work: RepoWork) -> None:
    """Commit and push what the run left (the compare-and-set), then submit, block or count the attempt."""
    outcome = tools.outcome
    with ctx.tx(held.run_id) as session:  # a run that lost the issue pushes nothing (the push is the real CAS)
        if not store.still_held(session, held):
            log.warning(
                "execute.not_pushed",
                issue_id=held.id,
                reason="lease lost",
                agent=ctx.agent.slug,
                run_id=str(held.run_id),
                workflow=ctx.workflow,
            )
            return
    unresolved = work.worktree.conflicted(work.conflicts)
    if unresolved:
        failures.count_failure(
            ctx, held, f"The base branch's changes conflict and were not resolved in: {', '.join(unresolved)}."
        )
        return
    try:
        head, push = commit_and_push(work, agent=ctx.agent.slug, run_id=held.run_id, workflow=ctx.workflow)
    except (RepositoryError, WorkspaceError) as error:
        failures.count_failure(ctx, held, f"Could not commit and push the work: {error.message}")
        return
    if not push.pushed:
        failures.count_failure(
            ctx, held, f"The push of {work.branch} was refused: it moved since this run started.\n{push.detail}"
        )
        return
    with ctx.tx(held.run_id) as session:
        moved: IssueRecord | None
        if not store.still_held(session, held, lock=True):
            moved = None
        elif outcome.blocked is not None or outcome.research:
            moved = _stop_for(ctx, session, held, outcome)
        elif result.exhausted or work.worktree.unchanged(work.base, head):
            why = "ran out of steps" if result.exhausted else f"changed nothing on {work.branch}"
            moved = failures.count_failure_in(ctx, session, held, f"The work {why}. {result.text[:500]}".strip())
        else:
            stat = record_commit(session, work, commit=head, run_id=held.run_id, agent_id=ctx.agent.id)
            moved = store.submit(session, held, reviewer_id=_reviewer(session, ctx))
            if moved is not None:
                summary = result.text.removeprefix("DONE:").strip() or f"Pushed {work.branch}."
                store.add_comment(
                    session,
                    held.id,
                    f"{summary}\n\nCommit {head[:12]} on {work.branch}:\n{stat}",
                    author=ctx.actor,
                    kind="note",
                    run_id=held.run_id,
                    idempotency_key=f"submitted:{held.run_id}",
                )
    log.info(
        "execute.concluded",
        issue_id=held.id,
        status=moved.status if moved else "lease-lost",
        commit=head,
        tools=len(result.tool_results),
        agent=ctx.agent.slug,
        run_id=str(held.run_id),
        workflow=ctx.workflow,
    )


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


def _record_artifacts(ctx: WorkflowContext, session: Session, held: Claim, workspace: Workspace) -> None:
    """Record the workspace as this run leaves it: every file, content included (projects/document/snapshots.py).

    Only while this run still holds the issue (its row locked until the transaction ends): a run that lost its
    lease writes nothing. Deploy, on whichever host, ships the last submission from these rows alone.
    The rows carry the workspace's HEAD as it is then: bringing back files from another host's run may
    add a commit of its own.
    """
    if not store.still_held(session, held, lock=True):
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
