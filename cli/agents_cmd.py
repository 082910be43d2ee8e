"""`hq agents`: the org chart, one agent's details, pausing and resuming, roster checks."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from cli.common import ActorOption, JsonOption, human
from config.errors import NotFoundError, StateError

agents_app = typer.Typer(help="The company's agents (roles from AGENTS.md files).", invoke_without_command=True)


def register(app: typer.Typer) -> None:
    app.add_typer(agents_app, name="agents")


def load_and_sync():  # type: ignore[no-untyped-def]
    """Validate the roster and make the agents table match it (one transaction)."""
    from agents.roster import load_roster
    from agents.sync import ACTOR, sync_roster
    from config.settings import get_settings
    from db.engine import transaction

    roster = load_roster(get_settings().roles_path)
    with transaction(ACTOR, workflow="roster-sync") as session:
        report = sync_roster(session, roster)
    return roster, report


@agents_app.callback()
def tree(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Print the org chart: title, heartbeat and status of every agent."""
    if ctx.invoked_subcommand is not None:
        return
    from rich.tree import Tree
    from sqlalchemy import select

    from cli.output import console, print_json, safe
    from db.engine import read_only
    from db.models import Agent

    roster, _report = load_and_sync()
    with read_only() as session:
        rows = {a.slug: a for a in session.scalars(select(Agent))}
    if as_json:
        print_json(
            [
                {
                    "slug": role.slug,
                    "title": role.spec.title,
                    "reports_to": role.spec.reports_to,
                    "heartbeat": str(role.spec.heartbeat),
                    "status": rows[role.slug].status,
                    "depth": depth,
                }
                for depth, role in roster.walk()
            ]
        )
        return
    nodes: dict[str, Tree] = {}
    root: Tree | None = None
    for _depth, role in roster.walk():
        agent = rows[role.slug]
        status = "[green]active[/green]" if agent.status == "active" else f"[yellow]{agent.status}[/yellow]"
        label = f"[bold]{safe(role.slug)}[/bold] — {safe(role.spec.title)} (every {role.spec.heartbeat}, {status})"
        if role.spec.reports_to is None:
            root = nodes[role.slug] = Tree(label)
        else:
            nodes[role.slug] = nodes[role.spec.reports_to].add(label)
    assert root is not None
    console.print(root)
    removed = sorted(slug for slug, a in rows.items() if a.paused_reason == "removed")
    console.print(
        f"{len(roster.roles)} agents" + (f"; removed from the roster (paused): {', '.join(removed)}" if removed else "")
    )


@agents_app.command("check")
def check() -> None:
    """Validate the roster (every AGENTS.md and the org as a whole) without touching the database."""
    from agents.roster import load_roster
    from config.settings import get_settings

    roster = load_roster(get_settings().roles_path)
    typer.echo(f"roster ok: {len(roster.roles)} agents, root {roster.ceo.slug}, from {roster.root}")


@agents_app.command("sync")
def sync() -> None:
    """Make the agents table match the roster now."""
    _roster, report = load_and_sync()
    typer.echo(f"roster synced: {report.summary()}")
    for change in report.retargeted:
        typer.echo(f"  re-targeted {change}")


