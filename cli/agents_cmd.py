"""`hq agents`: the org chart, one agent's details, pausing and resuming, roster checks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from cli.common import ActorOption, JsonOption, human
from config.errors import NotFoundError, StateError

if TYPE_CHECKING:  # the CLI imports the ORM and the roster inside the commands, to start fast
    from agents.roster import Roster
    from agents.sync import SyncReport
    from db.models import Agent

agents_app = typer.Typer(help="The company's agents (roles from AGENTS.md files).", invoke_without_command=True)


def register(app: typer.Typer) -> None:
    app.add_typer(agents_app, name="agents")


UNSYNCED = "unsynced"  # the status shown for a role whose AGENTS.md the database has not seen yet


def load_and_sync() -> tuple[Roster, SyncReport]:
    """Validate the roster and make the agents table match it (one transaction): `hq agents sync` only."""
    from agents.roster import load_roster
    from agents.sync import ACTOR, sync_roster
    from config.settings import get_settings
    from db.engine import transaction

    roster = load_roster(get_settings().roles_path)
    with transaction(ACTOR, workflow="roster-sync") as session:
        report = sync_roster(session, roster)
    return roster, report


def load_and_read() -> tuple[Roster, dict[str, Agent]]:
    """Validate the roster and read the agents table as it is.

    Listing must never write: a sync re-targets open work, and a command someone
    runs to look would then contend with claims. What the files say and the table
    does not yet know is reported (`drift`), and applied by `hq agents sync` or `hq run`.
    """
    from sqlalchemy import select

    from agents.roster import load_roster
    from config.settings import get_settings
    from db.engine import read_only
    from db.models import Agent

    roster = load_roster(get_settings().roles_path)
    with read_only() as session:
        rows = {a.slug: a for a in session.scalars(select(Agent))}
    return roster, rows


def drift(roster: Roster, rows: dict[str, Agent]) -> str | None:
    """How the roster files differ from the agents table, as a line a person can act on; None if they agree."""
    if not rows:
        return "the database has no agents yet: run `hq agents sync` (or `hq run`) to load the roster"
    new = [slug for slug in roster.roles if slug not in rows]
    changed = [
        slug
        for slug, role in roster.roles.items()
        if slug in rows and (rows[slug].definition_sha256 != role.sha256 or rows[slug].paused_reason == "removed")
    ]
    removed = [slug for slug, a in rows.items() if slug not in roster.roles and a.paused_reason != "removed"]
    counts = [f"{len(v)} {k}" for k, v in (("new", new), ("changed", changed), ("removed", removed)) if v]
    if not counts:
        return None
    return f"the roster differs from the database ({', '.join(counts)}): run `hq agents sync` to apply it"


@agents_app.callback()
def tree(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Print the org chart: title, heartbeat and status of every agent."""
    if ctx.invoked_subcommand is not None:
        return
    from rich.tree import Tree

    from cli.output import console, print_json, safe

    roster, rows = load_and_read()
    if as_json:
        print_json(
            [
                {
                    "slug": role.slug,
                    "title": role.spec.title,
                    "reports_to": role.spec.reports_to,
                    "heartbeat": str(role.spec.heartbeat),
                    "status": rows[role.slug].status if role.slug in rows else UNSYNCED,
                    "depth": depth,
                }
                for depth, role in roster.walk()
            ]
        )
        return
    nodes: dict[str, Tree] = {}
    root: Tree | None = None
    for _depth, role in roster.walk():
        state = rows[role.slug].status if role.slug in rows else UNSYNCED
        status = "[green]active[/green]" if state == "active" else f"[yellow]{state}[/yellow]"
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
    pending = drift(roster, rows)
    if pending is not None:
        console.print(f"[yellow]{safe(pending)}[/yellow]")


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
    from decimal import Decimal

    from sqlalchemy import desc, func, select

    from config.vocabulary import TERMINAL_STATUSES
    from db.engine import read_only
    from db.models import HeartbeatRun, Issue
    from db.reads import month_spend

    roster, rows = load_and_read()
    if slug not in roster.roles:
        raise NotFoundError(f"no agent named {slug!r} in the roster (see `hq agents`)")
    role = roster.roles[slug]
    agent = rows.get(slug)
    beats: list[dict[str, Any]] = []
    open_issues = 0
    spent = Decimal(0)
    if agent is not None:  # a role the database has not seen yet has no history: its file is the whole story
        with read_only() as session:
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
            open_issues = (
                session.scalar(
                    select(func.count())
                    .select_from(Issue)
                    .where(Issue.assignee_id == agent.id, Issue.status.not_in(TERMINAL_STATUSES))
                )
                or 0
            )
            spent = month_spend(session, agent.id)
    data: dict[str, Any] = {
        "front_matter": role.spec.model_dump(mode="json"),
        "source": str(role.path),
        "status": agent.status if agent is not None else UNSYNCED,
        "paused_reason": agent.paused_reason if agent is not None else None,
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
    pending = drift(roster, rows)
    if pending is not None:
        from cli.output import console, safe

        console.print(f"\n[yellow]{safe(pending)}[/yellow]")


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

    from agents.sync import ensure_roster
    from config.settings import get_settings
    from db.engine import transaction
    from db.models import Agent

    who = human(actor)
    with transaction(who, workflow="cli:agents") as session:
        # Only a database that has never seen the roster is loaded here; applying edits is `hq agents sync`'s job.
        ensure_roster(session, get_settings().roles_path)
        agent = session.scalar(select(Agent).where(Agent.slug == slug).with_for_update())
        if agent is None:
            raise NotFoundError(f"no agent named {slug!r} (see `hq agents`; a new role needs `hq agents sync` first)")
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
