"""Human decisions: `hq approve|reject|revise|unblock|cancel|budget` and `hq approvals`.

Each is one transaction that only writes rows; the status trigger's NOTIFY wakes
the agent that acts next.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated

import typer

from cli.arguments import IssueId, usd_option
from cli.common import ActorOption, JsonOption, human

if TYPE_CHECKING:  # the store loads when a decision runs, not when the CLI starts
    from db.store import Decision


def register(app: typer.Typer) -> None:
    for command in (approve, reject, revise, unblock, cancel, budget, approvals):
        app.command(command.__name__)(command)


def _decide(action: Callable[..., Decision], issue_id: int, actor: str | None, **kwargs: object) -> None:
    from sqlalchemy import text

    from db.engine import connection

    who = human(actor)
    with connection(who, workflow=f"cli:{action.__name__}") as conn:
        # A worker may hold the row for a moment; a person should not wait long to hear so.
        conn.execute(text("SELECT set_config('lock_timeout', '5000ms', true)"))
        decision = action(conn, issue_id, actor=who, **kwargs)
    extra = f"; {decision.approvals_closed} approval(s) closed" if decision.approvals_closed else ""
    typer.echo(f"issue {decision.issue_id}: {decision.from_status} -> {decision.to_status}{extra}")


def approve(
    issue_id: IssueId, note: Annotated[str | None, typer.Option("--note")] = None, actor: ActorOption = None
) -> None:
    """Approve an issue waiting in pending_approval."""
    from db.store import approvals as ops

    _decide(ops.approve, issue_id, actor, note=note)


def reject(
    issue_id: IssueId,
    reason: Annotated[str, typer.Option("--reason", help="Why (required).")],
    actor: ActorOption = None,
) -> None:
    """Reject an issue waiting in pending_approval (terminal)."""
    from db.store import approvals as ops

    _decide(ops.reject, issue_id, actor, reason=reason)


def revise(
    issue_id: IssueId,
    note: Annotated[str, typer.Option("--note", help="What to change (required).")],
    actor: ActorOption = None,
) -> None:
    """Send an issue waiting for approval back to todo with a note."""
    from db.store import approvals as ops

    _decide(ops.revise, issue_id, actor, note=note)


def unblock(
    issue_id: IssueId,
    note: Annotated[str, typer.Option("--note", help="Guidance (required).")],
    assign: Annotated[str | None, typer.Option("--assign", metavar="SLUG")] = None,
    actor: ActorOption = None,
) -> None:
    """Unblock an issue with guidance, optionally giving it to another agent."""
    from db.store import approvals as ops

    if assign is None:
        _decide(ops.unblock, issue_id, actor, note=note)
        return
    from agents.sync import ensure_roster
    from config.settings import get_settings
    from db.engine import transaction
    from db.store import require_agent

    with transaction(human(actor), workflow="cli:unblock") as session:
        ensure_roster(session, get_settings().roles_path)
        assignee_id = require_agent(session, assign).id
    _decide(ops.unblock, issue_id, actor, note=note, assignee_id=assignee_id)


def cancel(
    issue_id: IssueId, reason: Annotated[str | None, typer.Option("--reason")] = None, actor: ActorOption = None
) -> None:
    """Cancel an issue that has not finished."""
    from db.store import approvals as ops

    _decide(ops.cancel, issue_id, actor, reason=reason)


def budget(
    issue_id: IssueId, add: Annotated[Decimal, usd_option("--add", "Amount to add.")], actor: ActorOption = None
) -> None:
    """Raise an issue's budget; resolves its open budget approval."""
    from db.store import approvals as ops

    _decide(ops.add_budget, issue_id, actor, amount_usd=add)


def approvals(
    all_: Annotated[bool, typer.Option("--all", help="Include decided approvals.")] = False,
    as_json: JsonOption = False,
) -> None:
    """List pending approvals with their deadlines (oldest deadline first)."""
    from sqlalchemy import select

    from db.engine import read_only
    from db.models import Approval, Issue
    from db.reads import review_summary

    with read_only() as session:
        statement = (
            select(
                Approval.id,
                Approval.issue_id,
                Issue.title,
                Issue.status.label("issue_status"),
                Approval.kind,
                Approval.status,
                Approval.reason,
                Approval.requested_by,
                Approval.amount_usd,
                Approval.deadline,
                Approval.created_at,
                Approval.decided_by,
                Issue.project_id,
            )
            .join(Issue, Issue.id == Approval.issue_id)
            .order_by(Approval.deadline, Approval.id)
        )
        if not all_:
            statement = statement.where(Approval.status == "pending")
        rows = [dict(r._mapping) for r in session.execute(statement)]
        for row in rows:  # a project issue: what the change is and whether its checks passed
            row.update(review_summary(session, row["issue_id"], row["project_id"]))
    if as_json:
        from cli.output import print_json

        print_json(rows)
        return
    from rich.table import Table

    from cli.output import console, safe, when

    table = Table(header_style="bold")
    columns = ["id", "issue", "kind", "status", "deadline", "requested by", "reason"]
    with_code = any(row["project"] is not None for row in rows)
    if with_code:
        columns.append("changes / checks")
    for column in (*columns, "decide with"):
        table.add_column(column)
    for row in rows:
        hint = {
            "work": f"hq approve {row['issue_id']}",
            "budget": f"hq budget {row['issue_id']} --add USD",
            "escalation": f"hq unblock {row['issue_id']} --note ...",
        }[row["kind"]]
        cells = [
            str(row["id"]),
            f"#{row['issue_id']} {safe(row['title'], limit=40)}",
            row["kind"],
            row["status"],
            when(row["deadline"]),
            safe(row["requested_by"]),
            safe(row["reason"], limit=50),
        ]
        if with_code:
            cells.append(_code_cell(row))
        table.add_row(*cells, hint if row["status"] == "pending" else "")
    console.print(table)
    console.print(f"{len(rows)} approval(s)")


def _code_cell(row: dict[str, object]) -> str:
    """``calc: 2 files changed, 10 insertions(+); test ✓, lint ✗ exit 1`` for a project issue; '' otherwise."""
    from cli.output import safe

    if row["project"] is None:
        return ""
    checks = row["checks"] if isinstance(row["checks"], list) else []
    verdicts = ", ".join(
        f"{check['command']} ✓" if check["ok"] else f"{check['command']} ✗ exit {check['exit_code']}"
        for check in checks
    )
    parts = [str(row["changes"] or "no commit yet"), verdicts or "no checks yet"]
    return safe(f"{row['project']}: {'; '.join(parts)}")
