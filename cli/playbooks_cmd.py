"""`hq playbooks`: the decomposition patterns managers use for large requests."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from cli.common import JsonOption

if TYPE_CHECKING:  # loaded only when the command runs
    from agents.playbooks import PlaybookSet

playbooks_app = typer.Typer(help="Decomposition playbooks (agents/playbooks/*.yaml).", invoke_without_command=True)


def register(app: typer.Typer) -> None:
    app.add_typer(playbooks_app, name="playbooks")


def _load() -> PlaybookSet:
    from agents.playbooks import load_playbooks
    from agents.roster import load_roster
    from config.settings import get_settings

    settings = get_settings()
    roster = load_roster(settings.roles_path)
    return load_playbooks(settings.playbooks_path, set(roster.roles))


@playbooks_app.callback()
def list_playbooks(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """List the playbooks with their modules in dependency waves."""
    if ctx.invoked_subcommand is not None:
        return
    playbooks = _load()
    if as_json:
        from cli.output import print_json

        print_json([{**p.model_dump(), "waves": p.waves()} for p in playbooks.playbooks.values()])
        return
    from cli.output import console, safe

    for playbook in playbooks.playbooks.values():
        console.print(f"[bold]{playbook.name}[/bold] — {safe(playbook.description)}")
        modules = {m.id: m for m in playbook.modules}
        for number, wave in enumerate(playbook.waves(), start=1):
            parts = ", ".join(f"{m} ({modules[m].role})" for m in wave)
            console.print(f"    wave {number}: {safe(parts)}")
        console.print(f"    keywords: {safe(', '.join(playbook.classification_keywords))}")


@playbooks_app.command("check")
def check() -> None:
    """Validate every playbook: schema, unique module ids, known dependencies, no cycles, roles in the roster."""
    playbooks = _load()
    typer.echo(f"playbooks ok: {len(playbooks.playbooks)} ({', '.join(sorted(playbooks.playbooks))})")
