"""assign: route a manager's unstarted work to the best direct report.

Keywords decide first (the issue's words against the skills of each report and
everyone below them): fast, deterministic and free. Only when keywords tie or
find nothing does a utility-tier model choose. An executor gets the issue as
`todo`; a sub-manager gets it to route further. The root also routes issues
nobody owns yet.

A project issue goes to engineers only (workflows/lib/routing.py): the
candidates are the reports that are, or lead to, a role with the `code`
toolset — of the project's team when it names one — and keywords choose among
them with the skills of those agents alone (a lone candidate needs no choice).
A manager with no such report hands the issue to the team's manager or the
nearest engineer instead; with no active engineer anywhere it waits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy.orm import Session

from config.log import get_logger
from db import store
from db.store import AgentRecord, Claim, IssueRecord
from models.protocol import user_message
from models.schemas import Assignment
from models.structured import complete_json
from workflows.lib import failures, prompts, routing
from workflows.lib.claims import claim
from workflows.lib.context import WorkflowContext
from workflows.lib.decomposition import decompose, wants_decomposition

PER_BEAT = 100  # routing is cheap when keywords decide: clear the queue, within the beat's time
WORD = re.compile(r"[a-z0-9][a-z0-9-]*")
INSTRUCTIONS = "Choose the one direct report who should own this issue, from the candidates given."

log = get_logger(__name__)


def run(ctx: WorkflowContext) -> None:
    is_root = ctx.agent.manager_id is None
    for _ in range(PER_BEAT):
        if ctx.should_stop():
            return
        held = claim(ctx, "claim_routing") or (claim(ctx, "claim_unowned") if is_root else None)
        if held is None:
            return
        _route(ctx, held)


def words(text: str) -> set[str]:
    return set(WORD.findall(text.lower()))


def subtree_keywords(agents: dict[int, AgentRecord], root: AgentRecord) -> set[str]:
    """The routing vocabulary of a report: its own skills and those of everyone below it."""
    vocabulary: set[str] = set()
    stack = [root]
    while stack:
        agent = stack.pop()
        for skill in agent.skills:
            vocabulary.update(k.lower() for k in skill.get("keywords", []))
        stack.extend(a for a in agents.values() if a.manager_id == agent.id and a.status == "active")
    return vocabulary


def decide_by_keywords(scores: dict[str, int]) -> str | None:
    """The single best-scoring report, or None when nothing matched or the best ones tie."""
    if not scores:
        return None
    best = max(scores.values())
    leaders = [slug for slug, score in scores.items() if score == best]
    return leaders[0] if best > 0 and len(leaders) == 1 else None


@dataclass(frozen=True)
class Options:
    """Whom a held issue may go to: the candidates with their routing words, or a fallback when there are none."""

    candidates: list[AgentRecord]
    vocabulary: dict[str, set[str]]
    fallback: AgentRecord | None = None
    fallback_how: str = ""
    only_engineers: bool = False


def options(
    issue: IssueRecord,
    holder: AgentRecord,
    reports: list[AgentRecord],
    agents: dict[int, AgentRecord],
    team_id: int | None,
) -> Options:
    """The candidates for ``issue``: any active report, or for a project issue those leading to its engineers."""
    if issue.project_id is None:
        return Options(reports, {c.slug: subtree_keywords(agents, c) for c in reports})
    team = agents.get(team_id) if team_id is not None else None
    found = routing.reach(agents, team)
    chosen = routing.candidates(reports, found)
    vocabulary = {c.slug: found.vocabulary(agents, c) for c in chosen}
    if chosen:
        return Options(chosen, vocabulary, only_engineers=True)
    target = routing.fallback(agents, holder, team, found)
    to_team = team is not None and target is not None and target.id == team.id
    how = "the team's manager" if to_team else "the nearest engineer"
    return Options([], {}, target, f"fallback to {how}: no report leads to the project's engineers", True)


def _route(ctx: WorkflowContext, held: Claim) -> None:
    with ctx.tx(held.run_id) as session:
        issue = store.get_issue(session, held.id)
        reports = store.active_reports(session, ctx.agent.id)
        agents = store.all_agents(session)
        team_id = store.get_project(session, issue.project_id).team_id if issue.project_id is not None else None
        found = options(issue, ctx.agent, reports, agents, team_id)
        candidates = found.candidates
        text = words(f"{issue.title} {issue.body}")
        scores = {slug: len(text & vocabulary) for slug, vocabulary in found.vocabulary.items()}
        system = prompts.system_prompt(ctx, session) if candidates else ""
        if not candidates and found.fallback is not None:
            _hand_over(session, ctx, held, found.fallback, found.fallback_how, scores)
            return
    if not candidates:
        with ctx.tx(held.run_id) as session:
            store.release(session, held, counts=False)
        event = "assign.no_engineers" if found.only_engineers else "assign.no_reports"
        log.warning(event, issue_id=held.id, agent=ctx.agent.slug, workflow=ctx.workflow)
        return
    if "execute" in ctx.agent.workflows and wants_decomposition(ctx, issue) and decompose(ctx, held, issue):
        return  # a manager who can assemble the parts splits it instead of handing it down whole
    chosen, how = decide_by_keywords(scores), "keywords"
    if chosen is None and found.only_engineers and len(candidates) == 1:
        chosen, how = candidates[0].slug, "the only report leading to the project's engineers"
    if chosen is None:
        chosen, how = _ask_model(ctx, held, issue, candidates, found.vocabulary, scores, system), "utility model"
    if chosen is None:  # the model was unavailable: try again next beat
        return
    if found.only_engineers:
        how += " among engineers"
    target = next(c for c in candidates if c.slug == chosen)
    with ctx.tx(held.run_id) as session:
        _hand_over(session, ctx, held, target, how, scores)


def _ask_model(
    ctx: WorkflowContext,
    held: Claim,
    issue: IssueRecord,
    candidates: list[AgentRecord],
    vocabulary: dict[str, set[str]],
    scores: dict[str, int],
    system: str,
) -> str | None:
    context = {
        "manager": ctx.agent.slug,
        "issue": prompts.issue_brief(issue),
        "candidates": [
            {
                "slug": c.slug,
                "title": c.title,
                "skills": [s.get("name") for s in c.skills],
                "keywords": sorted(vocabulary[c.slug]),
                "keyword_score": scores[c.slug],
            }
            for c in candidates
        ],
    }
    try:
        answer = complete_json(
            ctx.router(),
            ctx.call(held.id, held.run_id),
            "utility",
            system=system,
            user=user_message("assign", INSTRUCTIONS, context, Assignment),
            schema=Assignment,
            max_tokens=256,
        )
    except failures.MODEL_FAILURES as error:
        if failures.handle(ctx, held, error, can_do_without=True):
            return None
        answer = None  # routing must not stall on money: the deterministic choice below

    valid = {c.slug for c in candidates}
    if answer is not None and answer.assignee in valid:
        return answer.assignee
    # A model answer outside the candidates is ignored: the best keyword score, then the first report.
    return max(sorted(valid), key=lambda slug: scores.get(slug, 0))


def _hand_over(
    session: Session, ctx: WorkflowContext, held: Claim, target: AgentRecord, how: str, scores: dict[str, int]
) -> None:
    wanted = "todo" if store.initial_status(target) == "todo" else held.issue.status
    moved = store.route(session, held, assignee_id=target.id, to_status=wanted) is not None
    if moved:
        best = ", ".join(f"{slug} {score}" for slug, score in sorted(scores.items(), key=lambda kv: -kv[1])[:3])
        store.add_comment(
            session,
            held.id,
            f"Routed to {target.slug} by {ctx.agent.slug} ({how}; keyword scores: {best}).",
            author=ctx.actor,
            kind="system",
            run_id=held.run_id,
        )
    log.info(
        "assign.routed",
        issue_id=held.id,
        to=target.slug,
        how=how,
        moved=moved,
        agent=ctx.agent.slug,
        run_id=str(held.run_id),
        workflow=ctx.workflow,
    )
