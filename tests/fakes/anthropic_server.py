"""A fake Anthropic Messages API on 127.0.0.1, for driving real clients in tests.

It speaks the wire protocol closely enough for LiteLLM's client, the ``anthropic``
SDK and the Claude Code CLI (through HQ's gateway) to take it for the real thing:
``POST /v1/messages`` (also with a query string, as Claude Code sends
``?beta=true``), JSON or server-sent-event answers, ``usage`` blocks with cache
tokens, ``tool_use`` content, ``count_tokens``, the ``HEAD /`` preflight, error
envelopes and ``retry-after`` headers.

Tests script it per model: a queue of replies, each a status code and a body, or
a default; the model ``"*"`` stands for any model without replies of its own, and
a ``responder`` can compute a reply from the request itself. Every API call is
recorded with the credential it carried, so a test can prove which key reached
the provider.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

WILDCARD = "*"
"""The model name whose scripts and default answer any model that has none of its own."""

DELTA_CHARS = 16
"""How much text (or tool-input JSON) one streamed delta carries: small, so a reply spans several events, as real
streams do, and a cut can land inside a block."""


@dataclass
class Reply:
    """One scripted answer: a success (``status`` 200) or an error envelope carrying ``text`` as its message."""

    status: int = 200
    text: str = "ok"
    input_tokens: int = 10
    output_tokens: int = 5
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    error_type: str = "api_error"
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    cut_after_events: int | None = None
    """Streaming only: drop the connection after this many events (the chunked body is never terminated, so the
    client sees a broken transfer, not a short but complete one), as when a provider's stream breaks off."""
    delay_seconds: float = 0.0
    """Wait this long before answering, to exercise timeouts and concurrency."""
    cache_creation_1h_input_tokens: int = 0
    """Of ``cache_creation_input_tokens``, those written with ``ttl: "1h"`` (billed at 2x input, not 1.25x). When
    set, usage also carries the real API's ``cache_creation`` breakdown (``ephemeral_5m/1h_input_tokens``)."""


def error(status: int, message: str = "boom", **headers: str) -> Reply:
    """An error reply with the error type the real API uses for that status."""
    kinds = {
        400: "invalid_request_error",
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        413: "request_too_large",
        429: "rate_limit_error",
        500: "api_error",
        529: "overloaded_error",
    }
    return Reply(status=status, text=message, headers=headers, error_type=kinds.get(status, "api_error"))


def _envelope(error_type: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type, "message": message}}


def _chunks(text: str) -> list[str]:
    return [text[i : i + DELTA_CHARS] for i in range(0, len(text), DELTA_CHARS)] or [""]


def credential(headers: dict[str, str]) -> str | None:
    """The API key a request carried: ``x-api-key``, else an ``Authorization: Bearer`` token (the SDK sends either,
    depending on whether it was given an api_key or an auth_token)."""
    lowered = {name.lower(): value for name, value in headers.items()}
    if "x-api-key" in lowered:
        return lowered["x-api-key"]
    scheme, _, token = lowered.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def content_blocks(reply: Reply) -> list[dict[str, Any]]:
    """The reply's content as the API returns it: its text (if any), then one ``tool_use`` block per tool call."""
    content: list[dict[str, Any]] = []
    if reply.text:
        content.append({"type": "text", "text": reply.text})
    for call in reply.tool_calls:
        content.append(
            {
                "type": "tool_use",
                "id": call.get("id") or f"toolu_{uuid.uuid4().hex[:20]}",
                "name": call["name"],
                "input": call.get("input", {}),
            }
        )
    return content


def cache_usage(reply: Reply) -> dict[str, Any]:
    """The usage block's cache fields, with the per-TTL breakdown the real API adds when 1-hour writes happened."""
    cache: dict[str, Any] = {
        "cache_creation_input_tokens": reply.cache_creation_input_tokens,
        "cache_read_input_tokens": reply.cache_read_input_tokens,
    }
    if reply.cache_creation_1h_input_tokens:
        long = reply.cache_creation_1h_input_tokens
        cache["cache_creation"] = {
            "ephemeral_5m_input_tokens": reply.cache_creation_input_tokens - long,
            "ephemeral_1h_input_tokens": long,
        }
    return cache


