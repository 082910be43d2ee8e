"""`hq config check`: validate everything the company needs, print what is in effect."""

from __future__ import annotations

from typing import Any

import typer

config_app = typer.Typer(help="Configuration.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(config_app, name="config")


def effective_settings() -> dict[str, Any]:
    """Every setting with its value; secrets masked so the output can be pasted anywhere."""
    from pydantic import SecretStr

    from config.secrets import mask
    from config.settings import get_settings

    settings = get_settings()
    values: dict[str, Any] = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            value = mask(value.get_secret_value()) if name != "database_url" else "(set, hidden)"
        values[name] = value
    values["database"] = "external (DATABASE_URL)" if settings.database_url else f"embedded in {settings.data_path}"
    values["roles_path"] = settings.roles_path
    values["models_path"] = settings.models_path
    values["playbooks_path"] = settings.playbooks_path
    return values


@config_app.command("check")
def check() -> None:
    """Validate the settings and print the effective values (secrets masked)."""
    from cli.output import console, safe

    from agents.roster import load_roster
    from config.settings import get_settings

    for name, value in effective_settings().items():
        console.print(f"{name:>28} = {safe(value)}")
    console.print("settings: ok")
    from agents.llm.config import resolve_models

    roster = load_roster(get_settings().roles_path)
    console.print(f"roster: ok ({len(roster.roles)} agents)")
    from agents.playbooks import load_playbooks

    playbooks = load_playbooks(get_settings().playbooks_path, set(roster.roles))
    console.print(f"playbooks: ok ({len(playbooks.playbooks)})")
    model_map = resolve_models(get_settings())
    console.print(f"models: ok ({'offline model' if model_map.offline else 'online providers'}, "
                  f"{sum(len(d) for d in model_map.tiers.values())} deployments)")
