"""`hq models`: the effective tier → deployment map, keys masked, with recent health."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from cli.common import JsonOption


def register(app: typer.Typer) -> None:
    app.command("models")(models)


def models(
    hours: Annotated[int, typer.Option("--hours", min=1, max=24 * 90, help="Health window.")] = 24,
    as_json: JsonOption = False,
) -> None:
    """Show which model serves each tier, in fallback order, and how each deployment has behaved."""
    from config.secrets import mask
    from config.settings import get_settings
    from db.engine import read_only
    from db.sqlfiles import query
    from models.config import resolve_models

    model_map = resolve_models(get_settings())
    with read_only() as session:
        health = {
            row.deployment: dict(row._mapping)
            for row in session.execute(query("models", "deployment_health"), {"hours": hours})
        }
    rows: list[dict[str, Any]] = []
    for tier, deployments in model_map.tiers.items():
        for deployment in deployments:
            seen = health.get(deployment.id, {})
            rows.append(
                {
                    "tier": tier,
                    "order": deployment.order,
                    "deployment": deployment.id,
                    "model": deployment.model,
                    "api_base": deployment.api_base,
                    "api_key": mask(deployment.api_key) if deployment.api_key else None,
                    "usd_per_mtok_in": float(deployment.input_price * 1_000_000),
                    "usd_per_mtok_out": float(deployment.output_price * 1_000_000),
                    "price_source": deployment.price_source,
                    "calls": seen.get("calls", 0),
                    "errors": seen.get("errors", 0),
                    "p50_ms": seen.get("p50_ms"),
                    "last_error": seen.get("last_error"),
                }
            )
    fallbacks = {tier: list(targets) for tier, targets in model_map.router.tier_fallbacks.items()}
    if as_json:
        from cli.output import print_json

        print_json(
            {
                "offline": model_map.offline,
                "deployments": rows,
                "tier_fallbacks": fallbacks,
                "source": str(model_map.source),
            }
        )
        return
    from rich.table import Table

    from cli.output import console, safe

    table = Table(
        header_style="bold",
        title=f"models ({'offline' if model_map.offline else 'online'}) from {safe(model_map.source)}",
    )
    for column in ("tier", "#", "model", "key", "$/Mtok in/out", f"calls {hours}h", "errors", "p50 ms", "last error"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["tier"],
            str(row["order"]),
            safe(row["model"]),
            safe(row["api_key"] or "-"),
            f"{row['usd_per_mtok_in']:g} / {row['usd_per_mtok_out']:g}",
            str(row["calls"]),
            str(row["errors"]),
            str(row["p50_ms"] or "-"),
            safe(row["last_error"] or "", limit=40),
        )
    console.print(table)
    console.print("tier fallbacks: " + ", ".join(f"{k} -> {' -> '.join(v)}" for k, v in fallbacks.items()))
