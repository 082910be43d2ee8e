"""`hq demo`: the company at work on embedded defaults."""

from __future__ import annotations

import typer

SAMPLE_ISSUES = (
    ("Write the launch blog post for the scheduler", "Explain heartbeats and leases to a new user.", 3, False),
    ("Add a health endpoint to the API", "GET /healthz returns 200 and the build sha.", 2, True),
    ("Fix the flaky login test", "The test fails one run in twenty on CI.", 1, False),
    ("Research competitor pricing pages", "Summarise five competitors' pricing tiers.", 5, False),
    ("Prepare the 1.2 release changelog", "Collect merged changes since 1.1.", 4, True),
)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)


def demo() -> None:
    """Start the embedded database, create sample issues and print the board."""
    from cli.issues_cmd import _print_board
    from config.settings import get_settings
    from db.engine import read_only, transaction
    from db.issues import create_issue, validate_draft
    from db.reads import issue_rows

    from cli.agents_cmd import load_and_sync

    load_and_sync()  # an invalid roster stops the demo before anything runs
    settings = get_settings()
    actor = "human:demo"
    with transaction(actor, workflow="demo") as session:
        for index, (title, body, priority, approval) in enumerate(SAMPLE_ISSUES):
            draft = validate_draft(title=title, body=body, priority=priority, needs_approval=approval)
            create_issue(session, draft, actor=actor, default_budget_usd=settings.default_issue_budget_usd,
                         idempotency_key=f"demo:sample:{index}")
    with read_only() as session:
        _print_board(issue_rows(session, status=None, assignee=None, limit=50))