def stream_events(reply: Reply, model: str | None) -> Iterator[tuple[str, dict[str, Any]]]:
    """The event stream the real API sends for ``reply``, in order, as (event type, data) pairs."""
    message_id = f"msg_{uuid.uuid4().hex[:24]}"
    cache = cache_usage(reply)
    yield (
        "message_start",
        {
            "type": "message_start",
            "message": {
                "id": message_id,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": reply.input_tokens, **cache, "output_tokens": 1},
            },
        },
    )
    yield "ping", {"type": "ping"}
    for index, block in enumerate(content_blocks(reply)):
        if block["type"] == "text":
            start: dict[str, Any] = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": piece} for piece in _chunks(block["text"])]
        else:
            start = {**block, "input": {}}
            deltas = [
                {"type": "input_json_delta", "partial_json": piece} for piece in _chunks(json.dumps(block["input"]))
            ]
        yield "content_block_start", {"type": "content_block_start", "index": index, "content_block": start}
        for delta in deltas:
            yield "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
        yield "content_block_stop", {"type": "content_block_stop", "index": index}
    yield (
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use" if reply.tool_calls else "end_turn", "stop_sequence": None},
            "usage": {"input_tokens": reply.input_tokens, **cache, "output_tokens": reply.output_tokens},
        },
    )
    yield "message_stop", {"type": "message_stop"}