@agents_app.command("show")
def show(slug: Annotated[str, typer.Argument(metavar="SLUG")], as_json: JsonOption = False) -> None:
    """Show an agent: its front matter, chain of command, spend and recent heartbeats."""
    from sqlalchemy import desc, func, select

    from db.engine import read_only
    from db.models import TERMINAL_STATUSES, Agent, HeartbeatRun, Issue
    from db.reads import month_spend

    roster, _report = load_and_sync()
    if slug not in roster.roles:
        raise NotFoundError(f"no agent named {slug!r} in the roster (see `hq agents`)")
    role = roster.roles[slug]
    with read_only() as session:
        agent = session.scalar(select(Agent).where(Agent.slug == slug))
        assert agent is not None
        beats = [
            {
                "started_at": b.started_at,
                "outcome": b.outcome,
                "worker": b.worker,
                "claims": b.claims,
                "issues": list(b.issues_touched),
                "seconds": (b.finished_at - b.started_at).total_seconds() if b.finished_at else None,
            }
            for b in session.scalars(
                select(HeartbeatRun)
                .where(HeartbeatRun.agent_id == agent.id)
                .order_by(desc(HeartbeatRun.started_at))
                .limit(10)
            )
        ]
        open_issues = session.scalar(
            select(func.count())
            .select_from(Issue)
            .where(Issue.assignee_id == agent.id, Issue.status.not_in(TERMINAL_STATUSES))
        )
        spent = month_spend(session, agent.id)
    data: dict[str, Any] = {
        "front_matter": role.spec.model_dump(mode="json"),
        "source": str(role.path),
        "status": agent.status,
        "paused_reason": agent.paused_reason,
        "chain_of_command": roster.chain_of_command(slug),
        "direct_reports": roster.reports_of(slug),
        "reviewer": roster.reviewer_of(slug),
        "open_issues": open_issues,
        "spent_this_month_usd": spent,
        "recent_heartbeats": beats,
    }
    if as_json:
        from cli.output import print_json

        print_json(data)
        return
    _print_agent(slug, data)


def _print_agent(slug: str, data: dict[str, Any]) -> None:
    import yaml

    from cli.output import console, money, safe, when

    console.print(f"[bold]{safe(slug)}[/bold] — {safe(data['front_matter']['title'])} ({data['status']})")
    console.print(f"  chain of command: {' -> '.join([slug, *data['chain_of_command']]) or '-'}")
    console.print(f"  direct reports:   {', '.join(data['direct_reports']) or '-'}")
    console.print(f"  reviewer:         {data['reviewer'] or '-'}")
    console.print(f"  open issues:      {data['open_issues']}")
    console.print(
        f"  spent this month: {money(data['spent_this_month_usd'])} of "
        f"{money(data['front_matter']['monthly_budget_usd'])}"
    )
    console.print(f"  source:           {safe(data['source'])}\n")
    console.print(safe(yaml.safe_dump(data["front_matter"], sort_keys=False, allow_unicode=True)))
    console.print("[bold]recent heartbeats[/bold]")
    if not data["recent_heartbeats"]:
        console.print("  (none yet)")
    for beat in data["recent_heartbeats"]:
        seconds = f"{beat['seconds']:.2f}s" if beat["seconds"] is not None else "running"
        console.print(
            f"  {when(beat['started_at'])}  {beat['outcome'] or '-':<11} {seconds:>9}  "
            f"claims={beat['claims']} issues={beat['issues']} on {safe(beat['worker'])}"
        )


def _set_status(slug: str, actor: str | None, *, pause: bool) -> None:
    from sqlalchemy import select, update

    from db.engine import transaction
    from db.models import Agent

    load_and_sync()
    who = human(actor)
    with transaction(who, workflow="cli:agents") as session:
        agent = session.scalar(select(Agent).where(Agent.slug == slug).with_for_update())
        if agent is None:
            raise NotFoundError(f"no agent named {slug!r} (see `hq agents`)")
        if not pause and agent.paused_reason == "removed":
            raise StateError(f"{slug} was removed from the roster; add its AGENTS.md back to resume it")
        wanted = "paused" if pause else "active"
        if agent.status == wanted:
            typer.echo(f"{slug} is already {wanted}")
            return
        session.execute(
            update(Agent).where(Agent.id == agent.id).values(status=wanted, paused_reason="human" if pause else None)
        )
        if pause:
            from agents.sync import retarget_open_work

            retarget_open_work(session)
    typer.echo(f"{slug}: {'paused' if pause else 'resumed'}")


@agents_app.command("pause")
def pause(slug: Annotated[str, typer.Argument(metavar="SLUG")], actor: ActorOption = None) -> None:
    """Pause an agent: it stops waking up; its reviews and escalations move up the chain."""
    _set_status(slug, actor, pause=True)


@agents_app.command("resume")
def resume(slug: Annotated[str, typer.Argument(metavar="SLUG")], actor: ActorOption = None) -> None:
    """Resume a paused agent."""
    _set_status(slug, actor, pause=False)
