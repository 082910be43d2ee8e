"""The report views return exactly what a known scenario implies; hq_reporter can read them and nothing else."""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal

import psycopg
import pytest

from config.urls import libpq_url
from tests.support.cli import run_hq
from tests.support.rows import force_status, one

D = Decimal


@pytest.fixture()
def scenario(db_url: str, raw: psycopg.Connection) -> dict[str, int]:
    """A feature (A) with a sub-issue (B) and a grand-child (C); a blocked bug (D); a post in review (E)."""
    assert run_hq("agents", "sync").exit_code == 0
    agent: dict[str, int] = dict(raw.execute("SELECT slug, id FROM agents").fetchall())

    def issue(title: str, owner: str, created: str, parent: int | None = None) -> int:
        return one(
            raw.execute(
                "INSERT INTO issues (title, status, created_by, assignee_id, parent_id, created_at) "
                "VALUES (%s, 'todo', 'human:t', %s, %s, %s) RETURNING id",
                (title, agent[owner], parent, created),
            ).fetchone()
        )[0]

    a = issue("Feature A", "backend-engineer", "2026-11-20 10:00Z")
    b = issue("Part B", "frontend-engineer", "2026-11-20 10:30Z", a)
    c = issue("Piece C", "frontend-engineer", "2026-11-21 09:00Z", b)
    d = issue("Bug D", "qa-engineer", "2026-11-21 09:00Z")
    e = issue("Post E", "content-writer", "2026-11-21 09:00Z")
    force_status(raw, a, "done", done_at="2026-11-20 12:00Z", status_changed_at="2026-11-20 12:00Z")
    force_status(raw, b, "done", done_at="2026-11-20 11:00Z", status_changed_at="2026-11-20 11:00Z")
    force_status(
        raw,
        d,
        "blocked",
        blocked_reason="agent",
        escalated_to_id=agent["vp-engineering"],
        escalation_chain=["qa-lead", "vp-engineering"],
        status_changed_at="2026-11-21 10:00Z",
    )
    force_status(raw, e, "in_review", status_changed_at="2026-11-21 11:00Z")

    def call(
        issue_id: int | None, slug: str, tier: str, cost: str, when: str, outcome: str = "ok", latency: int = 100
    ) -> None:
        raw.execute(
            "INSERT INTO llm_calls (run_id, call_seq, issue_id, agent_id, workflow, tier, provider, model, "
            "input_tokens, output_tokens, cost_usd, latency_ms, outcome, created_at) VALUES (gen_random_uuid(), "
            "1, %s, %s, 'execute', %s, 'anthropic', 'anthropic/claude-sonnet-4-6', 100, 10, %s, %s, %s, %s)",
            (issue_id, agent[slug], tier, cost, latency, outcome, when),
        )

    call(a, "backend-engineer", "execution", "0.10", "2026-11-20 10:10Z", latency=100)
    call(a, "backend-engineer", "execution", "0.05", "2026-11-20 10:20Z", latency=200)
    call(a, "eng-lead-platform", "reasoning", "0.20", "2026-11-20 11:30Z", latency=300)
    call(b, "frontend-engineer", "execution", "0.07", "2026-11-20 10:40Z", latency=400)
    call(b, "frontend-engineer", "execution", "0", "2026-11-20 10:35Z", outcome="error", latency=500)
    call(c, "eng-lead-web", "utility", "0.01", "2026-11-21 09:10Z", latency=600)
    call(None, "ceo", "reasoning", "0.30", "2026-11-21 08:00Z", latency=700)
    raw.execute(
        "INSERT INTO approvals (issue_id, kind, requested_by, deadline, created_at) VALUES "
        "(%s, 'work', 'agent:editor', now() - interval '1 hour', now() - interval '2 hours'), "
        "(%s, 'escalation', 'agent:vp-engineering', now() + interval '1 day', now())",
        (e, d),
    )
    for outcome, claims in (("ok", 1), ("ok", 1), ("error", 0)):
        raw.execute(
            "INSERT INTO heartbeat_runs (run_id, agent_id, worker, started_at, finished_at, outcome, claims) "
            "VALUES (gen_random_uuid(), %s, 'w', '2026-11-20 10:00Z', '2026-11-20 10:01Z', %s, %s)",
            (agent["backend-engineer"], outcome, claims),
        )
    # What settling those calls charged each issue (hq_record_call does this for real calls).
    raw.execute(
        "UPDATE issues SET spent_usd = c.cost FROM (SELECT issue_id, sum(cost_usd) AS cost FROM llm_calls "
        "GROUP BY issue_id) c WHERE issues.id = c.issue_id"
    )
    raw.execute("SELECT hq_rebuild_rollups()")  # force_status bypassed the triggers that keep the summaries
    return {"a": a, "b": b, "c": c, "d": d, "e": e}


