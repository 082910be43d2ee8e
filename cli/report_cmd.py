"""`hq report [NAME]`: the SQL report views, as a table, CSV or JSON."""

from __future__ import annotations

import csv
import datetime as dt
import sys
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any

import typer

from config.errors import UsageError


class Format(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


def register(app: typer.Typer) -> None:
    app.command("report")(report)


def _plain(value: Any) -> Any:
    if isinstance(value, dt.timedelta):
        return str(value).split(".")[0]
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, list):
        return " -> ".join(map(str, value))
    return value


def _since(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise UsageError(f"--since: {value!r} is not a date (use YYYY-MM-DD or an ISO timestamp)") from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)).isoformat()


def report(
    name: Annotated[
        str | None, typer.Argument(help="A report view, e.g. report_cost_by_agent (or just cost_by_agent).")
    ] = None,
    fmt: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.table,
    since: Annotated[
        str | None,
        typer.Option("--since", metavar="DATE", help="Only activity from this UTC day on (windowed reports)."),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1_000_000, help="At most this many rows.")] = 1000,
) -> None:
    """List the reports, or print one (rows in the report's own order: most urgent or costliest first)."""
    from sqlalchemy import text

    from db.engine import read_only
    from db.sqlfiles import query

    with read_only() as session:
        reports = {row.name: row.description for row in session.execute(query("reports", "list_reports"))}
        if name is None:
            _print_list(reports)
            return
        view = name if name.startswith("report_") else f"report_{name}"
        if view not in reports:
            raise UsageError(f"unknown report {name!r}; one of: {', '.join(sorted(reports))}")
        session.execute(text("SET TRANSACTION READ ONLY"))
        session.execute(text("SELECT set_config('hq.report_since', :since, true)"), {"since": _since(since) or ""})
        result = session.execute(text(f'SELECT * FROM "{view}" LIMIT :limit'), {"limit": limit})
        columns = list(result.keys())
        rows = [[_plain(v) for v in row] for row in result]
    _print(view, columns, rows, fmt)


def _print_list(reports: dict[str, str | None]) -> None:
    from cli.output import console, safe

    for view, description in sorted(reports.items()):
        console.print(f"[bold]{view}[/bold]\n    {safe(description or '')}")


def _print(view: str, columns: list[str], rows: list[list[Any]], fmt: Format) -> None:
    if fmt is Format.json:
        from cli.output import print_json

        print_json([dict(zip(columns, row, strict=False)) for row in rows])
    elif fmt is Format.csv:
        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        writer.writerows(rows)
    else:
        from rich.table import Table

        from cli.output import console, safe

        table = Table(title=view, title_justify="left", header_style="bold")
        for column in columns:
            table.add_column(column)
        for row in rows:
            table.add_row(*(safe("" if v is None else v, limit=60) for v in row))
        console.print(table)
