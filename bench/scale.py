"""Scale: a company a thousand times the demo's, generated in SQL, then every claim and every report.

1,000,000 issues, 10,000 agents, 5,000,000 issue events and 2,000,000 model-call rows
(plus heartbeats and approvals). Every claim query (and the sweeper's) must use an index
(EXPLAIN: no sequential scan of issues), and each report view must run in at most 2x the
time of `SELECT count(*) FROM issues` measured in the same run. A view is timed the way
`hq report` reads it, its first 1,000 rows; the time to read every row is printed beside it.
Times are server-side execution (EXPLAIN ANALYZE, best of three), so the client's row
transfer counts for neither side.

    python -m bench.scale [--issues 1000000] [--agents 10000]
"""

from __future__ import annotations

import argparse
import json
import re
import time
import uuid
from typing import TYPE_CHECKING

from bench.common import fresh_database, one, verdict

if TYPE_CHECKING:
    import psycopg

TERMINAL_SHARE = 0.7


def generate(conn: psycopg.Connection, issues: int, agents: int) -> dict[str, float]:
    """Fill the database in SQL; triggers are bypassed for the bulk load and the rollups rebuilt after."""
    timings: dict[str, float] = {}

    def step(name: str, sql: str, **params: object) -> None:
        started = time.perf_counter()
        conn.execute(sql, params)
        timings[name] = time.perf_counter() - started

    conn.execute("SET session_replication_role = replica")
    conn.execute("SET synchronous_commit = off")
    conn.execute("SET maintenance_work_mem = '512MB'")
    step(
        "agents",
        """
        INSERT INTO agents (slug, title, manager_id, tier, heartbeat_seconds, workflows, toolsets, skills, checklist,
                            monthly_budget_usd)
        SELECT 'agent-' || g, 'Agent ' || g, NULL, (ARRAY['reasoning','execution','utility'])[1 + g %% 3], 900,
               CASE WHEN g %% 10 = 0 THEN '{assign,review_gate,escalate,execute}'::text[] ELSE '{execute}'::text[] END,
               '{issues,workspace}', '[]', '[]', 50
          FROM generate_series(0, %(agents)s - 1) g""",
        agents=agents,
    )
    conn.execute(
        "UPDATE agents SET manager_id = CASE WHEN id > 1 THEN 1 + (id - 2) / 10 END, "
        "reviewer_id = CASE WHEN id > 1 THEN 1 + (id - 2) / 10 END"
    )
    step(
        "issues",
        """
        INSERT INTO issues (title, body, status, priority, assignee_id, reviewer_id, escalated_to_id, parent_id,
                            playbook, module_key, budget_usd, spent_usd, attempts, review_rounds, blocked_reason,
                            lease_owner, lease_until, created_by, created_at, status_changed_at, done_at, unmet_deps)
        SELECT 'Generated issue ' || g, 'Body of issue ' || g, s.status, g %% 10,
               1 + (g * 7919) %% %(agents)s, 1 + (g * 104729) %% %(agents)s,
               CASE WHEN s.status = 'blocked' THEN 1 + (g * 31) %% %(agents)s END,
               CASE WHEN g %% 10 = 0 AND g > 100 THEN g - 1 - (g %% 97) END,
               CASE WHEN g %% 97 = 3 THEN 'feature-delivery' END,
               CASE WHEN g %% 10 = 0 AND g > 100 THEN 'part' END,
               2, round((random() * 0.5)::numeric, 6), 1, 0,
               CASE WHEN s.status = 'blocked' THEN 'agent' END,
               CASE WHEN s.status IN ('in_progress', 'deploying') THEN gen_random_uuid() END,
               CASE WHEN s.status IN ('in_progress', 'deploying') THEN now() + interval '5 minutes' END,
               'generator', c.created, c.created + interval '2 hours',
               CASE WHEN s.status = 'done' THEN c.created + (random() * interval '3 days') END,
               CASE WHEN g %% 13 = 0 AND s.status = 'todo' THEN 1 ELSE 0 END
          FROM generate_series(1::bigint, %(issues)s) g
          CROSS JOIN LATERAL (SELECT now() - (random() * interval '90 days') AS created) c
          CROSS JOIN LATERAL (SELECT CASE
              WHEN r < 0.62 THEN 'done' WHEN r < 0.66 THEN 'cancelled' WHEN r < 0.70 THEN 'rejected'
              WHEN r < 0.78 THEN 'backlog' WHEN r < 0.86 THEN 'todo' WHEN r < 0.89 THEN 'in_progress'
              WHEN r < 0.92 THEN 'in_review' WHEN r < 0.94 THEN 'pending_approval' WHEN r < 0.96 THEN 'approved'
              WHEN r < 0.97 THEN 'deploying' ELSE 'blocked' END AS status
              FROM (SELECT random() AS r OFFSET 0 * g) x) s""",
        agents=agents,
        issues=issues,
    )
    step(
        "issue_events",
        """
        INSERT INTO issue_events (issue_id, from_status, to_status, actor, workflow, created_at)
        SELECT i.id, (ARRAY[NULL,'backlog','todo','in_progress','in_review'])[e],
               (ARRAY['backlog','todo','in_progress','in_review','approved'])[e],
               'agent:agent-' || (i.id %% %(agents)s), 'execute', i.created_at + e * interval '10 minutes'
          FROM issues i CROSS JOIN generate_series(1, 5) e""",
        agents=agents,
    )
    step(
        "llm_calls",
        """
        INSERT INTO llm_calls (run_id, call_seq, issue_id, agent_id, workflow, tier, provider, model, deployment,
                               input_tokens, output_tokens, cost_usd, reserved_usd, latency_ms, outcome, created_at)
        SELECT gen_random_uuid(), 1, 1 + (g * 7) %% %(issues)s, 1 + (g * 13) %% %(agents)s, 'execute',
               (ARRAY['reasoning','execution','utility'])[1 + g %% 3], 'anthropic',
               (ARRAY['anthropic/claude-opus-4-7', 'anthropic/claude-sonnet-4-6',
                      'anthropic/claude-haiku-4-5'])[1 + g %% 3],
               'execution-1', 1000 + g %% 3000, 200 + g %% 800, round((random() * 0.05)::numeric, 8), 0.05,
               50 + (g * 37) %% 5000,
               CASE WHEN g %% 50 = 0 THEN 'error' WHEN g %% 40 = 0 THEN 'fallback' ELSE 'ok' END,
               now() - (random() * interval '90 days')
          FROM generate_series(1::bigint, 2 * %(issues)s) g""",
        agents=agents,
        issues=issues,
    )
    step(
        "heartbeat_runs",
        """
        INSERT INTO heartbeat_runs (run_id, agent_id, worker, started_at, finished_at, outcome, claims, issues_touched)
        SELECT gen_random_uuid(), 1 + g %% %(agents)s, 'host:1', now() - (g * interval '1 second'),
               now() - (g * interval '1 second') + interval '2 seconds',
               CASE WHEN g %% 100 = 0 THEN 'error' WHEN g %% 3 = 0 THEN 'ok' ELSE 'idle' END, g %% 2, '{}'
          FROM generate_series(1, %(beats)s) g""",
        agents=agents,
        beats=issues // 2,
    )
    step(
        "approvals",
        """
        INSERT INTO approvals (issue_id, kind, requested_by, reason, deadline, created_at)
        SELECT id, 'work', 'agent:x', 'review passed', created_at + interval '1 day', created_at
          FROM issues WHERE status = 'pending_approval'""",
    )
    conn.execute("SET session_replication_role = origin")
    started = time.perf_counter()
    if one(conn.execute("SELECT to_regprocedure('hq_rebuild_rollups()')").fetchone())[0]:
        conn.execute("SELECT hq_rebuild_rollups()")
    timings["rollups"] = time.perf_counter() - started
    started = time.perf_counter()
    conn.execute("VACUUM (ANALYZE)")
    timings["vacuum analyze"] = time.perf_counter() - started
    return timings


