"""`hq demo`: the whole company at work on embedded defaults and the offline model.

It says which database it uses (DATABASE_URL, shown without its password, or the embedded
server under the data dir). Its output is the story: the board, the commands it runs as the
human, the costs. Logs go to the demo's log (``logs/demo.log`` under the data dir); of them,
the ticker shows only the warnings and errors a person must see, as one line of text each, not
what the story already tells (an issue's budget running out on purpose; a beat skipped because
the agent's previous one still runs).

A goal and a dozen issues chosen so that, between them, they walk every path:
straight to done, review failure and rework, a human approval, a block that
climbs the chain to a human, an exhausted budget, a research sub-issue, a
decomposed feature run in dependency waves, and a failed deploy verification.
Two more work on a real git repository, the sample project (cli/demo_project.py):
one ships by merge, one fails its tests first and ships after rework.
Heartbeats are scaled down to seconds; the demo plays the human, running the
same `hq` commands a person would (and printing them), until every issue settles.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TextIO, cast

import typer

from cli import demo_project
from cli.demo_project import SampleIssue

# Heartbeats in seconds: 15 min -> 1 s, 2 h -> 8 s, the CEO's 8 h -> 32 s.
DEMO_SCALE = 1 / 900


@dataclass(frozen=True)
class Scenario:
    title: str
    body: str
    path: str
    priority: int = 5
    budget: str | None = None
    needs_approval: bool = False
    labels: tuple[str, ...] = ()


SCENARIOS = (
    Scenario(
        "Add a health endpoint to the API",
        "GET /healthz returns 200 with the build sha and checks the database connection.",
        "straight to done",
        priority=2,
    ),
    Scenario(
        "Write the launch article for the scheduler [offline:fail-review]",
        "Explain heartbeats and leases to a new user, with one example.",
        "review fails once, then rework passes",
    ),
    Scenario(
        "Write the newsletter announcing version 1.0",
        "Three short sections: what's new, who it is for, how to start.",
        "waits in pending_approval for a human",
        needs_approval=True,
    ),
    Scenario(
        "Renew the finance vendor invoice contract [offline:block] [offline:escalate]",
        "The vendor wants a three-year term; we need a decision on the commitment.",
        "blocked, escalated up the chain to a human",
    ),
    Scenario(
        "Train the recommendation model for the onboarding page",
        "Offline evaluation first; report the metric against the baseline.",
        "budget exhausted, then raised with hq budget",
        budget="0.01",
    ),
    Scenario(
        "Write an article on how teams adopt agents [offline:research]",
        "People want evidence, not opinions: cite what teams actually report.",
        "asks the researcher, resumes with the answer",
    ),
    Scenario(
        "Write the 1.0 release notes [offline:fail-verify]",
        "Collect the changes since 0.9.",
        "deploy verification fails once, then rework ships",
        priority=3,
    ),
    Scenario(
        "Fix the flaky login test", "The e2e login test fails one run in twenty on CI.", "straight to done", priority=1
    ),
    Scenario("Design the settings page wireframe", "A wireframe for the account page.", "straight to done"),
    Scenario(
        "Analyze the signup funnel",
        "Where do users drop between landing and first issue? Cohort by week.",
        "straight to done",
    ),
    Scenario("Set up the CI container cache", "Cache docker layers in CI to cut build time.", "straight to done"),
    Scenario(
        "Ship the onboarding checklist feature",
        "A new user sees a checklist of first steps in the app; "
        "each step links to its page and ticks itself when done.",
        "decomposed by a playbook; sub-issues run in dependency waves",
        labels=("decompose",),
    ),
)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)


def demo(
    timeout: Annotated[int, typer.Option("--timeout", min=10, help="Give up after this many seconds.")] = 110,
    threads: Annotated[int, typer.Option("--threads", min=1, max=32)] = 6,
) -> None:
    """Run the company on a sample goal until every issue has settled, then print the board and costs."""
    from config.log import configure_logging
    from config.settings import get_settings, use_settings
    from models.config import resolve_models
    from scheduler.company import Company

    base = get_settings()
    # The board is the output; the log file gets info (or HQ_LOG_LEVEL), the ticker what a person must see.
    log_level = base.log_level if "log_level" in base.model_fields_set else "info"
    settings = use_settings(
        base.model_copy(update={"heartbeat_scale": DEMO_SCALE, "sweep_interval_seconds": 1.0, "log_level": log_level})
    )
    from cli.output import console

    log_path = _log_file(settings.data_path)
    with open(log_path, "w", encoding="utf-8") as log_file:
        # JSON lines, so the ticker can tell an expected warning from one a person must see.
        configure_logging(log_level, "json", stream=cast(TextIO, DemoLog(log_file, _to_stderr)), force=True)
        try:
            console.print(banner(settings, offline=resolve_models(settings).offline))
            company = Company(settings, threads=threads)  # refuses to start on an invalid roster
            invocation = hq_invocation(Path(sys.executable), Path.cwd())
            goal_id, project, issues = _seed(settings)
            console.print(f"goal #{goal_id} with {len(issues)} issues; starting {len(company.roster.roles)} agents…\n")
            started = time.monotonic()
            company.start()
            try:
                settled = _watch(issues, timeout, started, invocation)
            finally:
                company.shutdown(wait=True)
            company.notify()  # the demo's own notifications go out with it, not with the next `hq run`
            elapsed = time.monotonic() - started
            _final_report(issues, elapsed, invocation, log_path)
            _print_merges(settings, project)
        finally:  # the demo's log ends with the demo: whatever logs later goes where a command's logs go
            configure_logging("warning", settings.log_format, force=True)
    if not settled:
        from config.errors import HQError

        raise HQError(f"the demo did not settle within {timeout}s; see `hq issues` and `hq approvals`")


def banner(settings: Any, *, offline: bool) -> str:
    """The demo's first line: which database it writes to and which models it calls, as they are."""
    models = "offline model" if offline else "[bold]online models[/bold] (provider keys are set: real calls, real cost)"
    return f"[bold]Heartbeat HQ demo[/bold]: {database_in_use(settings)}, {models}, heartbeats scaled to seconds."


