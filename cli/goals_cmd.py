"""`hq goal create` and `hq goals`: what the CEO plans toward."""

from __future__ import annotations

from typing import Annotated

import typer

from cli.arguments import GoalId
from cli.common import ActorOption, JsonOption, human
from config.errors import UsageError

goal_app = typer.Typer(help="Company goals (the CEO plans issues toward the active ones).", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(goal_app, name="goal")
    app.command("goals")(list_goals)


@goal_app.command("create")
def create(
    title: Annotated[str, typer.Argument()],
    description: Annotated[str, typer.Option("--description")] = "",
    priority: Annotated[int, typer.Option("--priority", min=0, max=9)] = 5,
    actor: ActorOption = None,
) -> None:
    """Create an active goal and print its id."""
    from db.engine import transaction
    from db.models import Goal

    title = title.strip()
    if not title or "\x00" in title or "\n" in title or len(title) > 500:
        raise UsageError("invalid goal: title must be one non-empty line of at most 500 characters")
    if "\x00" in description:
        raise UsageError("invalid goal: description must not contain NUL bytes")
    who = human(actor)
    with transaction(who) as session:
        goal = Goal(title=title, description=description, priority=priority, created_by=who)
        session.add(goal)
        session.flush()
        goal_id = goal.id
    typer.echo(goal_id)


@goal_app.command("close")
def close(
    goal_id: GoalId,
    dropped: Annotated[bool, typer.Option("--dropped", help="Dropped rather than achieved.")] = False,
    actor: ActorOption = None,
) -> None:
    """Mark a goal achieved (or dropped)."""
    from sqlalchemy import update

    from config.errors import NotFoundError
    from db.engine import transaction
    from db.models import Goal

    with transaction(human(actor)) as session:
        row = session.execute(
            update(Goal)
            .where(Goal.id == goal_id)
            .values(status="dropped" if dropped else "achieved")
            .returning(Goal.id)
        ).first()
        if row is None:
            raise NotFoundError(f"goal {goal_id} does not exist")
    typer.echo(f"goal {goal_id}: {'dropped' if dropped else 'achieved'}")


def list_goals(as_json: JsonOption = False) -> None:
    """List goals with their open and finished issues."""
    from sqlalchemy import func, select

    from config.vocabulary import TERMINAL_STATUSES
    from db.engine import read_only
    from db.models import Goal, Issue

    with read_only() as session:
        rows = [
            dict(r._mapping)
            for r in session.execute(
                select(
                    Goal.id,
                    Goal.title,
                    Goal.status,
                    Goal.priority,
                    func.count(Issue.id).filter(Issue.status.not_in(TERMINAL_STATUSES)).label("open_issues"),
                    func.count(Issue.id).filter(Issue.status == "done").label("done_issues"),
                )
                .outerjoin(Issue, Issue.goal_id == Goal.id)
                .group_by(Goal.id)
                .order_by(Goal.id)
            )
        ]
    if as_json:
        from cli.output import print_json

        print_json(rows)
        return
    from cli.output import console, safe

    for row in rows:
        console.print(
            f"#{row['id']} [{row['status']}] p{row['priority']} {safe(row['title'])} — "
            f"{row['open_issues']} open, {row['done_issues']} done"
        )
