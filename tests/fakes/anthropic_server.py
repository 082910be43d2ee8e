"""A fake Anthropic Messages API on 127.0.0.1, for driving LiteLLM's real client in tests.

It speaks the wire protocol (POST /v1/messages, JSON bodies, ``usage`` blocks,
``tool_use`` content, error envelopes and ``retry-after`` headers). Tests script
it per model: a queue of replies, each a status code and a body, or a default.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections import defaultdict, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    status: int = 200
    text: str = "ok"
    input_tokens: int = 10
    output_tokens: int = 5
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    error_type: str = "api_error"


def error(status: int, message: str = "boom", **headers: str) -> Reply:
    kinds = {
        400: "invalid_request_error",
        401: "authentication_error",
        403: "permission_error",
        429: "rate_limit_error",
        500: "api_error",
        529: "overloaded_error",
    }
    return Reply(status=status, text=message, headers=headers, error_type=kinds.get(status, "api_error"))


class FakeAnthropic:
    def __init__(self) -> None:
        self.scripts: dict[str, deque[Reply]] = defaultdict(deque)
        self.defaults: dict[str, Reply] = {}
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        handler = self._handler()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

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
        with self.lock:
            self.scripts[model].extend(replies)

    def default(self, model: str, reply: Reply) -> None:
        self.defaults[model] = reply

    def calls_for(self, model: str) -> int:
        return sum(1 for r in self.requests if r["body"].get("model") == model)

    def _next(self, model: str) -> Reply:
        with self.lock:
            queue = self.scripts.get(model)
            if queue:
                return queue.popleft()
        return self.defaults.get(model, Reply())

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                with fake.lock:
                    fake.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                if not self.path.endswith("/v1/messages"):
                    self._send(404, {"type": "error", "error": {"type": "not_found_error", "message": self.path}})
                    return
                reply = fake._next(body.get("model", ""))
                if reply.status != 200:
                    self._send(
                        reply.status,
                        {"type": "error", "error": {"type": reply.error_type, "message": reply.text}},
                        reply.headers,
                    )
                    return
                content: list[dict[str, Any]] = []
                if reply.text:
                    content.append({"type": "text", "text": reply.text})
                for call in reply.tool_calls:
                    content.append(
                        {
                            "type": "tool_use",
                            "id": f"toolu_{uuid.uuid4().hex[:20]}",
                            "name": call["name"],
                            "input": call.get("input", {}),
                        }
                    )
                self._send(
                    200,
                    {
                        "id": f"msg_{uuid.uuid4().hex[:24]}",
                        "type": "message",
                        "role": "assistant",
                        "model": body.get("model"),
                        "content": content,
                        "stop_reason": "tool_use" if reply.tool_calls else "end_turn",
                        "stop_sequence": None,
                        "usage": {"input_tokens": reply.input_tokens, "output_tokens": reply.output_tokens},
                    },
                    reply.headers,
                )

            def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.send_header("request-id", f"req_{uuid.uuid4().hex[:12]}")
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

        return Handler
