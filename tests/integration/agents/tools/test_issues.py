"""Issue 23 item 12: a run cannot mint funded issues, whoever drives it.

Through the real paths: code in the sandbox speaks raw JSON-RPC lines to the
run's MCP socket (no token: dropped before anything is read; with the token:
calls capped per run), and the built-in tool loop dispatches the same calls.
Every sub-issue's budget is carved out of its parent (one compare-and-set) and
what a child leaves unused goes back to the parent exactly once when it ends.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import tempfile
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from agents.tools.context import ToolContext
from agents.tools.dispatch import MAX_ISSUES_CREATED_PER_RUN, MAX_TOOL_CALLS_PER_RUN, dispatch
from config.settings import get_settings
from db.engine import get_engine
from models.router import CallContext, Completion, ToolCallRequest
from runtimes.builtin import run_tool_loop
from runtimes.mcp_tools import ToolServer
from tests.support.cli import run_hq
from tests.support.rows import agent_record, new_issue, one

ATTACK = 40
PARENT_BUDGET = Decimal("0.50")


@pytest.fixture()
def company(db_url: str, raw: psycopg.Connection) -> dict[str, int]:
    assert run_hq("agents", "sync").exit_code == 0
    return dict(raw.execute("SELECT slug, id FROM agents").fetchall())


@pytest.fixture()
def run_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="hq-mint-"))  # short: a socket path has 107 bytes
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def context(slug: str, issue_id: int) -> ToolContext:
    return ToolContext(
        agent=agent_record(slug),
        issue_id=issue_id,
        run_id=uuid.uuid4(),
        workflow="execute",
        settings=get_settings(),
        engine=get_engine(),
    )


def question(n: int) -> dict[str, Any]:
    return {"question": f"Question number {n}: what does competitor {n} charge per seat?"}


def dropped(peer: socket.socket) -> bool:
    try:
        return peer.recv(1) == b""
    except ConnectionResetError:
        return True


def initialize(peer: socket.socket, reader: Any) -> None:
    hello = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}
    peer.sendall(json.dumps({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": hello}).encode() + b"\n")
    assert json.loads(reader.readline())["result"]["serverInfo"]["name"] == "hq"
    peer.sendall(b'{"jsonrpc": "2.0", "method": "notifications/initialized"}\n')


def children(raw: psycopg.Connection, parent: int) -> list[Decimal]:
    return [r[0] for r in raw.execute("SELECT budget_usd FROM issues WHERE parent_id = %s ORDER BY id", (parent,))]


def budget_of(raw: psycopg.Connection, issue: int) -> Decimal:
    return Decimal(one(raw.execute("SELECT budget_usd FROM issues WHERE id = %s", (issue,)).fetchone())[0])


def test_a_peer_without_the_token_is_dropped_before_anything_is_read(
    company: dict[str, int], raw: psycopg.Connection, run_dir: Path
) -> None:
    issue = new_issue(raw, status="todo", assignee_id=company["content-writer"], budget_usd=PARENT_BUDGET)
    path = run_dir / "mcp.sock"
    with ToolServer(context("content-writer", issue), ["ask_research"], path) as server:
        attempts = [
            b'{"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {}}\n',  # no token at all
            b"not-the-token\n",
            server.token.encode()[:-1] + b"\n",  # one character short
            b"x" * 100_000,  # a huge first line: refused by its size, not read whole
        ]
        for data in attempts:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as peer:
                peer.settimeout(10)
                peer.connect(str(path))
                with contextlib.suppress(OSError):  # dropped while still sending: refused all the same
                    peer.sendall(data + b'{"jsonrpc": "2.0", "id": 7, "method": "ping"}\n')
                assert dropped(peer), data[:40]
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as peer, peer.makefile("rb") as reader:
            peer.settimeout(10)
            peer.connect(str(path))
            peer.sendall(server.token.encode() + b"\n")
            initialize(peer, reader)  # the token, and only it, opens the session
    assert raw.execute("SELECT count(*) FROM tool_calls").fetchone() == (0,)
    assert children(raw, issue) == []


def test_forty_ask_research_calls_over_the_socket_are_capped_and_carved_out_of_the_parent(
    company: dict[str, int], raw: psycopg.Connection, run_dir: Path
) -> None:
    issue = new_issue(raw, status="todo", assignee_id=company["content-writer"], budget_usd=PARENT_BUDGET)
    path = run_dir / "mcp.sock"
    with (
        ToolServer(context("content-writer", issue), ["ask_research"], path) as server,
        socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as peer,
        peer.makefile("rb") as reader,
    ):
        peer.settimeout(30)
        peer.connect(str(path))
        peer.sendall(server.token.encode() + b"\n")
        initialize(peer, reader)
        answers: dict[int, dict[str, Any]] = {}
        for n in range(1, ATTACK + 1):
            called = {"name": "ask_research", "arguments": question(n)}
            peer.sendall(json.dumps({"jsonrpc": "2.0", "id": n, "method": "tools/call", "params": called}).encode())
            peer.sendall(b"\n")
            answer = json.loads(reader.readline())
            answers[answer["id"]] = answer["result"]
    made = children(raw, issue)
    assert 0 < len(made) <= MAX_ISSUES_CREATED_PER_RUN
    assert sum(made) <= PARENT_BUDGET
    assert budget_of(raw, issue) + sum(made) == PARENT_BUDGET  # carved, not minted: not a cent more in all
    refused = [a for a in answers.values() if a["isError"]]
    assert len(refused) == ATTACK - len(made)
    assert all(json.loads(a["content"][0]["text"])["outcome"] == "refused" for a in refused)
    rows = raw.execute("SELECT outcome, count(*) FROM tool_calls GROUP BY outcome ORDER BY outcome").fetchall()
    assert rows == [("ok", len(made)), ("refused", ATTACK - len(made))]


def test_forty_ask_research_calls_through_the_builtin_loop_are_capped_and_carved(
    company: dict[str, int], raw: psycopg.Connection
) -> None:
    issue = new_issue(raw, status="todo", assignee_id=company["content-writer"], budget_usd=PARENT_BUDGET)
    ctx = context("content-writer", issue)

    class Attacker:
        """A model that asks forty questions in one turn, then stops."""

        turns = 0

        def complete(self, call: CallContext, tier: str, messages: list[Any], **_: Any) -> Completion:
            self.turns += 1
            requests = [
                ToolCallRequest(id=f"c{n}", name="ask_research", arguments=json.dumps(question(n)))
                for n in range(1, ATTACK + 1)
            ]
            return Completion(
                text="done" if self.turns > 1 else "",
                tool_calls=requests if self.turns == 1 else [],
                finish_reason="stop",
                input_tokens=1,
                output_tokens=1,
                cost_usd=Decimal(0),
                deployment=None,  # type: ignore[arg-type]
                outcome="ok",
                latency_ms=1,
            )

    call = CallContext(run_id=ctx.run_id, workflow="execute", issue_id=issue)
    result = run_tool_loop(Attacker(), call, ctx, tier="execution", system="s", user="u")  # type: ignore[arg-type]
    made = children(raw, issue)
    assert 0 < len(made) <= MAX_ISSUES_CREATED_PER_RUN
    assert budget_of(raw, issue) + sum(made) == PARENT_BUDGET
    assert [r.outcome for r in result.tool_results].count("refused") == ATTACK - len(made)
    assert len(ctx.outcome.research_issue_ids) == len(made)


def test_calls_past_the_run_cap_are_refused_without_a_row(company: dict[str, int], raw: psycopg.Connection) -> None:
    issue = new_issue(raw, status="todo", assignee_id=company["content-writer"], budget_usd=PARENT_BUDGET)
    ctx = context("content-writer", issue)
    outcomes = [
        dispatch(ctx, "comment", {"body": f"note {n}"}, step=n).outcome for n in range(1, MAX_TOOL_CALLS_PER_RUN + 6)
    ]
    assert outcomes[:MAX_TOOL_CALLS_PER_RUN] == ["ok"] * MAX_TOOL_CALLS_PER_RUN
    assert outcomes[MAX_TOOL_CALLS_PER_RUN:] == ["refused"] * 5
    assert raw.execute("SELECT count(*) FROM tool_calls").fetchone() == (MAX_TOOL_CALLS_PER_RUN,)


def test_a_carve_the_parent_cannot_cover_is_refused_to_the_model_and_recorded(
    company: dict[str, int], raw: psycopg.Connection
) -> None:
    issue = new_issue(
        raw, status="todo", assignee_id=company["content-writer"], budget_usd=Decimal("0.50"), spent_usd=0.5
    )
    ctx = context("content-writer", issue)
    refused = dispatch(ctx, "ask_research", question(1), step=1)
    assert refused.outcome == "refused" and "budget" in (refused.error or "")
    assert "budget" in json.loads(refused.for_model())["error"]
    assert children(raw, issue) == []
    assert raw.execute("SELECT tool, outcome FROM tool_calls").fetchall() == [("ask_research", "refused")]
    assert ctx.outcome.research_issue_ids == []


def test_a_sub_issue_is_carved_and_its_unused_budget_returns_exactly_once(
    company: dict[str, int], raw: psycopg.Connection
) -> None:
    parent = new_issue(raw, status="todo", assignee_id=company["eng-lead-platform"], budget_usd=Decimal("2"))
    ctx = context("eng-lead-platform", parent)
    made = dispatch(ctx, "create_subissue", {"title": "Part", "assignee": "data-engineer", "budget_usd": 0.8}, step=1)
    assert made.ok, made.error
    child = made.result["issue_id"]  # type: ignore[index]
    assert (budget_of(raw, parent), budget_of(raw, child)) == (Decimal("1.2"), Decimal("0.8"))
    too_much = dispatch(
        ctx, "create_subissue", {"title": "Big", "assignee": "data-engineer", "budget_usd": 1.5}, step=2
    )
    assert too_much.outcome == "refused"
    raw.execute("UPDATE issues SET spent_usd = 0.123456 WHERE id = %s", (child,))  # what its calls cost
    raw.execute("UPDATE issues SET status = 'cancelled' WHERE id = %s", (child,))
    # What was unused, to the cent, is the parent's again; the child keeps what it spent (and the sub-cent rest).
    assert budget_of(raw, parent) == Decimal("1.2") + Decimal("0.67")
    assert budget_of(raw, child) == Decimal("0.13")
    raw.execute("UPDATE issues SET priority = 1, budget_usd = budget_usd WHERE id = %s", (child,))  # touched again
    assert budget_of(raw, parent) == Decimal("1.87")
    assert raw.execute(
        "SELECT amount_usd, returned_usd FROM budget_carves WHERE child_id = %s", (child,)
    ).fetchone() == (
        Decimal("0.8"),
        Decimal("0.67"),
    )