def server_ms(conn: psycopg.Connection, sql: str, params: dict | None = None, runs: int = 3) -> float:
    """Best server-side execution time of ``sql`` (EXPLAIN ANALYZE: no rows cross the wire)."""
    best = float("inf")
    for _ in range(runs):
        plan = one(conn.execute("EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON) " + sql, params).fetchone())[0][0]
        best = min(best, plan["Execution Time"] + plan.get("Planning Time", 0))
    return best


def nodes(plan: dict) -> list[dict]:
    found = [plan]
    for child in plan.get("Plans", []):
        found.extend(nodes(child))
    return found


def check_claims(conn: psycopg.Connection) -> list[tuple[str, str, float]]:
    from db.sqlfiles import _named_queries

    results = []
    run_id = uuid.uuid4()
    params = {
        "agent_id": 11,
        "run_id": run_id,
        "run_text": str(run_id),
        "ttl": 60,
        "actor": "bench",
        "workflow": "bench",
        "limit": 200,
    }
    for name, sql in sorted(_named_queries("claims").items()):
        if not (name.startswith(("claim_", "reclaim_")) or name == "expired_work") or name == "claim_agent":
            continue
        statement = re.sub(r"(?<![:\w]):([a-z_]+)", r"%(\1)s", sql)
        with conn.transaction(force_rollback=True):
            plan = one(conn.execute("EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON) " + statement, params).fetchone())[0][0]
        scans = [(n["Node Type"], n.get("Relation Name"), n.get("Index Name")) for n in nodes(plan["Plan"])]
        seq = any(kind == "Seq Scan" and relation == "issues" for kind, relation, _ in scans)
        index = next((idx for _, relation, idx in scans if relation == "issues" and idx), "-")
        results.append((name, "SEQ SCAN" if seq else index, plan["Execution Time"]))
    return results


