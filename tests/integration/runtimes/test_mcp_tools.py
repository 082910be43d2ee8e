"""HQ's tools over MCP: the SDK's real client, through the real bridge process, into the dispatcher.

What the CLI would see is checked end to end (stdio client -> mcp_bridge.py ->
Unix socket -> ToolServer -> dispatch -> PostgreSQL); hostile peers speak raw
bytes to the socket, as code in the sandbox could.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import anyio
import psycopg
import pytest
from mcp import ClientSession, types
from mcp.client.stdio import StdioServerParameters, stdio_client

from agents.tools.catalog import get_tool
from agents.tools.context import ToolContext
from agents.tools.dispatch import ToolResult, dispatch
from config.settings import get_settings
from db.engine import get_engine
from runtimes import mcp_tools
from runtimes.mcp_tools import (
    BRIDGE_PATH,
    MAX_CONNECTIONS,
    MAX_IN_FLIGHT,
    MAX_LINE_BYTES,
    TOKEN_ENV,
    ToolServer,
)
from tests.support.rows import agent_record, new_issue, seed_agents

OFFERED = ("comment", "mark_blocked", "create_subissue", "no_such_tool")
"""dev (toolsets issues, workspace) is offered two of its tools, one outside its toolsets, and one that is no tool."""

T = TypeVar("T")

TOKENS: dict[str, str] = {}
"""Each served socket's token, as the CLI would hold it: a legitimate peer presents it first."""


@contextlib.contextmanager
def serving(ctx: ToolContext, names: Any, path: Path, **options: Any) -> Iterator[ToolServer]:
    with ToolServer(ctx, names, path, **options) as server:
        TOKENS[str(path)] = server.token
        try:
            yield server
        finally:
            TOKENS.pop(str(path), None)


def connect(peer: socket.socket, path: Path) -> None:
    """Connect as the bridge does: the run's token first."""
    peer.connect(str(path))
    peer.sendall(TOKENS[str(path)].encode() + b"\n")


@dataclass
class Served:
    server: ToolServer
    ctx: ToolContext
    issue: int
    socket: Path


@pytest.fixture()
def run_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="hq-mcp-"))  # short: a socket path has 107 bytes
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def tool_context(raw: psycopg.Connection, slug: str = "dev") -> tuple[ToolContext, int]:
    issue = new_issue(raw, status="todo", assignee_id=seed_agents(raw)[slug])
    ctx = ToolContext(
        agent=agent_record(slug),
        issue_id=issue,
        run_id=uuid.uuid4(),
        workflow="execute",
        settings=get_settings(),
        engine=get_engine(),
    )
    return ctx, issue


@pytest.fixture()
def served(db_url: str, raw: psycopg.Connection, run_dir: Path) -> Iterator[Served]:
    ctx, issue = tool_context(raw)
    path = run_dir / "mcp.sock"
    with serving(ctx, OFFERED, path, first_step=5) as server:
        yield Served(server, ctx, issue, path)


def with_client(path: Path, work: Callable[[ClientSession], Awaitable[T]]) -> T:
    """Run ``work`` in an initialized session of the SDK's stdio client, spawning the bridge as the CLI would."""

    async def session() -> T:
        env = {"PATH": os.environ.get("PATH", ""), TOKEN_ENV: TOKENS[str(path)]}
        params = StdioServerParameters(command=sys.executable, args=[str(BRIDGE_PATH), str(path)], env=env)
        with tempfile.TemporaryFile("w+") as errlog:
            async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write) as client:
                await client.initialize()
                return await work(client)

    return anyio.run(session)


def call(path: Path, name: str, arguments: dict[str, Any]) -> types.CallToolResult:
    async def work(client: ClientSession) -> types.CallToolResult:
        return await client.call_tool(name, arguments)

    return with_client(path, work)


def text_of(result: types.CallToolResult) -> str:
    assert len(result.content) == 1
    content = result.content[0]
    assert isinstance(content, types.TextContent)
    return content.text


