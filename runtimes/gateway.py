"""The model gateway: the Anthropic Messages API for one run, on a Unix socket only its sandbox sees.

An external coding agent never holds a provider key and never reaches a
provider itself. While its run lasts, HQ listens on a socket that is
bind-mounted into the run's sandbox (the sandbox has no network at all) and
accepts only the run's own token, made for it and never stored. Every request
goes through the router's forwarder (models/forwarder.py): reserved
before it is sent, settled to the provider's usage after, one ``llm_calls``
row each. What the forwarder refuses (a budget that cannot cover the call, a
provider that cannot be reached, a request that would reach out or cost what
HQ does not price) is answered in the API's error shape, as a request error so
the CLI stops instead of retrying, and kept in ``failure`` for the failure
policy to apply once the CLI has exited.

Everything in the sandbox may be hostile (code the CLI runs inherits the token),
so what a run can make HQ hold is bounded (GatewayLimits):

- connections: at most ``max_connections`` (8), each with its thread; one more
  is answered 503 and closed by the accepting thread, without a thread;
- calls at the provider at once: ``max_upstream_calls`` (4); the others wait;
- time: every read and write, and a whole body, within ``io_timeout_seconds``
  (60): a slow or silent client is dropped (slowloris);
- memory: the token is checked, and the path and announced length, from the
  headers alone; only then is the body read, at most ``max_body_bytes`` (8 MiB),
  so 8 MiB x 8 connections is the most a run can make HQ buffer;
- the database: a call borrows one of the process's few budget connections
  (models/budget.py) for each statement; no thread keeps one.

A client that hangs up is routine: logged quietly, never a traceback.

Served: ``HEAD /`` and ``GET /`` (the CLI's preflight), ``POST /v1/messages``
(streamed or not, with or without the CLI's ``?beta=true``) and
``POST /v1/messages/count_tokens`` (counted here, free). Nothing else.
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
import socket
import socketserver
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from config.log import get_logger
from models.budget import BudgetExceeded
from models.forwarder import ApiFailure, Forwarder, StreamCut
from models.router import CallContext, ModelError

# A real request is its context: a whole 200,000-token context is under 1 MiB of JSON, and 8 MiB leaves room for
# several inline images or a PDF besides. With MAX_CONNECTIONS, what one run can make HQ hold is bounded (64 MiB).
MAX_BODY_BYTES = 8 * 1024 * 1024
MAX_CONNECTIONS = 8  # per run: the CLI needs one or two at a time (a turn, and a fast-model call beside it)
MAX_UPSTREAM_CALLS = 4  # per run, at the provider at once: the others wait their turn
IO_TIMEOUT_SECONDS = 60.0  # per read or write on a connection, and for a whole body: a slow client is cut off
LINGER_BYTES = 256 * 1024  # after an answer given unread: dropped, so a client still writing sees the answer
LINGER_SECONDS = 1.0
MESSAGES = "/v1/messages"
COUNT_TOKENS = "/v1/messages/count_tokens"
_BUSY = b'{"type": "error", "error": {"type": "overloaded_error", "message": "too many connections for this run"}}'
_TURNED_AWAY = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nconnection: close\r\n"
    b"content-length: %d\r\n\r\n%s" % (len(_BUSY), _BUSY)
)

log = get_logger(__name__)


@dataclass(frozen=True)
class GatewayLimits:
    """What one run's gateway will hold for its sandbox: connections (each a thread), calls at the provider
    at once, the time a connection may keep HQ waiting, and a request's size."""

    max_connections: int = MAX_CONNECTIONS
    max_upstream_calls: int = MAX_UPSTREAM_CALLS
    io_timeout_seconds: float = IO_TIMEOUT_SECONDS
    max_body_bytes: int = MAX_BODY_BYTES


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """A thread per connection, up to ``max_connections``; a connection beyond that is answered 503 and closed
    at once, by the accepting thread, without a thread of its own."""

    daemon_threads = True  # a CLI holding a connection open never keeps HQ from stopping
    block_on_close = False

    def __init__(self, path: str, handler: type[BaseHTTPRequestHandler], max_connections: int) -> None:
        self.max_connections = max_connections
        self.active = 0
        self.active_lock = threading.Lock()
        super().__init__(path, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.active_lock:
            admitted = self.active < self.max_connections
            self.active += admitted
        if not admitted:
            try:
                request.setblocking(False)
                request.send(_TURNED_AWAY)
            except OSError:
                pass  # a full or closed socket: closing says enough
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._left()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._left()

    def _left(self) -> None:
        with self.active_lock:
            self.active -= 1

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up or stalled is routine (logged quietly); anything else is a bug, logged once."""
        error = sys.exc_info()[1]
        if isinstance(error, OSError):
            log.debug("gateway.connection_lost", error=type(error).__name__)
            return
        log.error("gateway.handler_failed", error=type(error).__name__, exc_info=True)


class Gateway:
    """A context manager: listening on ``socket_path`` inside it, gone (socket removed) after."""

    def __init__(
        self,
        forwarder: Forwarder,
        ctx: CallContext,
        tier: str,
        socket_path: Path,
        *,
        fast_tier: str | None = None,
        limits: GatewayLimits | None = None,
    ) -> None:
        self.forwarder = forwarder
        self.ctx = ctx
        self.tier = tier
        self.fast_tier = fast_tier  # the role's fast tier: the only other tier a requested model name may pick
        self.socket_path = socket_path
        self.limits = limits or GatewayLimits()
        self.token = secrets.token_urlsafe(32)
        self.failure: BudgetExceeded | ModelError | None = None  # the last refusal the CLI was given
        self.calls = 0  # requests forwarded upstream (count_tokens and refusals not included)
        self._lock = threading.Lock()
        self._upstream = threading.BoundedSemaphore(self.limits.max_upstream_calls)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Gateway:
        self.socket_path.unlink(missing_ok=True)
        server = _Server(str(self.socket_path), self._handler(), self.limits.max_connections)
        os.chmod(self.socket_path, 0o600)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="hq-gateway", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.socket_path.unlink(missing_ok=True)

    def _refused(self, failure: ApiFailure) -> None:
        if failure.cause is not None:
            with self._lock:
                self.failure = failure.cause

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            server_version = "hq-gateway"
            sys_version = ""
            timeout = gateway.limits.io_timeout_seconds  # per read and write: a stalled client is dropped

            def address_string(self) -> str:  # a Unix socket's peer has no address
                return "sandbox"

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the forwarder logs what matters, with the run's names bound

            def handle_expect_100(self) -> bool:
                if not self._authorized():  # no "go ahead" for a body that will not be read
                    self.close_connection = True
                    self._error(ApiFailure(401, "authentication_error", "invalid x-api-key"))
                    return False
                return super().handle_expect_100()

            def do_HEAD(self) -> None:
                self._empty(200 if urlsplit(self.path).path == "/" else 404)

            def do_GET(self) -> None:
                self._empty(200 if urlsplit(self.path).path == "/" else 404)

            def do_POST(self) -> None:
                path = urlsplit(self.path).path
                # Whatever follows the headers is read only for the run's token, to a known path, within the
                # size limit: anything else is answered from the headers alone and the connection closed.
                if not self._authorized():
                    self._refuse_unread(ApiFailure(401, "authentication_error", "invalid x-api-key"))
                    return
                if path not in (MESSAGES, COUNT_TOKENS):
                    self._refuse_unread(ApiFailure(404, "not_found_error", "not found"))
                    return
                try:
                    length = int(self.headers.get("content-length") or "")
                except ValueError:
                    length = -1
                if not 0 <= length <= gateway.limits.max_body_bytes:
                    self._refuse_unread(
                        ApiFailure(413, "request_too_large", "the request body is missing or too large")
                    )
                    return
                raw = self._body(length)
                if raw is None:
                    return
                try:
                    body = json.loads(raw)
                except ValueError:
                    self._error(ApiFailure(400, "invalid_request_error", "the request body is not JSON"))
                    return
                if path == COUNT_TOKENS:
                    if not isinstance(body, dict):
                        self._error(ApiFailure(400, "invalid_request_error", "the request body must be an object"))
                        return
                    self._json(200, {"input_tokens": gateway.forwarder.count_tokens(body)})
                    return
                if not gateway._upstream.acquire(timeout=gateway.limits.io_timeout_seconds):
                    self._error(ApiFailure(429, "rate_limit_error", "too many calls at once for this run"))
                    return
                try:
                    self._forward(body)
                finally:
                    gateway._upstream.release()

            def _refuse_unread(self, failure: ApiFailure) -> None:
                """Answer from the headers alone and close. A client still writing its body would see a broken
                pipe instead of the answer, so up to LINGER_BYTES more are read and dropped (never kept) for
                at most LINGER_SECONDS after the answer has gone: a lingering close, as web servers do."""
                self.close_connection = True
                self._error(failure)
                try:
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_WR)
                    self.connection.settimeout(LINGER_SECONDS)
                    deadline, left = time.monotonic() + LINGER_SECONDS, LINGER_BYTES
                    while left > 0 and time.monotonic() < deadline:
                        dropped = self.connection.recv(min(left, 64 * 1024))
                        if not dropped:
                            break
                        left -= len(dropped)
                except OSError:
                    pass  # gone, or silent: closed either way

            def _body(self, length: int) -> bytes | None:
                """The whole body within the connection's timeout, or None (answered 408, connection closed)."""
                deadline = time.monotonic() + gateway.limits.io_timeout_seconds
                parts: list[bytes] = []
                left = length
                try:
                    while left > 0:
                        if time.monotonic() > deadline:
                            raise TimeoutError("the body came too slowly")
                        part = self.rfile.read1(min(left, 1024 * 1024))
                        if not part:
                            raise ConnectionError("the client hung up")
                        parts.append(part)
                        left -= len(part)
                except TimeoutError:
                    self.close_connection = True
                    self._error(ApiFailure(408, "timeout_error", "the request body did not arrive in time"))
                    return None
                except ConnectionError:
                    self.close_connection = True
                    return None
                return b"".join(parts)

            def _forward(self, body: Any) -> None:
                headers = {name.lower(): value for name, value in self.headers.items()}
                try:
                    forwarded = gateway.forwarder.forward(
                        gateway.ctx, gateway.tier, body, headers, fast_tier=gateway.fast_tier
                    )
                except ApiFailure as failure:
                    gateway._refused(failure)
                    self._error(failure)
                    return
                with gateway._lock:
                    gateway.calls += 1
                try:
                    self.send_response(forwarded.status)
                    self.send_header("content-type", forwarded.content_type)
                    if forwarded.request_id:
                        self.send_header("request-id", forwarded.request_id)
                    self.send_header("transfer-encoding", "chunked")
                    self.end_headers()
                    for chunk in forwarded:
                        if chunk:
                            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                            self.wfile.flush()
                    self.wfile.write(b"0\r\n\r\n")
                except StreamCut:
                    self.close_connection = True  # no last chunk: the CLI sees the stream break, as it did
                except OSError:
                    self.close_connection = True  # the CLI went away
                finally:
                    forwarded.close()

            def _authorized(self) -> bool:
                key = self.headers.get("x-api-key")
                if key is None:
                    scheme, _, value = (self.headers.get("authorization") or "").partition(" ")
                    key = value.strip() if scheme.lower() == "bearer" else None
                return key is not None and hmac.compare_digest(key.encode(), gateway.token.encode())

            def _empty(self, status: int) -> None:
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def _error(self, failure: ApiFailure) -> None:
                self._send(failure.status, failure.body())

            def _json(self, status: int, payload: dict[str, Any]) -> None:
                self._send(status, json.dumps(payload).encode())

            def _send(self, status: int, data: bytes) -> None:
                try:
                    self.send_response(status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    if self.close_connection:
                        self.send_header("connection", "close")
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    self.close_connection = True  # the client hung up before its answer: nothing to tell it

        return Handler
