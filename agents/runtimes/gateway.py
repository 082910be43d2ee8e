"""The model gateway: the Anthropic Messages API for one run, on a Unix socket only its sandbox sees.

An external coding agent never holds a provider key and never reaches a
provider itself. While its run lasts, HQ listens on a socket that is
bind-mounted into the run's sandbox (the sandbox has no network at all) and
accepts only the run's own token, made for it and never stored. Every request
goes through the router's forwarder (agents/llm/passthrough.py): reserved
before it is sent, settled to the provider's usage after, one ``llm_calls``
row each. What the forwarder refuses (a budget that cannot cover the call, a
provider that cannot be reached) is answered in the API's error shape, as a
request error so the CLI stops instead of retrying, and kept in ``failure``
for the failure policy to apply once the CLI has exited.

Served: ``HEAD /`` and ``GET /`` (the CLI's preflight), ``POST /v1/messages``
(streamed or not, with or without the CLI's ``?beta=true``) and
``POST /v1/messages/count_tokens`` (counted here, free). Nothing else.
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
import socketserver
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from agents.llm.budget import BudgetExceeded
from agents.llm.passthrough import ApiFailure, Forwarder, StreamCut
from agents.llm.router import CallContext, ModelError
from config.log import get_logger

MAX_BODY_BYTES = 32 * 1024 * 1024  # a long session's whole context, images included, fits with room to spare
MESSAGES = "/v1/messages"
COUNT_TOKENS = "/v1/messages/count_tokens"

log = get_logger(__name__)


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True  # a CLI holding a connection open never keeps HQ from stopping
    block_on_close = False


class Gateway:
    """A context manager: listening on ``socket_path`` inside it, gone (socket removed) after."""

    def __init__(self, forwarder: Forwarder, ctx: CallContext, tier: str, socket_path: Path) -> None:
        self.forwarder = forwarder
        self.ctx = ctx
        self.tier = tier
        self.socket_path = socket_path
        self.token = secrets.token_urlsafe(32)
        self.failure: BudgetExceeded | ModelError | None = None  # the last refusal the CLI was given
        self.calls = 0  # requests forwarded upstream (count_tokens and refusals not included)
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Gateway:
        self.socket_path.unlink(missing_ok=True)
        server = _Server(str(self.socket_path), self._handler())
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

            def address_string(self) -> str:  # a Unix socket's peer has no address
                return "sandbox"

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the forwarder logs what matters, with the run's names bound

            def do_HEAD(self) -> None:
                self._empty(200 if urlsplit(self.path).path == "/" else 404)

            def do_GET(self) -> None:
                self._empty(200 if urlsplit(self.path).path == "/" else 404)

            def do_POST(self) -> None:
                path = urlsplit(self.path).path
                try:
                    length = int(self.headers.get("content-length") or "")
                except ValueError:
                    length = -1
                if not 0 <= length <= MAX_BODY_BYTES:
                    self.close_connection = True
                    self._error(ApiFailure(413, "request_too_large", "the request body is missing or too large"))
                    return
                raw = self.rfile.read(length)
                if not self._authorized():
                    self._error(ApiFailure(401, "authentication_error", "invalid x-api-key"))
                    return
                if path not in (MESSAGES, COUNT_TOKENS):
                    self._error(ApiFailure(404, "not_found_error", "not found"))
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
                headers = {name.lower(): value for name, value in self.headers.items()}
                try:
                    forwarded = gateway.forwarder.forward(gateway.ctx, gateway.tier, body, headers)
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
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler
