"""execute (workflows/execute.py) against its limits: a run that reaches HQ's own limit on it is refunded, not
counted against the agent, and says which limit and its value (issue 26)."""

from __future__ import annotations

import psycopg

from config.settings import get_settings
from db.engine import get_engine
from scheduler.company import load_company
from scheduler.heartbeat import BeatContext, run_beat
from tests.support.cli import run_hq
from tests.support.rows import one


def test_a_run_past_the_tool_loop_limit_is_refunded_and_names_the_limit(db_url: str, raw: psycopg.Connection) -> None:
    assert run_hq("agents", "sync").exit_code == 0
    created = run_hq("issue", "create", "Write the notes [offline:slow]", "--assign", "technical-writer")
    assert created.exit_code == 0, created.stderr
    issue = int(created.stdout)
    settings = get_settings().model_copy(update={"tool_loop_max_seconds": 1})  # the slow first step takes 2 s
    runtime = BeatContext(settings, get_engine(settings), load_company(settings), "test")
    run_beat("technical-writer", runtime)
    status, attempts = one(raw.execute("SELECT status, attempts FROM issues WHERE id = %s", (issue,)).fetchone())
    assert (status, attempts) == ("todo", 0)  # given back, the attempt refunded
    (body,) = one(
        raw.execute(
            "SELECT body FROM comments WHERE issue_id = %s AND kind = 'system' ORDER BY id DESC LIMIT 1", (issue,)
        ).fetchone()
    )
    assert "HQ_TOOL_LOOP_MAX_SECONDS=1" in body
