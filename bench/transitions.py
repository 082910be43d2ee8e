"""State machine throughput: P worker processes drive N issues through the real claim → submit
code (workflows/lib/claims.py and the issue store, db/store/; no model calls) against pgbench running the same claim and
guarded-finish SQL at the same concurrency, on the same embedded PostgreSQL, in the same run.

Each issue makes two transitions (todo → in_progress by the claim, in_progress → in_review by
the compare-and-set finish), each one through the state-machine and audit triggers. Afterwards
the event log is checked for double claims. Target: hq ≥ 0.5x pgbench.

    python -m bench.transitions [--issues 4000] [--workers 4]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import re
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from bench.common import fresh_database, one, verdict

# The same statements the claim and finish code send, as a pgbench script: the claim alone in
# autocommit, the finish as a transaction with the actor set.
PGBENCH_SCRIPT = r"""
\set agent :agent_base + :client_id
WITH actor AS MATERIALIZED (
    SELECT set_config('hq.actor', 'bench:pgbench', true), set_config('hq.workflow', 'execute', true),
           set_config('hq.run_id', '', true)
), candidate AS MATERIALIZED (
    SELECT id FROM issues
     WHERE status = 'todo' AND assignee_id = :agent AND unmet_deps = 0
     ORDER BY priority, id LIMIT 1 FOR UPDATE SKIP LOCKED
)
UPDATE issues i SET status = 'in_progress', lease_owner = gen_random_uuid(),
       lease_until = now() + make_interval(secs => 300), attempts = i.attempts + 1
  FROM candidate, actor WHERE i.id = candidate.id
RETURNING i.* \gset
BEGIN;
SELECT set_config('hq.actor', 'bench:pgbench', true), set_config('hq.workflow', 'execute', true),
       set_config('hq.run_id', '', true);
UPDATE issues SET status = 'in_review', lease_owner = NULL, lease_until = NULL
 WHERE id = :id AND status = 'in_progress' AND lease_owner = CAST(':lease_owner' AS uuid)
RETURNING *;
COMMIT;
"""


def _seed(url: str, prefix: str, agents: int, issues: int) -> list[int]:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.begin() as conn:
        ids = [
            conn.execute(
                text("INSERT INTO agents (slug, title, workflows) VALUES (:s, :s, '{execute}') RETURNING id"),
                {"s": f"{prefix}-{n}"},
            ).scalar_one()
            for n in range(agents)
        ]
        conn.execute(
            text("""
            INSERT INTO issues (title, status, created_by, assignee_id, priority)
            SELECT 'bench issue ' || g, 'todo', 'bench', (:ids)[1 + g % :agents], g % 10
              FROM generate_series(0, :n - 1) g
        """),
            {"ids": ids, "agents": agents, "n": issues},
        )
    engine.dispose()
    return ids


def _worker(url: str, agent_id: int, start: multiprocessing.synchronize.Event, done: multiprocessing.Queue) -> None:
    """One agent's claim → finish loop, exactly as an execute workflow drives it (minus the model)."""
    os.environ["DATABASE_URL"] = url
    from bench.common import quiet_logging

    quiet_logging()  # a spawned process: its claims would log every claim.taken at info
    from sqlalchemy import text

    from agents.roster import Roster
    from config.settings import load_settings
    from db import store
    from db.engine import get_engine
    from workflows.lib.claims import claim
    from workflows.lib.context import WorkflowContext

    settings = load_settings()
    engine = get_engine(settings)
    beat = uuid.uuid4()
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE agents SET lease_owner = :run, lease_until = now() + interval '1 hour' WHERE id = :id"),
            {"run": beat, "id": agent_id},
        )
    with engine.connect() as conn:
        agent = store.get_agent(conn, agent_id)
    assert agent is not None
    ctx = WorkflowContext(
        agent=agent,
        roster=Roster({}, Path(".")),
        settings=settings,
        engine=engine,
        beat_run_id=beat,
        deadline=time.monotonic() + 3600,
        workflow="execute",
    )
    start.wait()
    count = 0
    while True:
        held = claim(ctx, "claim_todo")
        if held is None:
            break
        with ctx.tx(held.run_id) as session:
            store.submit(session, held, reviewer_id=None)
        count += 1
    done.put(count)


def run_hq(url: str, agent_ids: list[int]) -> tuple[int, float]:
    context = multiprocessing.get_context("spawn")
    start, done = context.Event(), context.Queue()
    workers = [context.Process(target=_worker, args=(url, agent, start, done)) for agent in agent_ids]
    for worker in workers:
        worker.start()
    time.sleep(3.0)  # every worker imported, connected and waiting
    began = time.perf_counter()
    start.set()
    claimed = sum(done.get(timeout=600) for _ in workers)
    elapsed = time.perf_counter() - began
    for worker in workers:
        worker.join()
    return claimed, elapsed


def run_pgbench(libpq: str, agent_ids: list[int], per_agent: int) -> float:
    from db.embedded import bin_path

    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as script:
        script.write(PGBENCH_SCRIPT)
    result = subprocess.run(
        [
            str(bin_path("pgbench")),
            "-n",
            "-c",
            str(len(agent_ids)),
            "-j",
            str(len(agent_ids)),
            "-t",
            str(per_agent),
            "-D",
            f"agent_base={agent_ids[0]}",
            "-f",
            script.name,
            libpq,
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode != 0:
        raise RuntimeError(f"pgbench failed: {result.stderr.strip()[-2000:]}")
    Path(script.name).unlink()
    tps = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", result.stdout)
    assert tps is not None, result.stdout
    return float(tps.group(1))


def main(issues: int = 4000, workers: int = 4) -> float:
    import psycopg

    with fresh_database("hq_bench_transitions") as db:
        per_agent = issues // workers
        pgbench_agents = _seed(db.url, "pgbench", workers, per_agent * workers)
        pgbench_tps = run_pgbench(db.libpq, pgbench_agents, per_agent)
        hq_agents = _seed(db.url, "hq", workers, per_agent * workers)
        claimed, elapsed = run_hq(db.url, hq_agents)
        with psycopg.connect(db.libpq) as conn:
            double = one(
                conn.execute("""
                SELECT count(*) FROM (SELECT issue_id FROM issue_events WHERE to_status = 'in_progress'
                                       GROUP BY issue_id HAVING count(*) > 1) twice""").fetchone()
            )[0]
            left = one(conn.execute("SELECT count(*) FROM issues WHERE status <> 'in_review'").fetchone())[0]
    hq_rate = 2 * claimed / elapsed
    pgbench_rate = 2 * pgbench_tps
    print(f"issues per side: {per_agent * workers}, concurrency: {workers} (2 transitions per issue)")
    print(f"pgbench, raw SQL claim + guarded finish: {pgbench_rate:,.0f} transitions/s")
    print(f"hq, claims.claim + store.submit: {hq_rate:,.0f} transitions/s ({claimed} issues in {elapsed:.2f}s)")
    print(f"double claims in issue_events: {double}; issues not finished: {left}")
    ratio = hq_rate / pgbench_rate
    print(verdict("state machine throughput", ratio, ">= 0.5x pgbench", ratio >= 0.5 and double == 0 and left == 0))
    return ratio


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--issues", type=int, default=4000)
    parser.add_argument("--workers", type=int, default=4)
    arguments = parser.parse_args()
    main(arguments.issues, arguments.workers)