def report(name: str, *args: str) -> list[dict]:
    result = run_hq("report", name, "--format", "json", *args)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_cost_by_agent(scenario: dict[str, int]) -> None:
    listed = report("cost_by_agent")
    rows = {r["agent"]: (r["month"], r["calls"], r["failed_calls"], D(r["cost_usd"])) for r in listed}
    assert rows == {
        "backend-engineer": ("2026-11-01", 2, 0, D("0.15")),
        "eng-lead-platform": ("2026-11-01", 1, 0, D("0.20")),
        "frontend-engineer": ("2026-11-01", 2, 1, D("0.07")),
        "eng-lead-web": ("2026-11-01", 1, 0, D("0.01")),
        "ceo": ("2026-11-01", 1, 0, D("0.30")),
    }
    assert [r["agent"] for r in listed][:2] == ["ceo", "eng-lead-platform"]  # costliest first
    assert report("cost_by_agent", "--since", "2026-12-01") == []


def test_cost_by_tier_and_since(scenario: dict[str, int]) -> None:
    rows = {r["tier"]: (r["calls"], D(r["cost_usd"]), D(r["cost_share_pct"])) for r in report("cost_by_tier")}
    assert rows == {
        "execution": (4, D("0.22"), D("30.14")),
        "reasoning": (2, D("0.50"), D("68.49")),
        "utility": (1, D("0.01"), D("1.37")),
    }
    since = {r["tier"]: D(r["cost_usd"]) for r in report("cost_by_tier", "--since", "2026-11-21")}
    assert since == {"reasoning": D("0.30"), "utility": D("0.01")}


def test_cost_by_issue_rolls_sub_issues_up(scenario: dict[str, int], raw: psycopg.Connection) -> None:
    def rows() -> list[tuple]:
        return [
            (r["issue_id"], r["own_calls"], D(r["own_cost_usd"]), D(r["sub_issue_cost_usd"]), D(r["total_cost_usd"]))
            for r in report("cost_by_issue")
        ]

    s = scenario
    assert rows() == [
        (s["a"], 3, D("0.35"), D("0.08"), D("0.43")),
        (s["b"], 2, D("0.07"), D("0.01"), D("0.08")),
        (s["c"], 1, D("0.01"), D("0"), D("0.01")),
    ]  # costliest first; issues with no cost left out
    # Kept live by triggers: a charge to the grand-child reaches every ancestor at once.
    raw.execute("UPDATE issues SET spent_usd = spent_usd + 0.5 WHERE id = %s", (s["c"],))
    assert rows() == [
        (s["a"], 3, D("0.35"), D("0.58"), D("0.93")),
        (s["b"], 2, D("0.07"), D("0.51"), D("0.58")),
        (s["c"], 1, D("0.51"), D("0"), D("0.51")),
    ]
    # A rebuild from the facts (after a bulk load that bypassed triggers) sets the same totals, counted once.
    with raw.transaction():
        raw.execute("SET LOCAL session_replication_role = replica")
        raw.execute("UPDATE issues SET subtree_cost_usd = 0")
    raw.execute("SELECT hq_rebuild_rollups()")
    assert rows()[0] == (s["a"], 3, D("0.35"), D("0.58"), D("0.93"))


def test_cost_daily(scenario: dict[str, int]) -> None:
    rows = {(r["day"], r["tier"]): (r["calls"], D(r["cost_usd"])) for r in report("cost_daily")}
    assert rows == {
        ("2026-11-20", "execution"): (4, D("0.22")),
        ("2026-11-20", "reasoning"): (1, D("0.20")),
        ("2026-11-21", "utility"): (1, D("0.01")),
        ("2026-11-21", "reasoning"): (1, D("0.30")),
    }


def test_blocked_chain(scenario: dict[str, int]) -> None:
    [row] = report("blocked_chain")
    assert (
        row["issue_id"],
        row["blocked_reason"],
        row["assignee"],
        row["waiting_on"],
        row["chain"],
        row["levels_climbed"],
    ) == (scenario["d"], "agent", "qa-engineer", "vp-engineering", "qa-engineer -> qa-lead -> vp-engineering", 2)
    assert row["blocked_since"].startswith("2026-11-21T10:00:00")


def test_approval_queue(scenario: dict[str, int]) -> None:
    rows = {r["issue_id"]: (r["kind"], r["overdue"]) for r in report("approval_queue")}
    assert rows == {scenario["e"]: ("work", True), scenario["d"]: ("escalation", False)}


def test_throughput_daily(scenario: dict[str, int]) -> None:
    rows = {
        r["day"]: (r["created"], r["done"], r["cycle_p50_seconds"], r["cycle_p90_seconds"])
        for r in report("throughput_daily")
    }
    # cycle times 30 min and 2 h: each percentile reads as the upper bound of its histogram bucket
    assert rows == {"2026-11-20": (2, 2, "3600", "14400"), "2026-11-21": (3, 0, None, None)}


def test_agent_activity_and_board(scenario: dict[str, int]) -> None:
    activity = {
        r["agent"]: (r["heartbeats"], r["claims"], r["failures"], r["productive_beats"])
        for r in report("agent_activity")
    }
    assert activity["backend-engineer"] == (3, 2, 1, 2)
    assert activity["qa-lead"] == (0, 0, 0, 0)
    assert len(activity) == 33
    board = {(r["status"], r["assignee"]): (r["issues"], r["oldest_issue_id"]) for r in report("issue_board")}
    assert board == {
        ("done", "backend-engineer"): (1, scenario["a"]),
        ("done", "frontend-engineer"): (1, scenario["b"]),
        ("todo", "frontend-engineer"): (1, scenario["c"]),
        ("blocked", "qa-engineer"): (1, scenario["d"]),
        ("in_review", "content-writer"): (1, scenario["e"]),
    }


def test_provider_health(scenario: dict[str, int]) -> None:
    [row] = report("provider_health")
    assert (row["provider"], row["calls"], row["errors"], D(row["error_rate_pct"]), row["fallbacks"]) == (
        "anthropic",
        7,
        1,
        D("14.29"),
        0,
    )
    # latencies 100..700 ms: the median (400) is in the 250-500 ms bucket, p95 (700) in the 500-1000 ms one
    assert (row["p50_latency_ms"], row["p95_latency_ms"]) == ("500", "1000")


def test_report_formats_and_errors(scenario: dict[str, int]) -> None:
    listing = run_hq("report")
    assert listing.exit_code == 0 and "report_cost_by_issue" in listing.stdout and "rolled up" in listing.stdout
    table = run_hq("report", "report_cost_by_tier")
    assert table.exit_code == 0 and "execution" in table.stdout
    rows = list(csv.DictReader(io.StringIO(run_hq("report", "cost_by_tier", "--format", "csv").stdout)))
    assert {r["tier"] for r in rows} == {"execution", "reasoning", "utility"}
    for bad in (
        ("report", "nope"),
        ("report", "cost_by_tier", "--since", "yesterday"),
        ("report", "cost_by_tier", "--format", "xml"),
    ):
        result = run_hq(*bad)
        assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1, (bad, result.stderr)


def test_reporter_reads_views_and_nothing_else(scenario: dict[str, int], db_url: str) -> None:
    url = run_hq("db", "reporter-url").stdout.strip()
    assert url.startswith("postgresql://hq_reporter@")
    with psycopg.connect(url, autocommit=True) as reporter:
        assert reporter.execute("SELECT count(*) FROM report_cost_by_agent").fetchone() == (5,)
        assert reporter.execute("SHOW default_transaction_read_only").fetchone() == ("on",)
        for statement in (
            "SELECT * FROM issues",
            "SELECT * FROM llm_calls",
            "SELECT * FROM agents",
            "INSERT INTO issues (title, created_by) VALUES ('x', 'y')",
            "UPDATE report_blocked_chain SET title = 'x'",
            "DELETE FROM comments",
            "CREATE TABLE mine (id int)",
        ):
            with pytest.raises(
                (
                    psycopg.errors.InsufficientPrivilege,
                    psycopg.errors.ReadOnlySqlTransaction,
                    psycopg.errors.ObjectNotInPrerequisiteState,
                )
            ):
                reporter.execute(statement)
        reporter.execute("SET default_transaction_read_only = off")  # even with read-only switched off
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            reporter.execute("UPDATE issues SET status = 'done'")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            reporter.execute("CREATE TABLE mine (id int)")
    assert libpq_url(db_url).split("@")[1] == url.split("@")[1].replace("%2F", "/")