def database_in_use(settings: Any) -> str:
    """The database this process uses, for people: DATABASE_URL without its password, or the embedded one."""
    from cli.output import safe

    if settings.database_url is None:
        from db.embedded import pgdata_dir

        return f"embedded PostgreSQL under {safe(pgdata_dir(settings.data_path))}"
    url = display_url(settings.database_url.get_secret_value())
    return f"PostgreSQL from DATABASE_URL, {safe(url)} (the demo adds a goal and its issues there)"


def display_url(raw: str) -> str:
    """A PostgreSQL URL without any password (in the authority or a ``?password=`` parameter)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(raw)
    except (ArgumentError, ValueError):
        return "(a URL that cannot be shown)"
    user = f"{url.username}@" if url.username else ""
    host = f"[{url.host}]" if url.host and ":" in url.host else (url.host or "")
    port = f":{url.port}" if url.port else ""
    query = "&".join(
        f"{key}={value}"
        for key, values in url.query.items()
        if "password" not in key.lower()
        for value in (values if isinstance(values, tuple) else (values,))
    )
    return f"postgresql://{user}{host}{port}/{url.database or ''}" + (f"?{query}" if query else "")


def _to_stderr(line: str) -> None:
    """One line on the ``sys.stderr`` of the moment: above the live board while rich's Live shows it."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def _log_file(data_path: Path) -> Path:
    from config.datadir import private_data_dir

    logs = private_data_dir(data_path) / "logs"
    logs.mkdir(mode=0o700, exist_ok=True)
    return logs / "demo.log"


# What the story already tells, so the ticker does not repeat it as a log line.
_BEAT_SKIPPED = "maximum number of running instances reached"
"""APScheduler: a beat came due while the agent's previous one still ran (max_instances=1 at work)."""
_SHOWN_LEVELS = ("warning", "error", "critical")
_NOT_SHOWN_FIELDS = ("event", "level", "timestamp", "logger")


def expected(record: dict[str, Any]) -> bool:
    """A warning the demo causes on purpose, or that says nothing a person needs: kept in the log only."""
    event = str(record.get("event", ""))
    if str(record.get("logger", "")).startswith("apscheduler") and _BEAT_SKIPPED in event:
        return True
    # The budget scenario exhausts an issue's budget on purpose: the board shows it blocked (budget),
    # and the demo answers with `hq budget`. A company-wide refusal is not part of the story.
    if event == "llm.budget_refused" and record.get("scope") == "issue":
        return True
    return event == "model.failure" and record.get("action") == "block_for_budget"


def ticker_line(line: str) -> str | None:
    """What the ticker shows of one log line: None, or one line of text (never JSON)."""
    from cli.output import visible

    try:
        record = json.loads(line)
    except ValueError:
        record = None
    if not isinstance(record, dict):
        return f"hq: log: {visible(line)}" if line.strip() else None
    level = str(record.get("level", "")).lower()
    if level not in _SHOWN_LEVELS or expected(record):
        return None
    fields = []
    for key, value in record.items():
        if key in _NOT_SHOWN_FIELDS or value is None:
            continue
        text = str(value).strip()
        if key == "exception":  # a traceback: its last line says what happened; the log has the rest
            text = text.splitlines()[-1] if text else text
        fields.append(f"{key}={text}")
    where = f" ({record['logger']})" if record.get("logger") else ""
    return visible(f"hq: {level}: {record.get('event', '')}{where} {' '.join(fields)}".rstrip()).replace("\n", " ")