class FakeAnthropic:
    """The fake server. ``start()`` it, point a client at ``url``, ``stop()`` it when done.

    ``requests`` holds every API call (every POST) as ``{"path", "method", "headers", "body", "key"}``, in arrival
    order; the ``HEAD``/``GET`` preflights go to ``probes`` instead, so ``requests`` stays a list of API calls whose
    bodies name a model.
    """

    def __init__(self) -> None:
        self.scripts: dict[str, deque[Reply]] = defaultdict(deque)
        self.defaults: dict[str, Reply] = {}
        self.requests: list[dict[str, Any]] = []
        self.probes: list[dict[str, Any]] = []
        self.required_key: str | None = None
        """When set, a POST carrying any other credential gets a 401 (and is still recorded)."""
        self.responder: Callable[[dict[str, Any]], Reply | None] | None = None
        """Computes a reply from the request body; when it returns one, scripts and defaults are not consulted."""
        self.count_tokens_answer: int | None = None
        """What ``count_tokens`` answers; unset, a rough estimate from the body's size."""
        self.in_flight = 0
        self.peak_in_flight = 0
        """The most Messages calls it was answering at once (a gateway must bound its concurrent upstream calls)."""
        self.lock = threading.Lock()
        handler = self._handler()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        # A short poll keeps stop() quick: shutdown() waits for the serve loop to wake up and notice.
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        assert isinstance(host, str)  # an AF_INET server's; typeshed allows bytes for any address family
        return f"http://{host}:{port}"

    def start(self) -> FakeAnthropic:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def script(self, model: str, *replies: Reply) -> None:
        """Queue replies for ``model`` (or ``"*"``), answered one per call before any default."""
        with self.lock:
            self.scripts[model].extend(replies)

    def default(self, model: str, reply: Reply) -> None:
        """Answer ``model`` (or ``"*"``) with ``reply`` whenever its script queue is empty."""
        with self.lock:
            self.defaults[model] = reply

    def calls_for(self, model: str) -> int:
        """How many Messages calls named ``model`` (token counts and stray paths are not calls)."""
        with self.lock:
            return sum(
                1
                for r in self.requests
                if r["body"].get("model") == model and urlsplit(r["path"]).path.endswith("/v1/messages")
            )

    def keys_seen(self) -> set[str | None]:
        """Every credential the API calls carried (``None``: a call with none)."""
        with self.lock:
            return {r["key"] for r in self.requests}

    def _next(self, body: dict[str, Any]) -> Reply:
        """The responder's reply, else the model's own script, its default, then the ``"*"`` script and default:
        a model with replies of its own never falls through to the wildcard's, so tests can mix both."""
        if self.responder is not None:
            computed = self.responder(body)  # outside the lock: a responder may be slow or inspect the fake
            if computed is not None:
                return computed
        model = str(body.get("model", ""))
        with self.lock:
            for name in (model, WILDCARD):
                queue = self.scripts.get(name)
                if queue:
                    return queue.popleft()
                if name in self.defaults:
                    return self.defaults[name]
        return Reply()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # one event a write, sent at once, as a real API streams

            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("content-length", 0) or 0))

            def do_POST(self) -> None:
                raw = self._body()
                headers = dict(self.headers)
                key = credential(headers)
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = None
                record = {
                    "path": self.path,
                    "method": "POST",
                    "headers": headers,
                    "body": body if isinstance(body, dict) else {},
                    "key": key,
                }
                with fake.lock:
                    fake.requests.append(record)
                if fake.required_key is not None and key != fake.required_key:
                    self._send(401, _envelope("authentication_error", "invalid x-api-key"))
                    return
                if not isinstance(body, dict):
                    self._send(400, _envelope("invalid_request_error", "the body is not a JSON object"))
                    return
                path = urlsplit(self.path).path
                if path.endswith("/v1/messages/count_tokens"):
                    answer = fake.count_tokens_answer
                    estimate = max(1, len(json.dumps(body)) // 4)
                    self._send(200, {"input_tokens": answer if answer is not None else estimate})
                    return
                if not path.endswith("/v1/messages"):
                    self._send(404, _envelope("not_found_error", self.path))
                    return
                with fake.lock:
                    fake.in_flight += 1
                    fake.peak_in_flight = max(fake.peak_in_flight, fake.in_flight)
                try:
                    self._answer(body)
                except OSError:
                    self.close_connection = True  # the client gave up waiting (a timeout): nothing to answer
                finally:
                    with fake.lock:
                        fake.in_flight -= 1

            def _answer(self, body: dict[str, Any]) -> None:
                reply = fake._next(body)
                if reply.delay_seconds:
                    time.sleep(reply.delay_seconds)
                if reply.status != 200:
                    self._send(reply.status, _envelope(reply.error_type, reply.text), reply.headers)
                elif body.get("stream"):
                    self._stream(reply, body.get("model"))
                else:
                    self._send(
                        200,
                        {
                            "id": f"msg_{uuid.uuid4().hex[:24]}",
                            "type": "message",
                            "role": "assistant",
                            "model": body.get("model"),
                            "content": content_blocks(reply),
                            "stop_reason": "tool_use" if reply.tool_calls else "end_turn",
                            "stop_sequence": None,
                            "usage": {
                                "input_tokens": reply.input_tokens,
                                **cache_usage(reply),
                                "output_tokens": reply.output_tokens,
                            },
                        },
                        reply.headers,
                    )

            def _probe(self, method: str) -> None:
                """Claude Code checks the base URL is reachable before its first call; anything else is unknown."""
                self._body()
                headers = dict(self.headers)
                with fake.lock:
                    fake.probes.append(
                        {"path": self.path, "method": method, "headers": headers, "key": credential(headers)}
                    )
                if urlsplit(self.path).path == "/" and method in ("GET", "HEAD"):
                    self.send_response(200)
                    self.send_header("content-length", "0")
                    self.end_headers()
                    return
                self._send(404, _envelope("not_found_error", self.path), head_only=method == "HEAD")

            def do_HEAD(self) -> None:
                self._probe("HEAD")

            def do_GET(self) -> None:
                self._probe("GET")

            def do_PUT(self) -> None:
                self._probe("PUT")

            def do_PATCH(self) -> None:
                self._probe("PATCH")

            def do_DELETE(self) -> None:
                self._probe("DELETE")

            def _stream(self, reply: Reply, model: str | None) -> None:
                """Server-sent events in a chunked body, one chunk per event, flushed as it goes."""
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("cache-control", "no-cache")
                self.send_header("transfer-encoding", "chunked")
                self.send_header("request-id", f"req_{uuid.uuid4().hex[:12]}")
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                for sent, (kind, data) in enumerate(stream_events(reply, model)):
                    if reply.cut_after_events is not None and sent >= reply.cut_after_events:
                        break
                    event = f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode()
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
                    self.wfile.flush()
                if reply.cut_after_events is not None:
                    self.close_connection = True  # no terminating chunk: the transfer is visibly broken
                    return
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()

            def _send(
                self,
                status: int,
                payload: dict[str, Any],
                headers: dict[str, str] | None = None,
                head_only: bool = False,
            ) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.send_header("request-id", f"req_{uuid.uuid4().hex[:12]}")
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                if not head_only:
                    self.wfile.write(data)

        return Handler
