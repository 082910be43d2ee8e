"""A role on Claude Code ships a project issue: the real CLI edits, HQ keeps the sandbox, the wallet and the state.

The pinned CLI runs in the issue's worktree inside bubblewrap, its only model HQ's gateway on a
bind-mounted socket; the gateway forwards to the fake Anthropic server with HQ's key. The engineer's
CLI reads, edits and tests through its own tools and calls HQ's tools over MCP; its lead (HQ's own
loop) reviews with the gate's evidence, and devops merges. Git, the sandbox and PostgreSQL are real.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from config.settings import load_settings
from scheduler.company import Company
from scheduler.heartbeat import BeatContext
from tests.fakes.anthropic_server import FakeAnthropic, Reply
from tests.support.claude_code import (
    MAX_TOKENS,
    PROVIDER_KEY,
    REVIEWER,
    WORKER,
    calls,
    coding_roles,
    dumps,
    models_file,
    needs_node,
    require_cli,
    usage_cost,
    use,
    worker_requests,
)
from tests.support.cli import run_hq
from tests.support.projects import (
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
    tool_result_texts,
)
from tests.support.rows import one

pytestmark = [pytest.mark.usefixtures("db_url"), needs_bwrap, needs_node]

MUL = "    return a + b\n\n\ndef mul(a, b):\n    return a * b\n"
PROBE = (
    "import socket\n"
    "for host, port in (('127.0.0.1', {port}), ('10.0.2.2', 80), ('1.1.1.1', 443)):\n"
    "    try:\n"
    "        socket.create_connection((host, port), 2)\n"
    "        print('REACHED', host)\n"
    "    except OSError as error:\n"
    "        print('UNREACHABLE', host, type(error).__name__)\n"
)


@pytest.fixture()
def fake() -> Iterator[FakeAnthropic]:
    server = FakeAnthropic().start()
    server.required_key = PROVIDER_KEY  # a request with any other credential is refused, and recorded
    yield server
    server.stop()


@pytest.fixture()
def runtime(db_url: str, fake: FakeAnthropic, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> BeatContext:
    require_cli()
    monkeypatch.setenv("HQ_ROLES_DIR", str(coding_roles(tmp_path, ENGINEER)))
    monkeypatch.setenv("ANTHROPIC_API_KEY", PROVIDER_KEY)
    monkeypatch.setenv("HQ_MODELS_FILE", str(models_file(tmp_path, fake)))
    assert run_hq("agents", "sync").exit_code == 0
    return Company(load_settings(), threads=1).runtime


def test_claude_code_edits_tests_and_ships_a_project_issue(
    runtime: BeatContext, fake: FakeAnthropic, raw: psycopg.Connection, tmp_path: Path
) -> None:
    remote = make_remote(tmp_path)
    project = add_project(raw, remote)
    issue = project_issue(raw, project, "Add mul to calc", "calc needs mul(a, b); test_calc.py already tests it.")
    port = int(fake.url.rsplit(":", 1)[1])
    script = [
        use("Read", file_path="/workspace/calc.py"),
        Reply(
            text="",
            tool_calls=[
                {
                    "name": "Edit",
                    "input": {"file_path": "/workspace/calc.py", "old_string": "    return a + b\n", "new_string": MUL},
                }
            ],
            input_tokens=300,
            output_tokens=80,
            cache_creation_input_tokens=1200,
        ),
        use("Bash", command="python3 -m unittest -q 2>&1 | tail -3", description="run the tests"),
        use("mcp__hq__run_command", name="test"),
        use("mcp__hq__comment", body="mul(a, b) added; the gate passes."),
        use("Bash", command=f'python3 -c "{PROBE.format(port=port)}"', description="probe the network"),
        Reply(text="DONE: added mul to calc.py; the tests pass.", input_tokens=40, output_tokens=20),
    ]
    for index, reply in enumerate(script[2:], start=2):  # later turns read the cached prefix
        reply.cache_read_input_tokens = 1000 + index
    fake.script(WORKER, *script)
    fake.script(REVIEWER, Reply(text='{"score": 0.9, "passed": true, "notes": ["mul is tested and correct"]}'))

    assert beat(runtime, raw, ENGINEER, issue) == "in_review", dumps(
        raw.execute("SELECT kind, body FROM comments WHERE issue_id = %s", (issue,)).fetchall()
    )
    requests = worker_requests(fake)
    assert len(requests) == len(script)
    first = requests[0]["body"]
    assert "TASK: execute" in dumps(first["messages"]) and "Add mul to calc" in dumps(first["messages"])
    assert "You are Backend Engineer (backend-engineer)" in json.dumps(first["system"])  # AGENTS.md, appended
    assert first["max_tokens"] <= MAX_TOKENS
    assert fake.keys_seen() == {PROVIDER_KEY}  # every upstream request carried HQ's key, none the CLI's token

    # What the CLI's tools saw: the file, the green tests (its Bash, in the sandbox), HQ's gate over MCP,
    # and no network but the gateway's socket: not the fake's port on the host's loopback, nothing else.
    results = tool_result_texts(requests[-1]["body"])
    assert "def add(a, b)" in results[0]
    assert "OK" in results[2]
    assert '"exit_code": 0' in results[3] and "OK" in results[3]
    assert "REACHED" not in results[5] and results[5].count("UNREACHABLE") == 3, results[5]
    offered = {tool["name"] for tool in requests[0]["body"]["tools"]}
    assert {"Read", "Edit", "Write", "Bash", "mcp__hq__comment", "mcp__hq__run_command"} <= offered
    assert not {"WebFetch", "WebSearch", "mcp__hq__read_file", "mcp__hq__edit_file"} & offered

    # HQ's tools went through its dispatcher: audited like the built-in loop's.
    audited = raw.execute("SELECT tool, outcome FROM tool_calls WHERE issue_id = %s ORDER BY step", (issue,)).fetchall()
    assert audited == [("run_command", "ok"), ("comment", "ok")]
    assert raw.execute(
        "SELECT count(*) FROM comments WHERE issue_id = %s AND body = 'mul(a, b) added; the gate passes.'", (issue,)
    ).fetchone() == (1,)

    # The ledger: one row per upstream call, each at the provider's usage x price, cache tokens included.
    rows = calls(raw, issue)
    assert [row[:6] for row in rows] == [
        (
            "ok",
            f"anthropic/{WORKER}",
            r.input_tokens,
            r.output_tokens,
            r.cache_creation_input_tokens,
            r.cache_read_input_tokens,
        )
        for r in script
    ]
    assert [row[6] for row in rows] == [usage_cost(r) for r in script]
    spent, reserved = one(raw.execute("SELECT spent_usd, reserved_usd FROM issues WHERE id = %s", (issue,)).fetchone())
    assert spent == sum((usage_cost(r) for r in script), Decimal(0)) and reserved == 0

    branch = f"hq/issue-{issue}"
    assert remote_file(remote, "calc.py", branch) == GOOD_MUL
    assert beat(runtime, raw, LEAD, issue) == "approved"
    assert beat(runtime, raw, DEVOPS, issue) == "done"
    assert remote_file(remote, "calc.py") == GOOD_MUL
    assert remote_log(remote)[0] == f"Merge issue #{issue}: Add mul to calc" and len(merges(remote)) == 1


def test_an_issue_whose_budget_cannot_cover_the_next_call_is_blocked(
    runtime: BeatContext, fake: FakeAnthropic, raw: psycopg.Connection, tmp_path: Path
) -> None:
    project = add_project(raw, make_remote(tmp_path))
    issue = project_issue(raw, project, "Add mul to calc", "calc needs mul(a, b).")
    raw.execute("UPDATE issues SET budget_usd = 0.2 WHERE id = %s", (issue,))
    # The first answer costs more than its reservation (the provider says so): the next cannot be covered.
    fake.script(WORKER, Reply(text="", tool_calls=[{"name": "Read", "input": {"file_path": "/workspace/calc.py"}}],
                              input_tokens=40_000, output_tokens=100))  # fmt: skip
    fake.default(WORKER, Reply(text="DONE"))

    assert beat(runtime, raw, ENGINEER, issue) == "blocked"
    reason, spent, budget, reserved = one(
        raw.execute("SELECT blocked_reason, spent_usd, budget_usd, reserved_usd FROM issues WHERE id = %s", (issue,))
        .fetchone()
    )  # fmt: skip
    assert reason == "budget" and spent <= budget and reserved == 0
    assert len(worker_requests(fake)) == 1  # the refused call never left HQ
    outcomes = [row[0] for row in calls(raw, issue)]
    assert outcomes == ["ok", "budget_refused"]
    assert raw.execute(
        "SELECT count(*) FROM approvals WHERE issue_id = %s AND kind = 'budget' AND status = 'pending'", (issue,)
    ).fetchone() == (1,)
