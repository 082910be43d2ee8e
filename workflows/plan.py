"""plan: the root turns active goals into issues, and re-orders what already exists. It never works them.

Idempotent: a planned issue's key is derived from its goal and title, so planning
again (or a re-run after a crash) creates nothing twice. New issues start unowned
in the backlog, where `assign` routes them down the chain of command.
"""

from __future__ import annotations

import hashlib
import uuid

from sqlalchemy import func, select

from config.log import get_logger
from config.vocabulary import TERMINAL_STATUSES
from db import store
from db.models import Goal, Issue
from db.store import IssueDraft
from models.protocol import user_message
from models.schemas import Plan
from models.structured import complete_json
from workflows.lib import failures, prompts
from workflows.lib.context import WorkflowContext

INSTRUCTIONS = (
    "For each active goal, make sure the next outcome toward it exists as an issue with a clear title, "
    "acceptance criteria in the body and a priority. Do not duplicate open issues; reprioritise them instead."
)

log = get_logger(__name__)


def run(ctx: WorkflowContext) -> None:
    run_id = uuid.uuid4()
    with ctx.tx(run_id) as session:
        goals = session.scalars(select(Goal).where(Goal.status == "active").order_by(Goal.priority, Goal.id)).all()
        if not goals:
            return
        open_by_goal: dict[int | None, int] = {
            goal_id: count
            for goal_id, count in session.execute(
                select(Issue.goal_id, func.count())
                .where(Issue.goal_id.in_([g.id for g in goals]), Issue.status.not_in(TERMINAL_STATUSES))
                .group_by(Issue.goal_id)
            )
        }
        context = {
            "goals": [
                {
                    "id": g.id,
                    "title": g.title,
                    "description": g.description[:2000],
                    "priority": g.priority,
                    "open_issues": open_by_goal.get(g.id, 0),
                }
                for g in goals
            ]
        }
        system = prompts.system_prompt(ctx, session)
    try:
        plan = complete_json(
            ctx.router(),
            ctx.call(None, run_id),
            "reasoning",
            system=system,
            user=user_message("plan", INSTRUCTIONS, context, Plan),
            schema=Plan,
        )
    except failures.MODEL_FAILURES as error:
        failures.handle(ctx, None, error)  # nothing is claimed: planning is simply skipped this beat
        return
    goal_ids = {g.id for g in goals}
    created = 0
    with ctx.tx(run_id) as session:
        for planned in plan.issues:
            if planned.goal_id not in goal_ids:
                continue
            key = f"plan:{planned.goal_id}:{hashlib.sha256(planned.title.lower().encode()).hexdigest()[:16]}"
            existing = session.scalar(select(Issue.id).where(Issue.idempotency_key == key))
            if existing is None:
                issue = store.create_issue(
                    session,
                    IssueDraft(title=planned.title, body=planned.body, priority=planned.priority),
                    actor=ctx.actor,
                    goal_id=planned.goal_id,
                    idempotency_key=key,
                    default_budget_usd=ctx.settings.default_issue_budget_usd,
                    max_attempts=ctx.settings.max_attempts,
                )
                ctx.touch(issue.id)
                created += 1
        for change in plan.reprioritise:
            store.reprioritise(session, change.issue_id, change.priority, goal_ids=goal_ids)
    log.info(
        "plan.done",
        goals=len(goals),
        created=created,
        reprioritised=len(plan.reprioritise),
        agent=ctx.agent.slug,
        workflow=ctx.workflow,
    )