class DemoLog:
    """The demo's log stream: every line to its log file; to the ticker (``show``), only ``ticker_line``'s.

    A logger may write a line and its newline in two calls, and beats log from several threads:
    lines are assembled per thread, and written whole under a lock.
    """

    def __init__(self, file: TextIO, show: Callable[[str], None]) -> None:
        self._file = file
        self._show = show
        self._lock = threading.Lock()
        self._pending = threading.local()

    def write(self, text: str) -> int:
        *lines, rest = (getattr(self._pending, "text", "") + text).split("\n")
        self._pending.text = rest
        for line in lines:
            with self._lock:
                self._file.write(line + "\n")
                self._file.flush()
            shown = ticker_line(line)
            if shown is not None:
                self._show(shown)
        return len(text)

    def flush(self) -> None:
        with self._lock:
            self._file.flush()

    def isatty(self) -> bool:
        return False


def hq_invocation(python: Path, cwd: Path) -> list[str]:
    """How a person here runs this same `hq`: ``.venv/bin/hq`` from the checkout, else its absolute path.

    Every command the demo prints uses it, so each can be pasted as shown (no `hq` on PATH needed).
    """
    script = Path(os.path.abspath(python)).with_name("hq")  # not resolved: the venv's python is a symlink
    if not script.exists():
        return [os.path.abspath(python), "-m", "cli.app"]
    try:
        relative = script.relative_to(os.path.abspath(cwd))
    except ValueError:
        return [str(script)]
    return [relative.as_posix() if len(relative.parts) > 1 else f"./{relative}"]


def _seed(settings: Any) -> tuple[int, str, dict[int, Scenario | SampleIssue]]:
    from db.engine import transaction
    from db.models import Goal
    from db.store import create_issue, validate_draft

    actor = "human:demo"
    with transaction(actor, workflow="demo") as session:
        goal = Goal(
            title="Launch Heartbeat HQ 1.0",
            description="Ship 1.0 with docs, a launch post and a working onboarding flow.",
            priority=1,
            created_by=actor,
        )
        session.add(goal)
        session.flush()
        issues: dict[int, Scenario | SampleIssue] = {}
        for scenario in SCENARIOS:
            draft = validate_draft(
                title=scenario.title,
                body=scenario.body,
                priority=scenario.priority,
                budget_usd=scenario.budget,
                needs_approval=scenario.needs_approval,
                labels=list(scenario.labels),
            )
            issue = create_issue(
                session,
                draft,
                actor=actor,
                goal_id=goal.id,
                default_budget_usd=settings.default_issue_budget_usd,
                max_attempts=settings.max_attempts,
            )
            issues[issue.id] = scenario
        project, samples = demo_project.seed(session, settings, actor=actor, goal_id=goal.id)
        return goal.id, project, issues | samples