def tool_rows(raw: psycopg.Connection) -> list[tuple[Any, ...]]:
    return raw.execute("SELECT run_id, step, tool, outcome, error FROM tool_calls ORDER BY step").fetchall()


def answers_ping(path: Path) -> bool:
    """Whether the server takes a connection and answers on it (a ping needs no initialization)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as peer:
        peer.settimeout(5)
        try:
            connect(peer, path)
            peer.sendall(b'{"jsonrpc": "2.0", "id": 7, "method": "ping"}\n')
            with peer.makefile("rb") as reader:  # closed, so the socket really closes with its `with`
                line = reader.readline()
        except OSError:
            return False
    return bool(line) and json.loads(line) == {"jsonrpc": "2.0", "id": 7, "result": {}}


def dropped(peer: socket.socket) -> bool:
    """Whether the server closed this connection (it sends nothing to a peer it drops)."""
    try:
        return peer.recv(1) == b""
    except ConnectionResetError:
        return True


def test_lists_exactly_the_offered_tools_with_their_schemas(served: Served) -> None:
    async def work(client: ClientSession) -> types.ListToolsResult:
        return await client.list_tools()

    listed = with_client(served.socket, work)
    assert [t.name for t in listed.tools] == ["comment", "mark_blocked", "create_subissue"]
    for listed_tool in listed.tools:
        tool = get_tool(listed_tool.name)
        assert tool is not None
        schema = tool.args.model_json_schema()
        schema.pop("title")
        assert listed_tool.inputSchema == schema
        assert listed_tool.description == tool.description
    assert listed.tools[0].inputSchema["required"] == ["body"]
    assert stat.S_IMODE(os.stat(served.socket).st_mode) == 0o600


def test_a_call_goes_through_dispatch_with_its_own_step(served: Served, raw: psycopg.Connection) -> None:
    async def work(client: ClientSession) -> list[types.CallToolResult]:
        first = await client.call_tool("comment", {"body": "Reproduced on staging."})
        results: list[types.CallToolResult] = [first]

        async def another(body: str) -> None:
            results.append(await client.call_tool("comment", {"body": body}))

        async with anyio.create_task_group() as group:  # the CLI may call in parallel: each call its own step
            group.start_soon(another, "Second look.")
            group.start_soon(another, "Third look.")
        return results

    results = with_client(served.socket, work)
    assert [r.isError for r in results] == [False, False, False]
    first = json.loads(text_of(results[0]))
    assert first["issue_id"] == served.issue
    bodies = raw.execute("SELECT body FROM comments WHERE issue_id = %s ORDER BY id", (served.issue,)).fetchall()
    assert sorted(b[0] for b in bodies) == ["Reproduced on staging.", "Second look.", "Third look."]
    rows = tool_rows(raw)
    assert rows[0] == (served.ctx.run_id, 5, "comment", "ok", None)
    assert [(r[1], r[2], r[3]) for r in rows] == [(5, "comment", "ok"), (6, "comment", "ok"), (7, "comment", "ok")]
    calls = served.server.calls
    assert [c.outcome for c in calls] == ["ok", "ok", "ok"]
    assert calls[0].for_model() == text_of(results[0])


def test_mark_blocked_decides_for_the_run(served: Served, raw: psycopg.Connection) -> None:
    result = call(served.socket, "mark_blocked", {"reason": "Need staging credentials"})
    assert not result.isError
    assert served.ctx.outcome.blocked_reason == "Need staging credentials"
    assert [(r[2], r[3]) for r in tool_rows(raw)] == [("mark_blocked", "ok")]


def test_a_tool_not_offered_is_refused_before_dispatch(served: Served, raw: psycopg.Connection) -> None:
    result = call(served.socket, "write_file", {"path": "x.txt", "content": "owned"})  # dev's, but not offered
    assert result.isError
    assert "no tool named 'write_file'" in text_of(result)
    assert tool_rows(raw) == []
    assert served.server.calls == []


def test_an_offered_tool_outside_the_toolsets_is_refused_by_dispatch(served: Served, raw: psycopg.Connection) -> None:
    result = call(served.socket, "create_subissue", {"title": "x", "assignee": "boss"})
    assert result.isError
    assert json.loads(text_of(result)) == {
        "error": "create_subissue belongs to the 'delegate' toolset, which dev does not have",
        "outcome": "refused",
    }
    assert [(r[1], r[2], r[3]) for r in tool_rows(raw)] == [(5, "create_subissue", "refused")]
    missing = call(served.socket, "no_such_tool", {})
    assert missing.isError and json.loads(text_of(missing))["outcome"] == "refused"
    assert [c.outcome for c in served.server.calls] == ["refused", "refused"]


def test_invalid_arguments_are_an_audited_error(served: Served, raw: psycopg.Connection) -> None:
    async def work(client: ClientSession) -> list[types.CallToolResult]:
        return [
            await client.call_tool("comment", {"body": ""}),
            await client.call_tool("comment", {}),
            await client.call_tool("mark_blocked", {"reason": ["not", "text"]}),
        ]

    results = with_client(served.socket, work)
    assert [r.isError for r in results] == [True, True, True]
    assert all(json.loads(text_of(r))["outcome"] == "invalid" for r in results)
    assert "body" in text_of(results[1])
    assert [(r[1], r[3]) for r in tool_rows(raw)] == [(5, "invalid"), (6, "invalid"), (7, "invalid")]
    assert served.ctx.outcome.blocked is None


def test_hostile_bytes_drop_only_their_connection(served: Served, raw: psycopg.Connection) -> None:
    hostile = [
        b"\x00\xff garbage that is not json\n",
        b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": \n',
        b"[" * 200_000 + b"]" * 200_000 + b"\n",  # nested past any parser's depth
        b'"just a string"\n',
    ]
    for data in hostile:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as peer:
            peer.settimeout(5)
            connect(peer, served.socket)
            peer.sendall(data)
            assert dropped(peer), data[:40]
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as peer:
        peer.settimeout(5)
        connect(peer, served.socket)
        with contextlib.suppress(OSError):  # the server stops reading past the limit: the rest may not go through
            peer.sendall(b"a" * (MAX_LINE_BYTES + 2))
        assert dropped(peer)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as peer:  # well-formed nonsense is answered, not fatal
        peer.settimeout(5)
        connect(peer, served.socket)
        peer.sendall(
            b'{"jsonrpc": "2.0", "id": 1, "method": "evil/method", "params": {}}\n'
            b'{"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "comment", "arguments": {}}}\n'
            b'{"jsonrpc": "2.0", "id": 99, "result": {}}\n'
            b'{"jsonrpc": "2.0", "id": 3, "method": "ping"}\n'
        )
        answers: dict[int, dict[str, Any]] = {}
        with peer.makefile("rb") as lines:
            while len(answers) < 3:
                message = json.loads(lines.readline())
                if "id" in message:
                    answers[message["id"]] = message
        assert answers[1]["error"]["code"] == types.INVALID_PARAMS
        assert "error" in answers[2]  # a call before initialization is refused by the SDK
        assert answers[3]["result"] == {}
    assert tool_rows(raw) == []
    result = call(served.socket, "comment", {"body": "Still here."})
    assert not result.isError
    assert [(r[2], r[3]) for r in tool_rows(raw)] == [("comment", "ok")]


def raw_call(path: Path, name: str, arguments: dict[str, Any]) -> socket.socket:
    """A peer that initializes by hand, sends one tool call and returns without reading its answer."""
    peer = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    peer.settimeout(5)
    connect(peer, path)
    hello = {
        "protocolVersion": types.LATEST_PROTOCOL_VERSION,
        "capabilities": {},
        "clientInfo": {"name": "t", "version": "0"},
    }
    peer.sendall(json.dumps({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": hello}).encode() + b"\n")
    with peer.makefile("rb") as reader:
        assert json.loads(reader.readline())["result"]["serverInfo"]["name"] == "hq"
    called = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": name, "arguments": arguments}}
    peer.sendall(b'{"jsonrpc": "2.0", "method": "notifications/initialized"}\n' + json.dumps(called).encode() + b"\n")
    return peer


def test_requests_beyond_the_in_flight_limit_wait_and_are_all_answered(served: Served) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as peer:
        peer.settimeout(5)
        connect(peer, served.socket)
        count = MAX_IN_FLIGHT * 3
        peer.sendall(b"".join(b'{"jsonrpc": "2.0", "id": %d, "method": "ping"}\n' % n for n in range(count)))
        with peer.makefile("rb") as lines:
            assert sorted(json.loads(lines.readline())["id"] for _ in range(count)) == list(range(count))


def test_a_call_in_flight_is_finished_and_recorded(
    db_url: str, raw: psycopg.Connection, run_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = threading.Event()

    def slow(ctx: ToolContext, name: str, arguments: dict[str, Any], *, step: int) -> ToolResult:
        started.set()
        time.sleep(0.5)
        return dispatch(ctx, name, arguments, step=step)

    monkeypatch.setattr(mcp_tools, "dispatch", slow)
    ctx, _ = tool_context(raw)
    path = run_dir / "mcp.sock"
    with serving(ctx, ["comment", "mark_blocked"], path) as server:
        raw_call(path, "comment", {"body": "Left before the answer."}).close()  # the CLI killed mid-call
        assert started.wait(5)
        deadline = time.monotonic() + 5
        while not server.calls:
            assert time.monotonic() < deadline, "the call was not recorded"
            time.sleep(0.05)
        started.clear()
        peer = raw_call(path, "mark_blocked", {"reason": "Stopped mid-call"})
        assert started.wait(5)
    peer.close()
    assert [(c.name, c.outcome) for c in server.calls] == [("comment", "ok"), ("mark_blocked", "ok")]
    assert ctx.outcome.blocked_reason == "Stopped mid-call"  # exit waited: the decision is there when it returns
    assert [(r[1], r[2], r[3]) for r in tool_rows(raw)] == [(1, "comment", "ok"), (2, "mark_blocked", "ok")]


def test_connections_beyond_the_limit_are_closed(served: Served) -> None:
    idle = [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(MAX_CONNECTIONS)]
    try:
        for peer in idle:
            peer.settimeout(5)
            connect(peer, served.socket)
        assert answers_ping(served.socket) is False
    finally:
        for peer in idle:
            peer.close()
    deadline = time.monotonic() + 5  # the server notices the idle ones leave on its own time
    while not answers_ping(served.socket):
        assert time.monotonic() < deadline, "the server did not take connections again"
        time.sleep(0.05)
    assert not call(served.socket, "comment", {"body": "Back again."}).isError


def test_exit_removes_the_socket_and_the_bridge_says_why_it_cannot_connect(
    db_url: str, raw: psycopg.Connection, run_dir: Path
) -> None:
    ctx, _ = tool_context(raw)
    path = run_dir / "mcp.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as peer:
        peer.settimeout(5)
        with ToolServer(ctx, ["comment"], path):
            assert path.is_socket()
            peer.connect(str(path))  # an open connection does not hold exit up
            started = time.monotonic()
        assert time.monotonic() - started < 5
        assert dropped(peer)
    assert not path.exists()
    bridge = subprocess.run(
        [sys.executable, str(BRIDGE_PATH), str(path)],
        env={TOKEN_ENV: "a token"},
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    assert bridge.returncode == 1
    assert bridge.stdout == ""
    assert bridge.stderr.count("\n") == 1 and "cannot connect" in bridge.stderr
