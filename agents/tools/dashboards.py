"""Toolset `dashboards`: read the company's SQL report views, and nothing else."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.orm import Session

from agents.tools.context import ToolContext
from agents.tools.registry import tool
from config.errors import ToolError

MAX_ROWS = 50


class ReportArgs(BaseModel):
    name: Annotated[str, Field(pattern=r"^report_[a-z_]{1,60}$", description="A report view, e.g. report_issue_board.")]


def report_names(session: Session) -> list[str]:
    return list(
        session.scalars(
            text(
                "SELECT viewname FROM pg_views"
                " WHERE schemaname = current_schema() AND viewname LIKE 'report\\_%' ORDER BY 1"
            )
        )
    )


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, (dt.datetime, dt.date, dt.timedelta)):
        return str(value)
    return value


@tool("dashboards", ReportArgs)
def run_report(ctx: ToolContext, session: Session, args: ReportArgs) -> dict[str, Any]:
    """Read one of the company's report views (read-only; at most 50 rows)."""
    known = report_names(session)
    if args.name not in known:
        raise ToolError(f"unknown report {args.name!r}; available: {', '.join(known) or 'none'}")
    # A separate read-only transaction: a report can never write, whatever the view does.
    with ctx.engine.connect() as connection:
        connection.execute(text("SET TRANSACTION READ ONLY"))
        result = connection.execute(text(f'SELECT * FROM "{args.name}" LIMIT {MAX_ROWS}'))
        rows = [{k: _plain(v) for k, v in row._mapping.items()} for row in result]
        connection.rollback()
    return {"report": args.name, "rows": rows, "truncated": len(rows) == MAX_ROWS}
