"""One project issue end to end through a fake Anthropic server, with real tool_use turns as a real model takes them.

The engineer reads the file, makes a buggy edit, runs the tests (red), fixes it, runs them again (green) and
ends with a summary; its lead's model passes the review with a JSON verdict; devops merges. LiteLLM's real
Anthropic client talks to tests/fakes/anthropic_server.py; git, the sandbox and the database are real.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from config.settings import load_settings
from scheduler.company import Company
from scheduler.heartbeat import BeatContext
from tests.fakes.anthropic_server import FakeAnthropic, Reply
from tests.support.cli import run_hq
from tests.support.models import KEY, write_models
from tests.support.projects import (
    CALC,
    DEVOPS,
    ENGINEER,
    GOOD_MUL,
    LEAD,
    add_project,
    beat,
    make_remote,
    merges,
    needs_bwrap,
    project_issue,
    remote_file,
    remote_log,
    remote_rev,
    tool_result_texts,
)

pytestmark = [pytest.mark.usefixtures("db_url"), needs_bwrap]

WORKER = "claude-sonnet-4-5"  # the execution tier: the engineer
REVIEWER = "claude-haiku-4-5"  # the reasoning tier: the lead's review
BUGGY = "    return a + b\n\n\ndef mul(a, b):\n    return a + b\n"
FIXED = "def mul(a, b):\n    return a * b"


@pytest.fixture()
def fake() -> Iterator[FakeAnthropic]:
    server = FakeAnthropic().start()
    yield server
    server.stop()


@pytest.fixture()
def runtime(db_url: str, fake: FakeAnthropic, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> BeatContext:
    assert run_hq("agents", "sync").exit_code == 0
    tiers = {"execution": [f"anthropic/{WORKER}"], "utility": [f"anthropic/{WORKER}"]}
    tiers["reasoning"] = [f"anthropic/{REVIEWER}"]
    models = write_models(tmp_path / "m.yaml", fake, tiers, max_tokens=1000, price=(3, 15), retries=0)
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    monkeypatch.setenv("HQ_MODELS_FILE", str(models))
    return Company(load_settings(), threads=1).runtime


def use(tool: str, /, **arguments: Any) -> Reply:
    return Reply(text="", tool_calls=[{"name": tool, "input": arguments}], input_tokens=400, output_tokens=60)


def tool_results(body: dict[str, Any]) -> list[dict[str, Any]]:
    """Every tool_result the request carries back to the model, oldest first, as the tools' JSON."""
    return [json.loads(text) for text in tool_result_texts(body)]


def test_a_model_reads_edits_tests_fixes_and_ships(
    runtime: BeatContext, fake: FakeAnthropic, raw: psycopg.Connection, tmp_path: Path
) -> None:
    remote = make_remote(tmp_path)
    base = remote_rev(remote)
    project = add_project(raw, remote)
    issue = project_issue(raw, project, "Add mul to calc", "calc needs mul(a, b); test_calc.py already tests it.")
    fake.script(
        WORKER,
        use("read_file", path="calc.py"),
        use("edit_file", path="calc.py", old_text="    return a + b\n", new_text=BUGGY),
        use("run_command", name="test"),
        use("edit_file", path="calc.py", old_text="def mul(a, b):\n    return a + b", new_text=FIXED),
        use("run_command", name="test"),
        Reply(text="DONE: added mul to calc.py; the tests pass.", input_tokens=500, output_tokens=20),
    )
    fake.script(REVIEWER, Reply(text='{"score": 0.9, "passed": true, "notes": ["mul is tested and correct"]}'))

    assert beat(runtime, raw, ENGINEER, issue) == "in_review"
    worker = [r["body"] for r in fake.requests if r["body"]["model"] == WORKER]
    assert len(worker) == 6
    offered = {tool["name"] for tool in worker[0]["tools"]}
    assert {"read_file", "edit_file", "run_command", "search", "diff"} <= offered and "deploy" not in offered
    # What each turn sent back: the file as it was, the red run's output, then the green one.
    results = tool_results(worker[5])
    assert results[0]["content"] == CALC
    assert results[2]["exit_code"] == 1 and "FAILED" in results[2]["output_tail"]
    assert "AssertionError: 5 != 6" in results[2]["output_tail"]
    assert results[4]["exit_code"] == 0 and "OK" in results[4]["output_tail"]
    calls = raw.execute("SELECT tool, outcome FROM tool_calls WHERE issue_id = %s ORDER BY id", (issue,)).fetchall()
    assert calls == [(tool, "ok") for tool in ("read_file", "edit_file", "run_command", "edit_file", "run_command")]
    branch = f"hq/issue-{issue}"
    assert remote_file(remote, "calc.py", branch) == GOOD_MUL  # only the fixed code was committed and pushed
    assert len(remote_log(remote, branch)) == 2

    pushed = remote_rev(remote, branch)
    assert beat(runtime, raw, LEAD, issue) == "approved"
    (review,) = [r["body"] for r in fake.requests if r["body"]["model"] == REVIEWER]
    asked = json.dumps(review["messages"])
    assert "+    return a * b" in asked and "test: passed" in asked  # the diff and the evidence, before any verdict

    assert beat(runtime, raw, DEVOPS, issue) == "done"
    assert remote_file(remote, "calc.py") == GOOD_MUL
    assert remote_log(remote)[0] == f"Merge issue #{issue}: Add mul to calc" and len(merges(remote)) == 1
    assert remote_rev(remote, "main^1") == base and remote_rev(remote, "main^2") == pushed

    ledger = raw.execute(
        "SELECT workflow, model, outcome, count(*), sum(input_tokens), sum(cost_usd) > 0 FROM llm_calls "
        "WHERE issue_id = %s GROUP BY 1, 2, 3 ORDER BY 1",
        (issue,),
    ).fetchall()
    assert [row[:5] for row in ledger] == [
        ("execute", f"anthropic/{WORKER}", "ok", 6, 5 * 400 + 500),
        ("review_gate", f"anthropic/{REVIEWER}", "ok", 1, 10),
    ]
    assert all(row[5] for row in ledger)
    spent = raw.execute("SELECT spent_usd FROM issues WHERE id = %s", (issue,)).fetchone()
    total = raw.execute("SELECT sum(cost_usd) FROM llm_calls WHERE issue_id = %s", (issue,)).fetchone()
    assert spent == total
