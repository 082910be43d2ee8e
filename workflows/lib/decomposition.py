"""Decomposition: a manager turns a large request into sub-issues with a playbook.

1. Is it a request a playbook may fit? Any top-level issue that is not a part
   already; a project issue (one change on one branch, worked by an engineer)
   only when labelled ``decompose``.
2. Which playbook? Keywords first (deterministic, free): at least two distinct
   keywords of one playbook, ahead of every other, choose it with no model call,
   bullets or not. Otherwise one utility-tier call classifies the request among
   the playbooks' names or none (labelled ``decompose``: a playbook is expected);
   its answer is recorded on the issue, so the managers below do not ask again.
   A refused or failed classification means no playbook: the issue is routed whole.
3. Adapt: a reasoning-tier model may add, drop or rewire modules; its answer is
   validated (known roles, no cycles) and the playbook as written is used if it
   fails validation.
4. Create every sub-issue, its dependency edges and budget share in one
   transaction, each share carved out of the parent's budget (never minted:
   the parent keeps one share for the assembly, and what a part leaves unused
   comes back to it when the part ends); if the parent cannot fund them all,
   nothing is created and the issue is routed whole. Claims skip issues with unfinished dependencies, so the modules
   run in waves; the parent waits (`blocked`, reason `waiting`) and comes back to
   this manager to assemble once every part is done.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from agents.playbooks import Module, Playbook, PlaybookSet, module_problems, waves, within_roles
from config.log import get_logger
from db import store
from db.store import Claim, IssueDraft, IssueRecord
from models.protocol import user_message
from models.router import ModelRequestError
from models.schemas import PlaybookAdaptation, PlaybookChoice
from models.structured import complete_json
from workflows.lib import failures, prompts, routing
from workflows.lib.context import WorkflowContext

LABEL = "decompose"
MIN_KEYWORDS = 2  # one stray word ("error", "build", "post") is not the shape of a playbook's request
CLASSIFY = (
    "Decide whether this request is larger than one agent's work and one of these playbooks fits it. "
    "Answer the name of the playbook that fits best, or null if none does (then one agent does it whole)."
)
CLASSIFY_LABELLED = (
    "This request was marked for decomposition: it is larger than one agent's work. "
    "Choose the playbook that fits it best, or null if none does."
)
ADAPT = (
    "Adapt this playbook to the request: add, drop or rewire modules so the parts produce exactly what the "
    "request needs. Use only the roles listed. Keep dependencies acyclic."
)

log = get_logger(__name__)


@dataclass(frozen=True)
class KeywordVerdict:
    """What keywords alone say: the playbook they choose, or that a classification call must decide."""

    playbook: str | None
    scores: dict[str, int]

    @property
    def decided(self) -> bool:
        return self.playbook is not None


def by_keywords(playbooks: PlaybookSet, issue: IssueRecord) -> KeywordVerdict:
    """The playbook whose keywords the request matches best, if it matches at least two and leads alone."""
    scores = playbooks.keyword_scores(f"{issue.title} {issue.body}")
    best = max(scores.values(), default=0)
    leaders = [name for name, score in scores.items() if score == best]
    chosen = leaders[0] if best >= MIN_KEYWORDS and len(leaders) == 1 else None
    return KeywordVerdict(chosen, scores)


def wants_decomposition(ctx: WorkflowContext, issue: IssueRecord) -> bool:
    """Whether a playbook may split ``issue`` (which one, if any, choose_playbook decides)."""
    if issue.parent_id is not None or issue.module_key is not None or ctx.playbooks is None:
        return False  # parts are never split again
    return issue.project_id is None or LABEL in issue.labels


def classified_key(issue_id: int) -> str:
    return f"playbook-classified:{issue_id}"


def choose_playbook(ctx: WorkflowContext, held: Claim, issue: IssueRecord, system: str) -> Playbook | None:
    """Keywords first; else one utility call (once per issue: its answer is left as a comment)."""
    assert ctx.playbooks is not None
    verdict = by_keywords(ctx.playbooks, issue)
    if verdict.decided:
        return ctx.playbooks.get(verdict.playbook)
    with ctx.tx(held.run_id) as session:
        if store.comment_exists(session, classified_key(issue.id)):
            return None  # a manager above already asked, and no playbook fitted
    labelled = LABEL in issue.labels
    context = {
        "issue": prompts.issue_brief(issue),
        "decomposition_requested": labelled,
        "keyword_scores": verdict.scores,
        "playbooks": [
            {"name": p.name, "description": p.description, "keywords": p.classification_keywords}
            for p in ctx.playbooks.playbooks.values()
        ],
    }
    choice = complete_json(
        ctx.router(),
        ctx.call(held.id, held.run_id),
        "utility",
        system=system,
        user=user_message("classify", CLASSIFY_LABELLED if labelled else CLASSIFY, context, PlaybookChoice),
        schema=PlaybookChoice,
        max_tokens=256,
    )
    playbook = ctx.playbooks.get(choice.playbook)
    if playbook is None:
        with ctx.tx(held.run_id) as session:
            store.add_comment(
                session,
                issue.id,
                f"No playbook fits this request (utility classification by {ctx.agent.slug}): it is routed whole.",
                author=ctx.actor,
                kind="system",
                run_id=held.run_id,
                idempotency_key=classified_key(issue.id),
            )
    return playbook


def adapt(
    ctx: WorkflowContext, held: Claim, issue: IssueRecord, playbook: Playbook, roles: dict[str, str], system: str
) -> list[Module]:
    context = {
        "issue": prompts.issue_brief(issue),
        "playbook": playbook.model_dump(),
        "roles": [{"slug": slug, "title": title} for slug, title in sorted(roles.items())],
    }
    try:
        answer = complete_json(
            ctx.router(),
            ctx.call(held.id, held.run_id),
            "reasoning",
            system=system,
            user=user_message("adapt", ADAPT, context, PlaybookAdaptation),
            schema=PlaybookAdaptation,
        )
    except ModelRequestError as error:  # an adaptation is a refinement: the playbook as written still serves
        log.warning("decompose.adaptation_unusable", issue_id=issue.id, error=error.message, workflow=ctx.workflow)
        return within_roles(playbook.modules, set(roles))
    modules = [Module.model_validate(m.model_dump()) for m in answer.modules]
    problems = module_problems(modules, set(roles))
    if problems:
        log.warning("decompose.adaptation_rejected", issue_id=issue.id, problems=problems, workflow=ctx.workflow)
        return within_roles(playbook.modules, set(roles))  # as written, minus the parts no active role can take
    return modules


def decompose(ctx: WorkflowContext, held: Claim, issue: IssueRecord) -> bool:
    """Try to decompose ``issue``; True when it was or a model failure was handled, False to route it whole."""
    with ctx.tx(held.run_id) as session:
        system = prompts.system_prompt(ctx, session)
        active = [a for a in store.all_agents(session).values() if a.active]
    if issue.project_id is not None:  # the parts of a git project's change go to engineers too
        active = [a for a in active if routing.can_code(a)]
    roles = {a.slug: a.title for a in active}
    try:
        playbook = choose_playbook(ctx, held, issue, system)
        if playbook is None:
            return False
        modules = adapt(ctx, held, issue, playbook, roles, system)
        if len(modules) < 2:  # nothing left to split among several agents
            log.warning("decompose.too_few_parts", issue_id=issue.id, playbook=playbook.name, workflow=ctx.workflow)
            return False
    except failures.MODEL_FAILURES as error:
        # Splitting is optional: whatever the model's trouble, the issue can be routed whole instead
        # (and the routing's own call then meets the failure policy), unless the credentials are refused.
        if failures.decide(error) is not failures.Action.BLOCK_FOR_AUTH:
            return False
        return failures.handle(ctx, held, error)
    try:
        with ctx.tx(held.run_id) as session:
            created = _create(ctx, session, held, playbook, modules)
    except store.CarveRefused as refused:  # the transaction rolled back: no part exists, the issue goes whole
        log.warning("decompose.unfunded", issue_id=issue.id, error=refused.message, workflow=ctx.workflow)
        return False
    log.info(
        "decompose.done",
        issue_id=issue.id,
        playbook=playbook.name,
        modules=len(modules),
        created=created,
        waves=waves(modules),
        agent=ctx.agent.slug,
        run_id=str(held.run_id),
        workflow=ctx.workflow,
    )
    return created


def _create(ctx: WorkflowContext, session: Session, held: Claim, playbook: Playbook, modules: list[Module]) -> bool:
    issue = store.get_issue(session, held.id, lock=True)
    if issue.lease_owner != held.run_id:
        return False
    agents = {a.slug: a for a in store.all_agents(session).values() if a.active}
    share = issue.budget_left / (len(modules) + 1)  # one share stays for the assembly; funding rounds to the cent
    children: dict[str, int] = {}
    for module in modules:
        draft = IssueDraft(
            title=f"{issue.title} — {module.title}"[:500],
            body=(
                f"Part of #{issue.id}, playbook {playbook.name}.\n\nProduce: {module.output}\n\n"
                f"The request:\n{issue.body[:4000]}"
            ),
            priority=issue.priority,
            labels=["module", f"tier:{module.tier}"],
        )
        child = store.create_funded_issue(
            session,
            draft,
            parent_id=issue.id,
            amount_usd=share,
            actor=ctx.actor,
            assignee=agents[module.role],
            goal_id=issue.goal_id,
            max_attempts=issue.max_attempts,
            module_key=module.id,
            idempotency_key=f"playbook:{issue.id}:{module.id}",
        )
        children[module.id] = child.id
    for module in modules:
        store.add_dependencies(session, children[module.id], [children[d] for d in module.depends_on])
    store.add_dependencies(session, issue.id, list(children.values()))
    if store.wait_on_parts(session, held, assignee_id=ctx.agent.id, playbook=playbook.name) is None:
        return False
    plan = " then ".join("(" + ", ".join(f"#{children[m]} {m}" for m in wave) + ")" for wave in waves(modules))
    store.add_comment(
        session,
        issue.id,
        f"Decomposed by {ctx.agent.slug} with playbook {playbook.name}: {plan}. "
        f"It comes back here for assembly once every part is done.",
        author=ctx.actor,
        kind="system",
    )
    return True