def main(issues: int = 1_000_000, agents: int = 10_000) -> float:
    import psycopg

    with fresh_database("hq_bench_scale") as db, psycopg.connect(db.libpq, autocommit=True) as conn:
        timings = generate(conn, issues, agents)
        counts = {
            t: one(conn.execute(f"SELECT count(*) FROM {t}").fetchone())[0]
            for t in ("issues", "agents", "issue_events", "llm_calls")
        }
        print("generated:", ", ".join(f"{t} {n:,}" for t, n in counts.items()))
        print("generation seconds:", json.dumps({k: round(v, 1) for k, v in timings.items()}))
        claims = check_claims(conn)
        for name, index, ms in claims:
            print(f"  claim {name:24s} {index:36s} {ms:7.2f} ms")
        reference = server_ms(conn, "SELECT count(*) FROM issues")
        print(f"reference: SELECT count(*) FROM issues = {reference:.1f} ms")
        views = [
            r[0]
            for r in conn.execute(
                "SELECT viewname FROM pg_views WHERE schemaname = 'public' AND viewname LIKE 'report\\_%' ORDER BY 1"
            )
        ]
        worst = 0.0
        print(f"  {'view':28s} {'first 1000':>10s} {'ratio':>6s} {'every row':>10s}")
        for view in views:
            page = server_ms(conn, f'SELECT * FROM "{view}" LIMIT 1000')
            whole = server_ms(conn, f'SELECT * FROM "{view}"', runs=1)
            worst = max(worst, page / reference)
            print(f"  {view:28s} {page:7.1f} ms {page / reference:5.2f}x {whole:7.1f} ms")
    seq_claims = [name for name, index, _ in claims if index in ("SEQ SCAN", "-")]
    print(f"claims without their index: {seq_claims or 'none'}")
    print(
        verdict(
            "slowest report view vs count(*) at scale",
            worst,
            "<= 2.0x, every claim indexed",
            worst <= 2.0 and not seq_claims,
        )
    )
    return worst


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--issues", type=int, default=1_000_000)
    parser.add_argument("--agents", type=int, default=10_000)
    arguments = parser.parse_args()
    main(arguments.issues, arguments.agents)
