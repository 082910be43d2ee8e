"""`hq run`: bring the company to life in this process (any number of processes may share a database)."""

from __future__ import annotations

import signal
import threading
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    app.command("run")(run)


def run(
    once: Annotated[
        bool, typer.Option("--once", help="Every agent's beat once, in chain-of-command order, then exit.")
    ] = False,
    threads: Annotated[
        int,
        typer.Option(
            "--threads", min=1, max=64, help="Beats running at the same time; system jobs have threads of their own."
        ),
    ] = 8,
    heartbeat_scale: Annotated[
        float | None,
        typer.Option("--heartbeat-scale", min=0.00001, help="Multiply every heartbeat (HQ_HEARTBEAT_SCALE)."),
    ] = None,
) -> None:
    """Run the agents on their heartbeats until SIGINT/SIGTERM; its logs (HQ_LOG_LEVEL, info) are its output.

    With --once: one round and a summary line. Like every other command it logs only when asked
    (HQ_LOG_LEVEL, --debug), and with no bot configured it prints the notifications it delivers as text.
    """
    from config.log import configure_logging
    from config.settings import get_settings, use_settings
    from scheduler.company import Company

    settings = get_settings()
    if not once:  # a daemon's logs are its output; one round is a command: its logs only when asked, as for all
        configure_logging(settings.log_level, settings.log_format, force=True)
    if heartbeat_scale is not None:
        settings = use_settings(settings.model_copy(update={"heartbeat_scale": heartbeat_scale}))
    company = Company(settings, threads=threads)
    if once:
        company.on_notification = _show_notification
        results = company.run_once()
        worked = [r for r in results if r.outcome not in ("idle", "skipped")]
        typer.echo(
            f"{len(results)} heartbeats, {len(worked)} did work, "
            f"{sum(1 for r in results if r.outcome == 'error')} failed"
        )
        return
    finished = threading.Event()

    def stop(signum: int, _frame: object) -> None:
        finished.set()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    company.start()
    finished.wait()
    company.shutdown(wait=True)


def _show_notification(row_id: int, event: str, text: str) -> None:
    """A notification delivered to this console (no bot configured): read as text, not as a log line."""
    from cli.output import visible

    first, *rest = visible(text).splitlines() or [""]
    typer.echo(f"notification {row_id} ({event}): {first}")
    for line in rest:
        typer.echo(f"    {line}")
