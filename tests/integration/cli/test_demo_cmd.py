"""`hq demo` is the main job: it must settle every issue, on the offline model, well within two minutes."""

from __future__ import annotations

import json
import time

import psycopg

from tests.support.cli import run_hq_process
from tests.support.rows import one, rollups


def test_demo_settles_every_path(db_url: str, raw: psycopg.Connection) -> None:
    started = time.monotonic()
    result = run_hq_process("demo", "--timeout", "100", timeout=180)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert elapsed < 120
    for command in ("$ hq approve", "$ hq budget", "$ hq unblock"):
        assert command in result.stdout
    assert "the board after" in result.stdout and "model cost by agent and tier" in result.stdout
    # It says which database it uses (here the test's, from DATABASE_URL), not "embedded".
    first = result.stdout.splitlines()[0]
    assert "PostgreSQL from DATABASE_URL" in first and "embedded" not in first, first
    # Warnings are shown (the budget scenario's refused call is one); routine info logs are not.
    levels = [json.loads(line).get("level") for line in result.stderr.splitlines() if line.startswith("{")]
    assert "warning" in levels, result.stderr[-3000:]
    assert "info" not in levels and "claim.taken" not in result.stderr
    statuses: dict[str, int] = dict(raw.execute("SELECT status, count(*) FROM issues GROUP BY 1").fetchall())
    assert set(statuses) == {"done"}, statuses
    assert one(raw.execute("SELECT count(*) FROM issues").fetchone())[0] >= 12
    # The report summaries the triggers kept through the whole run are exactly what the facts say.
    kept = rollups(raw)
    raw.execute("SELECT hq_rebuild_rollups()")
    assert kept == rollups(raw)
    assert kept["usage_daily"] and kept["board_counts"] == [("done", *row[1:]) for row in kept["board_counts"]]
