"""`hq issue create|show|diff` and `hq issues`: putting work in and looking at it."""

from __future__ import annotations

import datetime as dt
import sys
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cli.arguments import IssueId, id_list, usd_option
from cli.common import ActorOption, JsonOption, human
from config.errors import UsageError

if TYPE_CHECKING:
    from projects.repo.patch import IssuePatch

issue_app = typer.Typer(help="Create and inspect single issues.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(issue_app, name="issue")
    app.command("issues")(list_issues)


def _read_body(body: str | None, body_file: Path | None) -> str:
    if body is not None and body_file is not None:
        raise UsageError("give --body or --body-file, not both")
    if body_file is None:
        return body or ""
    try:
        raw = sys.stdin.buffer.read() if str(body_file) == "-" else body_file.read_bytes()
    except OSError as error:
        raise UsageError(f"--body-file: cannot read {body_file}: {error.strerror}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"--body-file: {body_file} is not UTF-8 text") from None


@issue_app.command("create")
def create(
    title: Annotated[str, typer.Argument(help="One line saying what should be done.")],
    body: Annotated[str | None, typer.Option("--body", help="Details, acceptance criteria.")] = None,
    body_file: Annotated[
        Path | None, typer.Option("--body-file", help="Read the body from a file ('-': stdin).")
    ] = None,
    priority: Annotated[int, typer.Option("--priority", help="0 (most urgent) to 9.")] = 5,
    assign: Annotated[str | None, typer.Option("--assign", metavar="SLUG", help="Agent to own it.")] = None,
    budget: Annotated[Decimal | None, usd_option("--budget", "Model spend allowed.")] = None,
    needs_approval: Annotated[bool, typer.Option("--needs-approval", help="A human approves before deploy.")] = False,
    depends_on: Annotated[
        list[str] | None, typer.Option("--depends-on", metavar="ID", help="Issue(s) that must finish first.")
    ] = None,
    label: Annotated[
        list[str] | None, typer.Option("--label", help="A label (repeatable); 'decompose' asks for a playbook.")
    ] = None,
    project: Annotated[
        str | None,
        typer.Option(
            "--project",
            metavar="NAME",
            help="The project (git repository) to work in; default HQ_DEFAULT_PROJECT. '' means none.",
        ),
    ] = None,
    no_project: Annotated[
        bool, typer.Option("--no-project", help="No project, even with HQ_DEFAULT_PROJECT set: the document project.")
    ] = False,
    actor: ActorOption = None,
) -> None:
    """Create an issue and print its id.

    Without --project, the issue belongs to HQ_DEFAULT_PROJECT when that is set; --no-project
    (or --project '') makes it an issue of the built-in document project.
    """
    from config.settings import get_settings
    from db.engine import transaction
    from db.store import create_issue, require_agent, validate_draft

    who = human(actor)
    draft = validate_draft(
        title=title,
        body=_read_body(body, body_file),
        priority=priority,
        budget_usd=budget,
        needs_approval=needs_approval,
        depends_on=id_list(depends_on, "--depends-on"),
        labels=label or [],
    )
    settings = get_settings()
    if no_project and project:
        raise UsageError("give --project or --no-project, not both")
    source = "--project"
    if project is None and not no_project and settings.default_project:
        project, source = settings.default_project, "HQ_DEFAULT_PROJECT"
    with transaction(who) as session:
        if assign:
            from agents.sync import ensure_roster

            ensure_roster(session, settings.roles_path)
        assignee = require_agent(session, assign) if assign else None
        project_id = _project_id(session, project, source) if project and not no_project else None
        issue = create_issue(
            session,
            draft,
            actor=who,
            assignee=assignee,
            default_budget_usd=settings.default_issue_budget_usd,
            max_attempts=settings.max_attempts,
            project_id=project_id,
        )
        issue_id = issue.id
    typer.echo(issue_id)


def _project_id(session: Any, name: str, source: str) -> int:
    """The live project's id, held against removal until the issue is in (NotFoundError naming where it came from)."""
    from config.errors import NotFoundError
    from db.store import project_by_name

    try:
        return project_by_name(session, name, for_new_issue=True).id
    except NotFoundError:
        raise NotFoundError(f"{source}: no project named {name!r} (hq project list)") from None


def list_issues(
    status: Annotated[str | None, typer.Option("--status", help="Only issues in this status.")] = None,
    assignee: Annotated[str | None, typer.Option("--assignee", metavar="SLUG", help="Only this agent's.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=100_000, help="At most this many, newest first.")] = 30,
    as_json: JsonOption = False,
) -> None:
    """List issues (newest first)."""
    from config.vocabulary import STATUSES
    from db.board import issue_rows
    from db.engine import reading

    if status is not None and status not in STATUSES:
        raise UsageError(f"--status: unknown status {status!r} (one of: {', '.join(STATUSES)})")
    with reading() as conn:
        rows = issue_rows(conn, status=status, assignee=assignee, limit=limit)
    if as_json:
        from cli.output import print_json

        print_json(rows)
        return
    _print_board(rows, limit)


def doing_now(doing: str, since: dt.datetime | None, worker: str | None) -> str:
    """ "command test for 12m 5s on host:4242": what a running issue's run does, how long, where."""
    seconds = int((dt.datetime.now(dt.UTC) - since).total_seconds()) if since is not None else 0
    took = f"{seconds // 60}m {seconds % 60}s" if seconds >= 60 else f"{max(seconds, 0)}s"
    return f"{doing} for {took}" + (f" on {worker}" if worker else "")


def _print_board(rows: list[dict[str, Any]], limit: int) -> None:
    from rich.table import Table

    from cli.output import console, money, safe

    table = Table(show_lines=False, header_style="bold")
    for column, justify in (
        ("id", "right"),
        ("status", "left"),
        ("p", "right"),
        ("title", "left"),
        ("assignee", "left"),
        ("spent / budget", "right"),
        ("doing now", "left"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for row in rows:
        table.add_row(
            str(row["id"]),
            row["status"],
            str(row["priority"]),
            safe(row["title"], limit=60),
            safe(row["assignee"] or "-"),
            f"{money(row['spent_usd'])} / {money(row['budget_usd'])}",
            safe(doing_now(row["doing"], row["doing_since"], row["worker"]), limit=60) if row["doing"] else "",
        )
    console.print(table)
    more = "; there may be more (--limit N)" if len(rows) == limit else ""
    console.print(f"{len(rows)} issue(s), newest first{more}")


@issue_app.command("show")
def show(
    issue_id: IssueId,
    tree: Annotated[bool, typer.Option("--tree", help="Show the decomposition into sub-issues.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Show one issue: fields, dependencies, the event timeline, comments and cost so far."""
    from db.engine import read_only
    from db.reads import issue_detail, issue_tree

    with read_only() as session:
        detail = issue_detail(session, issue_id)
        if tree:
            detail["tree"] = issue_tree(session, issue_id)
    if as_json:
        from cli.output import print_json

        print_json(detail)
        return
    _print_detail(detail)


def _print_detail(detail: dict[str, Any]) -> None:
    from rich.table import Table

    from cli.output import console, money, safe, when

    issue = detail["issue"]
    console.print(f"[bold]#{issue['id']} {safe(issue['title'])}[/bold]")
    fields = [
        ("status", issue["status"] + (f" ({issue['blocked_reason']})" if issue["blocked_reason"] else "")),
        ("priority", issue["priority"]),
        ("assignee", issue["assignee"] or "-"),
        ("reviewer", issue["reviewer"] or "-"),
        ("escalated to", issue["escalated_to"] or ("human" if issue["blocked_reason"] == "human" else "-")),
        ("needs approval", "yes" if issue["needs_approval"] else "no"),
        (
            "budget",
            f"{money(issue['spent_usd'])} spent, {money(issue['reserved_usd'])} reserved, "
            f"of {money(issue['budget_usd'])}",
        ),
        ("cost so far", money(detail["cost_usd"])),
        ("attempts", f"{issue['attempts']} of {issue['max_attempts']}"),
        ("review rounds", issue["review_rounds"]),
        ("quality score", issue["quality_score"] if issue["quality_score"] is not None else "-"),
        ("parent", issue["parent_id"] or "-"),
        ("created", f"{when(issue['created_at'])} by {issue['created_by']}"),
    ]
    project = detail.get("project")
    if project is not None:
        fields.append(("project", f"{project['name']} (branch {project['branch']}, into {project['base_branch']})"))
        if issue.get("merged_sha"):
            fields.append(("merged", issue["merged_sha"]))
    working = detail.get("working")
    if working is not None:
        fields.append(("doing now", doing_now(working["doing"], working["since"], working["worker"])))
    for name, value in fields:
        console.print(f"  {name:>15}: {safe(value)}")
    if issue["body"]:
        console.print()
        console.print(safe(issue["body"]))
    if detail["dependencies"]:
        console.print("\n[bold]depends on[/bold]")
        for dep in detail["dependencies"]:
            console.print(f"  #{dep['id']} {dep['status']:<16} {safe(dep['title'], limit=70)}")
    if project is not None:
        _print_code(detail)
    timeline = Table(title="timeline", title_justify="left", header_style="bold")
    for column in ("when", "change", "actor", "workflow", "note"):
        timeline.add_column(column)
    for item in detail["timeline"]:
        timeline.add_row(
            when(item["at"]),
            safe(item["change"]),
            safe(item["actor"]),
            safe(item["workflow"] or ""),
            safe(item["note"] or "", limit=100),
        )
    console.print(timeline)
    if detail.get("tree"):
        console.print("\n[bold]decomposition[/bold]")
        for node in detail["tree"]:
            indent = "  " * node["depth"]
            console.print(
                f"  {indent}#{node['id']} {node['status']:<16} {money(node['cost_usd'])}  "
                f"{safe(node['title'], limit=60)}"
            )


@issue_app.command("diff")
def diff(
    issue_id: IssueId,
    stat: Annotated[bool, typer.Option("--stat", help="Only the diffstat: which files changed, how much.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Print a git project issue's patch, read from its commits (never a worktree).

    A done issue's patch is its merge into the base branch against the merge's first parent; any other
    issue's is its branch head as recorded (the reviewed head once it passed review, else the last
    submitted one) against its merge base with the base branch. Document issues have no patch.
    """
    from config.errors import StateError
    from config.settings import get_settings
    from db.engine import read_only
    from db.reads import issue_evidence
    from db.store import get_issue, get_project
    from projects.repo.patch import issue_patch, shown_head

    with read_only() as session:
        issue = get_issue(session, issue_id)
        if issue.project_id is None:
            raise UsageError(
                f"issue {issue_id} is a document issue (no git project): it has no patch; "
                "its files are its artifacts (hq issue show)"
            )
        project = get_project(session, issue.project_id)
        recorded = issue_evidence(session, issue_id, issue.project_id)["commit"]
    merged = issue.merged_sha if issue.status == "done" else None
    head = shown_head(issue.status, reviewed_sha=issue.reviewed_sha, recorded_sha=recorded and recorded["sha"])
    if merged is None and head is None:
        raise StateError(f"issue {issue_id} has no commit recorded yet ({issue.status}): nothing to diff")
    patch = issue_patch(get_settings(), project, head=head, merged=merged, stat_only=stat)
    if not patch.fetched:
        from cli.output import warn

        warn(f"project {project.name}: the remote could not be reached; showing the clone as last fetched")
    if as_json:
        from cli.output import print_json

        print_json(
            {
                "issue_id": issue_id,
                "status": issue.status,
                "project": project.name,
                "base_branch": project.base_branch,
                "branch": f"hq/issue-{issue_id}",
                "base": patch.base,
                "head": patch.head,
                "merged": patch.merged,
                "stat": patch.stat,
                "patch": patch.text,
                "truncated": patch.truncated,
            }
        )
        return
    _print_patch(issue_id, issue.status, project.base_branch, patch)


def _print_patch(issue_id: int, status: str, base_branch: str, patch: IssuePatch) -> None:
    """Plain lines (a pipe to ``git apply`` reads the patch after them), every control character made visible."""
    from cli.output import visible

    if patch.merged:
        what = f"merge {patch.head[:12]} into {base_branch} against its first parent {patch.base[:12]}"
    else:
        what = f"hq/issue-{issue_id} at {patch.head[:12]} against its merge base {patch.base[:12]} with {base_branch}"
    out = [f"issue #{issue_id} ({status}): {what}\n"]
    if not patch.stat:
        out.append("no changes\n")
    elif patch.text is None:
        out.append(patch.stat + "\n")
    else:
        out.append(patch.text)
        if patch.truncated:
            out.append(f"… (patch truncated; whole: git diff {patch.base} {patch.head} in the project's clone)\n")
    sys.stdout.write(visible("".join(out)))


FAILED_OUTPUT_LINES = 8  # of a failing check's output tail, in `hq issue show`


def _print_code(detail: dict[str, Any]) -> None:
    """A project issue's last recorded commit (its diff stat) and the latest checks, a failing one's output tail."""
    from cli.output import console, safe, when

    commit = detail.get("commit")
    console.print("\n[bold]code[/bold]")
    if commit is None:
        console.print("  no commit recorded yet")
    else:
        console.print(
            f"  commit {safe(commit['sha'])} on {safe(commit['branch'])}, recorded {when(commit['recorded_at'])}"
        )
        for line in (commit["diff_stat"] or "no changes").splitlines():
            console.print(f"  {safe(line)}")
    checks = detail.get("checks") or []
    if not checks:
        console.print("  no checks run yet")
        return
    console.print(f"\n[bold]checks at {safe(checks[-1]['commit_sha'][:12])}[/bold]")
    for check in checks:
        verdict = "✓ ok" if check["ok"] else f"✗ exit {check['exit_code']}"
        console.print(
            f"  {check['stage']:<7} {safe(check['command']):<12} {verdict:<10} "
            f"{check['duration_ms'] / 1000:.1f} s  sandbox {check['sandbox']}  {check['commit_sha'][:12]}"
        )
        if not check["ok"]:
            lines = [line for line in check["output_tail"].splitlines() if line.strip()][-FAILED_OUTPUT_LINES:]
            for line in lines:
                console.print(f"      | {safe(line, limit=160)}")
