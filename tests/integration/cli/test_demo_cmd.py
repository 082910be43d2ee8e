"""`hq demo` is the main job: it must settle every issue, on the offline model, well within two minutes.

Its output is a story, not log lines: the ticker shows no JSON (the beats APScheduler skipped and the
budget the scripted path exhausts on purpose are in the demo's log only), every command it shows runs
the same `hq`, and `hq run --once` right after it prints text, not the outbox as JSON log lines.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from pathlib import Path

import psycopg

from cli.demo_cmd import hq_invocation
from tests.support.cli import run_hq_process
from tests.support.rows import one, rollups


def test_demo_settles_every_path(db_url: str, raw: psycopg.Connection) -> None:
    started = time.monotonic()
    result = run_hq_process("demo", "--timeout", "100", timeout=180)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert elapsed < 120
    hq = shlex.join(hq_invocation(Path(sys.executable), Path.cwd()))
    for command in ("approve", "budget", "unblock"):
        assert f"$ {hq} {command} " in result.stdout
    explore = next(line for line in result.stdout.splitlines() if line.startswith("Explore: "))
    assert all(suggested.startswith(f"{hq} ") for suggested in explore.removeprefix("Explore: ").split(" · "))
    assert "the board after" in result.stdout and "model cost by agent and tier" in result.stdout
    # It says which database it uses (here the test's, from DATABASE_URL), not "embedded".
    first = result.stdout.splitlines()[0]
    assert "PostgreSQL from DATABASE_URL" in first and "embedded" not in first, first
    # No log line in the story; the log has them all, the budget scenario's expected refusal among them.
    shown = [line for line in (result.stdout + result.stderr).splitlines() if line.lstrip().startswith("{")]
    assert shown == [], shown[:5]
    assert "claim.taken" not in result.stdout + result.stderr
    log = Path(os.environ["HQ_DATA_DIR"], "logs", "demo.log")  # the data dir the db_url fixture set
    assert f"The demo's log: {log}" in result.stdout
    events = [json.loads(line) for line in log.read_text().splitlines()]
    assert any(e["event"] == "llm.budget_refused" and e["level"] == "warning" for e in events)
    assert any(e["event"] == "claim.taken" for e in events)  # the log is at info
    statuses: dict[str, int] = dict(raw.execute("SELECT status, count(*) FROM issues GROUP BY 1").fetchall())
    assert set(statuses) == {"done"}, statuses
    assert one(raw.execute("SELECT count(*) FROM issues").fetchone())[0] >= 12
    # The report summaries the triggers kept through the whole run are exactly what the facts say.
    kept = rollups(raw)
    raw.execute("SELECT hq_rebuild_rollups()")
    assert kept == rollups(raw)
    assert kept["usage_daily"] and kept["board_counts"] == [("done", *row[1:]) for row in kept["board_counts"]]

    # One round right after the demo: a summary and the notifications it delivered, as text; no log lines.
    # The demo delivers its own notifications as it ends; one still pending (as after a demo cut short) is
    # what `--once` must print as text.
    raw.execute(
        "UPDATE notifications SET status = 'pending', sent_at = NULL, next_attempt_at = now()"
        " WHERE id = (SELECT max(id) FROM notifications WHERE event = 'done')"
    )
    once = run_hq_process("run", "--once", timeout=120)
    assert once.returncode == 0, once.stdout[-3000:] + once.stderr[-3000:]
    lines = (once.stdout + once.stderr).splitlines()
    assert not [line for line in lines if line.lstrip().startswith("{")], lines[:5]
    assert lines[-1].endswith(" failed") and " heartbeats, " in lines[-1]
    delivered = [line for line in lines if line.startswith("notification ")]
    assert delivered and all("<b>" not in line for line in delivered), lines
    assert any(" (done): Done #" in line for line in delivered), lines
