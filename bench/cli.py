"""CLI start: wall time of `hq issues` and of a successful `hq approve`, against
`python -c "import typer, sqlalchemy, psycopg"` — the floor any CLI on this stack pays.

Each command runs as a fresh process, as a person runs it, against a migrated embedded
PostgreSQL holding a few hundred issues; the figure is the median of the runs, and the
reference is measured interleaved with them. Target: the slower command at most 1.5x.

    python -m bench.cli [--runs 15]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from bench.common import fresh_database, median, verdict

HQ = Path(sys.executable).with_name("hq")
REFERENCE = [sys.executable, "-c", "import typer, sqlalchemy, psycopg"]


def seed(libpq: str, approvals: int) -> list[int]:
    """A few hundred issues, and ``approvals`` of them waiting for a human's approval."""
    import psycopg

    with psycopg.connect(libpq, autocommit=True) as conn:
        conn.execute("INSERT INTO agents (slug, title, workflows) VALUES ('bench', 'Bench', '{execute}')")
        conn.execute(
            "INSERT INTO issues (title, status, created_by, assignee_id) "
            "SELECT 'Background issue ' || g, 'todo', 'bench', 1 FROM generate_series(1, 300) g"
        )
        ids = [
            row[0]
            for row in conn.execute(
                "INSERT INTO issues (title, status, created_by, assignee_id) "
                "SELECT 'Ship feature ' || g, 'todo', 'bench', 1 FROM generate_series(1, %s) g RETURNING id",
                (approvals,),
            )
        ]
        for status in ("in_progress", "in_review", "pending_approval"):  # the legal path, through the state machine
            conn.execute("UPDATE issues SET status = %s WHERE id = ANY(%s)", (status, ids))
        conn.execute(
            "INSERT INTO approvals (issue_id, kind, requested_by, deadline) "
            "SELECT unnest(%s::bigint[]), 'work', 'agent:bench', now() + interval '1 day'",
            (ids,),
        )
    return ids


def timed(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command[-2:])} failed: {result.stderr.strip()[-500:]}")
    return elapsed


def main(runs: int = 15) -> float:
    with fresh_database("hq_bench_cli") as db:
        ids = seed(db.libpq, runs + 2)
        env = {**os.environ, "HQ_LOG_LEVEL": "warning"}
        timed([str(HQ), "issues"], env)  # warm the page cache once for every side
        timed([str(HQ), "approve", str(ids.pop())], env)
        timed(REFERENCE, env)
        reference, issues, approve = [], [], []
        for _ in range(runs):  # interleaved, so a noisy moment hits every side
            reference.append(timed(REFERENCE, env))
            issues.append(timed([str(HQ), "issues"], env))
            approve.append(timed([str(HQ), "approve", str(ids.pop())], env))
    ref, iss, app = (median(v) * 1000 for v in (reference, issues, approve))
    print(f"python -c 'import typer, sqlalchemy, psycopg': {ref:.0f} ms (median of {runs})")
    print(f"hq issues:  {iss:.0f} ms  ({iss / ref:.2f}x)")
    print(f"hq approve: {app:.0f} ms  ({app / ref:.2f}x)")
    ratio = max(iss, app) / ref
    print(verdict("CLI start, slower of hq issues / hq approve", ratio, "<= 1.5x", ratio <= 1.5))
    return ratio


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    main(parser.parse_args().runs)