def _hq(invocation: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run `hq` exactly as a person would, printing the command first (quoted: it can be pasted)."""
    from cli.output import console, safe

    console.print(f"[cyan]$ {safe(shlex.join([*invocation, *args]))}[/cyan]")
    result = subprocess.run([*invocation, *args], capture_output=True, text=True, timeout=60)
    output = (result.stdout + result.stderr).strip()
    if output:
        console.print(f"  {safe(output.splitlines()[-1])}")
    return result


def _rows(issue_ids: list[int]) -> list[dict[str, Any]]:
    from sqlalchemy import select

    from db.engine import read_only
    from db.models import Agent, Issue

    with read_only() as session:
        query = (
            select(
                Issue.id,
                Issue.title,
                Issue.status,
                Issue.blocked_reason,
                Issue.parent_id,
                Agent.slug,
                Issue.spent_usd,
                Issue.budget_usd,
            )
            .outerjoin(Agent, Agent.id == Issue.assignee_id)
            .where((Issue.id.in_(issue_ids)) | (Issue.parent_id.in_(issue_ids)))
            .order_by(Issue.id)
        )
        return [dict(r._mapping) for r in session.execute(query)]


def _act_as_human(
    rows: list[dict[str, Any]], done: set[tuple[int, str]], issues: dict[int, Any], invocation: list[str]
) -> None:
    for row in rows:
        note = getattr(issues.get(row["id"]), "human_note", None) or "Take the one-year term; I approve the spend."
        if row["status"] == "pending_approval" and (row["id"], "approve") not in done:
            done.add((row["id"], "approve"))
            _hq(invocation, "approve", str(row["id"]), "--note", "Looks good, ship it.", "--as", "demo")
        elif row["status"] == "blocked" and row["blocked_reason"] == "budget" and (row["id"], "budget") not in done:
            done.add((row["id"], "budget"))
            _hq(invocation, "budget", str(row["id"]), "--add", "2", "--as", "demo")
        elif row["status"] == "blocked" and row["blocked_reason"] == "human" and (row["id"], "unblock") not in done:
            done.add((row["id"], "unblock"))
            _hq(invocation, "unblock", str(row["id"]), "--note", note, "--as", "demo")


TERMINAL = {"done", "rejected", "cancelled"}


def _board(rows: list[dict[str, Any]], issues: dict[int, Scenario | SampleIssue], title: str) -> Any:
    from rich.table import Table

    from cli.output import money, safe

    board = Table(title=title, header_style="bold", title_justify="left")
    for column in ("id", "status", "owner", "title", "path it takes", "spent"):
        board.add_column(column)
    for row in rows:
        scenario = issues.get(row["id"])
        path = scenario.path if scenario else f"sub-issue of #{row['parent_id']}"
        status = row["status"] + (f" ({row['blocked_reason']})" if row["blocked_reason"] else "")
        board.add_row(
            str(row["id"]),
            status,
            safe(row["slug"] or "-"),
            safe(row["title"], limit=48),
            safe(path),
            money(row["spent_usd"]),
        )
    return board


def _watch(issues: dict[int, Scenario | SampleIssue], timeout: int, started: float, invocation: list[str]) -> bool:
    """Poll the board, play the human, and stop once every issue (and sub-issue) has settled."""
    from contextlib import nullcontext

    from rich.live import Live

    from cli.output import console

    acted: set[tuple[int, str]] = set()
    last_counts = ""
    live = Live(console=console, refresh_per_second=4) if console.is_terminal else None
    with live or nullcontext():
        while time.monotonic() - started < timeout:
            rows = _rows(list(issues))
            _act_as_human(rows, acted, issues, invocation)
            elapsed = time.monotonic() - started
            counts = "  ".join(f"{s}:{n}" for s, n in sorted(Counter(r["status"] for r in rows).items()))
            if live is not None:
                live.update(_board(rows, issues, f"live board, {elapsed:.1f}s — {counts}"))
            elif counts != last_counts:  # not a terminal: one line per change
                console.print(f"{elapsed:5.1f}s  {counts}")
                last_counts = counts
            if rows and all(r["status"] in TERMINAL for r in rows):
                return True
            time.sleep(0.5)
    return False


def _final_report(
    issues: dict[int, Scenario | SampleIssue], elapsed: float, invocation: list[str], log_path: Path
) -> None:
    from rich.table import Table
    from sqlalchemy import func, select

    from cli.output import console, money
    from db.engine import read_only
    from db.models import Agent, LLMCall

    rows = _rows(list(issues))
    console.print(_board(rows, issues, f"the board after {elapsed:.1f}s"))
    ids = [r["id"] for r in rows]
    with read_only() as session:
        by_agent = session.execute(
            select(
                Agent.slug,
                LLMCall.tier,
                func.count(),
                func.sum(LLMCall.input_tokens + LLMCall.output_tokens),
                func.sum(LLMCall.cost_usd),
            )
            .join(Agent, Agent.id == LLMCall.agent_id)
            .where(LLMCall.issue_id.in_(ids))
            .group_by(Agent.slug, LLMCall.tier)
            .order_by(func.sum(LLMCall.cost_usd).desc())
        ).all()
    costs = Table(title="model cost by agent and tier", header_style="bold", title_justify="left")
    for column in ("agent", "tier", "calls", "tokens", "cost"):
        costs.add_column(column, justify="right" if column in ("calls", "tokens", "cost") else "left")
    for slug, tier, calls, tokens, cost in by_agent:
        costs.add_row(slug, tier, str(calls), str(tokens), money(cost))
    total = sum((c[4] for c in by_agent), 0)
    costs.add_row("[bold]total[/bold]", "", str(sum(c[2] for c in by_agent)), "", money(total))
    console.print(costs)
    console.print(explore_hint(invocation, log_path))


def explore_hint(invocation: list[str], log_path: Path) -> str:
    """The closing hint: every command it suggests with the same `hq` the demo ran, and where its log is."""
    from cli.output import safe

    hq = safe(shlex.join(invocation))
    commands = ("issues", "issue show ID", "agents", "approvals", "db status", "db psql")
    return "Explore: " + " · ".join(f"{hq} {command}" for command in commands) + f"\nThe demo's log: {safe(log_path)}"


def _print_merges(settings: Any, project: str) -> None:
    """What the company shipped to the sample project: its base branch, newest first."""
    from cli.output import console, safe
    from projects.repo.repository import RepositoryError

    try:
        lines = demo_project.merged_log(settings, project)
    except RepositoryError as error:
        console.print(f"[yellow]could not read the sample project's history: {safe(error.message)}[/yellow]")
        return
    console.print(f"[bold]{project}[/bold] main, as merged (git log --oneline):")
    for line in lines:
        console.print(f"  {safe(line)}")
