"""HQ's issue tools as an MCP server bound to one run, on a Unix socket its sandbox sees.

An external coding agent (the Claude Code CLI) must reach HQ's own tools —
comment, mark_blocked, ask_research, run_command, ... — through the same
dispatcher as the built-in loop, so the toolset check, argument validation,
``tool_calls`` row and decisions (``ToolContext.outcome``) are the same whoever
drives the run. The CLI starts its MCP servers as child processes inside the
sandbox, which cannot reach the database; so the server lives here, in HQ, and
the CLI starts the stdlib-only bridge (mcp_bridge.py, at ``BRIDGE_PATH``) that
copies its stdio onto this socket.

The peer is untrusted: the sandbox runs code the model wrote, and that code can
connect too. So the socket is 0600 in a directory only this run mounts; a
connection must first present the run's token (``token``, made per server like
the gateway's: the CLI holds it in ``TOKEN_ENV`` and its MCP child, the bridge,
sends it as its first line), compared in constant time: a peer that sends
anything else, more than ``TOKEN_LINE_BYTES`` before a newline, or nothing for
``AUTH_SECONDS`` is dropped before anything else it sent is read. A line
is at most ``MAX_LINE_BYTES`` (beyond it, or on anything that is not JSON-RPC,
the connection is dropped); at most ``MAX_CONNECTIONS`` connections are served
at once and ``MAX_IN_FLIGHT`` requests each; only the offered tools are called;
tool calls run one at a time, as in the built-in loop, since a ToolContext (its
outcome, its worktree) is not made for concurrent tools; and the dispatcher caps
the calls of a run, tighter for tools that open issues, whose budgets are
carved out of the run's issue (agents/tools/dispatch.py). Nothing a peer sends
can stop the server for the others or hold up HQ past ``STOP_SECONDS``.

The mcp SDK costs ~0.4 s to import, so it is loaded when a server starts, not
when this module is imported.
"""

from __future__ import annotations

import contextlib
import hmac
import os
import secrets
import socket
import threading
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
import anyio.to_thread
from anyio.streams.buffered import BufferedByteReceiveStream
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from agents.tools.catalog import get_tool
from agents.tools.context import ToolContext
from agents.tools.dispatch import ToolResult, dispatch
from config.log import get_logger

if TYPE_CHECKING:
    from mcp import types
    from mcp.server.lowlevel import Server
    from mcp.server.models import InitializationOptions
    from mcp.shared.message import SessionMessage

BRIDGE_PATH = Path(__file__).resolve().with_name("mcp_bridge.py")
"""The bridge the CLI runs in the sandbox (mounted read-only): stdio in, this server's socket out."""
SERVER_NAME = "hq"
MAX_LINE_BYTES = 1024 * 1024  # the largest tool call HQ takes (write_file's 1 MiB is its own limit, checked later)
MAX_CONNECTIONS = 4  # the CLI needs one; a few more let it reconnect while a stale one is still closing
MAX_IN_FLIGHT = 8  # requests read but not yet answered, per connection: the rest wait in the socket
TOKEN_ENV = "HQ_MCP_TOKEN"  # the bridge's own name for it (mcp_bridge.py): the CLI passes its environment on
TOKEN_LINE_BYTES = 128  # a token is 43 characters: nothing larger is read from a peer that has not shown it
AUTH_SECONDS = 5.0  # the bridge sends the token as soon as it connects
START_SECONDS = 5.0
STOP_SECONDS = 10.0  # how long exit waits for a tool call in flight and the server's thread
NAME_SHOWN = 100  # characters of a peer-chosen tool name kept in answers and logs

log = get_logger(__name__)

_DISCONNECTED = (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)


def mcp_config(command: str, bridge_path: str, socket_path: str) -> dict[str, Any]:
    """Claude Code's ``--mcp-config`` object: one stdio server, the bridge, run by ``command`` (a python3)."""
    return {"mcpServers": {SERVER_NAME: {"type": "stdio", "command": command, "args": [bridge_path, socket_path]}}}


class ToolServer:
    """A context manager: serving ``names`` for ``tool_ctx`` on ``socket_path`` inside it, gone after.

    ``socket_path``'s directory is the caller's (a private one: the socket's
    0600 mode is set after it is bound). Steps count from ``first_step``, one
    per dispatched call, so each call has its own ``tool_calls`` row keyed
    ``run_id:step``; ``calls`` holds what dispatch answered, in step order (a
    name not offered is refused here, without a step, a row or an entry).
    """

    def __init__(self, tool_ctx: ToolContext, names: Sequence[str], socket_path: Path, *, first_step: int = 1) -> None:
        self.tool_ctx = tool_ctx
        self.token = secrets.token_urlsafe(32)
        self.names = tuple(dict.fromkeys(names))
        self.socket_path = socket_path
        self._next_step = first_step
        self._calls: list[ToolResult] = []
        self._lock = threading.Lock()  # steps and calls
        self._dispatching = threading.Lock()  # one tool call at a time
        self._log = log.bind(
            agent=tool_ctx.agent.slug,
            issue_id=tool_ctx.issue_id,
            run_id=str(tool_ctx.run_id),
            workflow=tool_ctx.workflow,
        )
        self._listener: socket.socket | None = None
        self._wake: tuple[socket.socket, socket.socket] | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()  # set once the loop serves, or has failed to
        self._serving = False
        self._closing = False
        self._active = 0  # connections being served (only the server's thread touches it)

    @property
    def calls(self) -> list[ToolResult]:
        """What was dispatched so far (a copy: the server's thread may be adding to it)."""
        with self._lock:
            return list(self._calls)

    def __enter__(self) -> ToolServer:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.socket_path.unlink(missing_ok=True)
            listener.bind(str(self.socket_path))
            os.chmod(self.socket_path, 0o600)
            listener.listen(MAX_CONNECTIONS * 2)
        except BaseException:
            listener.close()
            raise
        self._listener = listener  # listening now: a client connecting before the loop runs waits in the backlog
        self._wake = socket.socketpair()
        self._thread = threading.Thread(target=self._run, name="hq-mcp-tools", daemon=True)
        self._thread.start()
        if not self._ready.wait(START_SECONDS) or not self._serving:
            self._stop()
            raise RuntimeError("the MCP tool server did not start")
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._stop()

    def _stop(self) -> None:
        with self._lock:
            self._closing = True  # a call still queued behind the one in flight is not made
        if self._wake is not None:
            with contextlib.suppress(OSError):
                self._wake[1].send(b"x")
        if self._dispatching.acquire(timeout=STOP_SECONDS):  # the call in flight ends: calls and outcome are final
            self._dispatching.release()
        else:
            self._log.warning("tool_server.call_still_running")
        if self._thread is not None:
            self._thread.join(STOP_SECONDS)
            if self._thread.is_alive():
                self._log.warning("tool_server.thread_still_running")
        if self._listener is not None:
            self._listener.close()  # already closed by the loop, unless it never ran
        if self._wake is not None:
            for end in self._wake:
                end.close()
        self.socket_path.unlink(missing_ok=True)

    # -- the server's thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            anyio.run(self._serve, backend="asyncio")
        except Exception:
            self._log.exception("tool_server.crashed")
        finally:
            self._ready.set()

    async def _serve(self) -> None:
        assert self._listener is not None and self._wake is not None
        server = self._mcp_server()
        options = server.create_initialization_options()
        listener = await anyio.abc.SocketListener.from_socket(self._listener)
        async with listener, anyio.create_task_group() as group:
            group.start_soon(self._accept, listener, server, options, group)
            self._serving = True
            self._ready.set()
            await anyio.wait_readable(self._wake[0])
            await listener.aclose()  # no new connection from here on, even while a call finishes
            group.cancel_scope.cancel()

    async def _accept(
        self,
        listener: anyio.abc.SocketListener,
        server: Server[Any, Any],
        options: InitializationOptions,
        group: anyio.abc.TaskGroup,
    ) -> None:
        while True:
            try:
                stream = await listener.accept()
            except anyio.ClosedResourceError:
                return
            except OSError as error:  # out of file descriptors, say: try again rather than stop serving
                self._log.warning("tool_server.accept_failed", error=str(error))
                await anyio.sleep(0.1)
                continue
            if self._active >= MAX_CONNECTIONS:
                self._log.warning("tool_server.too_many_connections", limit=MAX_CONNECTIONS)
                await stream.aclose()
                continue
            self._active += 1
            group.start_soon(self._connection, stream, server, options)

    async def _connection(
        self, stream: anyio.abc.SocketStream, server: Server[Any, Any], options: InitializationOptions
    ) -> None:
        """One MCP session; whatever goes wrong in it ends it alone."""
        from mcp.shared.message import SessionMessage

        try:
            async with stream:
                buffered = BufferedByteReceiveStream(stream)
                if not await self._authenticated(buffered):
                    return
                incoming_w, incoming_r = anyio.create_memory_object_stream[SessionMessage | Exception](0)
                outgoing_w, outgoing_r = anyio.create_memory_object_stream[SessionMessage](0)
                in_flight = anyio.Semaphore(MAX_IN_FLIGHT)
                async with anyio.create_task_group() as group:
                    group.start_soon(self._read, buffered, incoming_w, in_flight)
                    group.start_soon(self._write, stream, outgoing_r, in_flight)
                    try:
                        await server.run(incoming_r, outgoing_w, options)
                    except* _DISCONNECTED:
                        pass  # the peer left with a call in flight: its answer has nowhere to go
                    group.cancel_scope.cancel()
        except Exception:
            self._log.exception("tool_server.connection_failed")
        finally:
            self._active -= 1

    async def _authenticated(self, buffered: BufferedByteReceiveStream) -> bool:
        """Whether the peer's first line is this run's token (a bounded read, a bounded wait)."""
        line = b""
        with anyio.move_on_after(AUTH_SECONDS):
            try:
                line = await buffered.receive_until(b"\n", TOKEN_LINE_BYTES)
            except (anyio.IncompleteRead, anyio.DelimiterNotFound, *_DISCONNECTED):
                pass
        if hmac.compare_digest(line, self.token.encode()):
            return True
        self._log.warning("tool_server.unauthenticated", size=len(line))
        return False

    async def _read(
        self,
        buffered: BufferedByteReceiveStream,
        sink: MemoryObjectSendStream[SessionMessage | Exception],
        in_flight: anyio.Semaphore,
    ) -> None:
        """Lines to messages until the peer ends, sends a line too long, or sends what is not JSON-RPC."""
        from mcp import types
        from mcp.shared.message import SessionMessage

        async with sink:
            while True:
                try:
                    line = await buffered.receive_until(b"\n", MAX_LINE_BYTES)
                except anyio.IncompleteRead:
                    return  # the peer is done (a last line without its newline is not a message)
                except anyio.DelimiterNotFound:
                    self._log.warning("tool_server.line_too_long", limit=MAX_LINE_BYTES)
                    return
                except _DISCONNECTED:
                    return
                if len(line) > MAX_LINE_BYTES:  # the buffer reads ahead: a line may end just past the limit
                    self._log.warning("tool_server.line_too_long", limit=MAX_LINE_BYTES)
                    return
                if not line.strip():
                    continue
                try:
                    message = types.JSONRPCMessage.model_validate_json(line)
                except ValueError:
                    self._log.warning("tool_server.not_json_rpc", size=len(line))
                    return
                if isinstance(message.root, types.JSONRPCRequest):
                    await in_flight.acquire()
                try:
                    await sink.send(SessionMessage(message))
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    return

    async def _write(
        self,
        stream: anyio.abc.SocketStream,
        source: MemoryObjectReceiveStream[SessionMessage],
        in_flight: anyio.Semaphore,
    ) -> None:
        from mcp import types

        async with source:
            async for message in source:
                data = message.message.model_dump_json(by_alias=True, exclude_none=True)
                try:
                    await stream.send(data.encode() + b"\n")
                except _DISCONNECTED:
                    return
                if isinstance(message.message.root, types.JSONRPCResponse | types.JSONRPCError):
                    in_flight.release()

    def _mcp_server(self) -> Server[Any, Any]:
        from mcp import types
        from mcp.server.lowlevel import Server

        listed: list[types.Tool] = []
        for name in self.names:
            tool = get_tool(name)
            if tool is None:
                self._log.warning("tool_server.no_such_tool", tool=name)
                continue
            parameters = tool.schema()["function"]["parameters"]  # what the built-in loop sends, title removed
            listed.append(types.Tool(name=tool.name, description=tool.description, inputSchema=parameters))
        offered = frozenset(self.names)
        server: Server[Any, Any] = Server(SERVER_NAME)

        @server.list_tools()
        async def list_tools() -> list[types.Tool]:
            return listed

        # Not the SDK's JSON-schema check: the tool's pydantic model decides, in dispatch, with an audit row.
        @server.call_tool(validate_input=False)
        async def call_tool(name: str, arguments: dict[str, Any]) -> types.CallToolResult:
            shown = name[:NAME_SHOWN]
            if name not in offered:
                self._log.warning("tool_server.not_offered", tool=shown)
                return _answer(f"there is no tool named {shown!r} here", error=True)
            try:
                # Abandoned if the peer cancels or HQ stops: the call still ends, in its thread, and is recorded.
                result = await anyio.to_thread.run_sync(self._dispatch, name, arguments, abandon_on_cancel=True)
            except Exception as failure:
                self._log.exception("tool_server.dispatch_failed", tool=shown)
                return _answer(f"{shown} failed: {type(failure).__name__}", error=True)
            return _answer(result.for_model(), error=not result.ok)

        return server

    def _dispatch(self, name: str, arguments: dict[str, Any]) -> ToolResult:
        with self._dispatching:
            with self._lock:
                if self._closing:
                    return ToolResult(name, "refused", None, "HQ has stopped serving tools for this run")
                step = self._next_step
                self._next_step += 1
            result = dispatch(self.tool_ctx, name, arguments, step=step)
            with self._lock:
                self._calls.append(result)
        return result


def _answer(text: str, *, error: bool) -> types.CallToolResult:
    from mcp import types

    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], isError=error)
