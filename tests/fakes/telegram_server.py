"""A fake Telegram Bot API on 127.0.0.1, for driving python-telegram-bot itself in tests.

It speaks the Bot API: POST /bot<token>/<method> with form or JSON bodies, and
``{"ok": ..., "result"|"error_code"/"description"/"parameters"}`` replies with
the matching HTTP status. Tests script failures (429 with retry_after, 5xx,
403 bot blocked, 400 chat not found), outages (502s, or the host refusing
connections), and a hang on a chosen message.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

BOT_ID = 777000111


@dataclass
class Failure:
    status: int
    description: str
    retry_after: int | None = None


class FakeTelegram:
    def __init__(self, token: str) -> None:
        self.token = token
        self.messages: list[dict[str, Any]] = []  # every sendMessage the fake accepted
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.failures: deque[Failure] = deque()
        self.outage_until = 0.0
        self.blocked_chats: set[str] = set()
        self.hang_on_text: str | None = None
        self.release = threading.Event()
        self.hung = threading.Event()
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        assert isinstance(host, str)  # an AF_INET server's; typeshed allows bytes for any address family
        return f"http://{host}:{port}"

    def start(self) -> FakeTelegram:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    def down(self) -> None:
        """The host goes away: connections are refused until ``up()``."""
        self.address = self.server.server_address[:2]
        self.server.shutdown()
        self.server.server_close()

    def up(self) -> None:
        """Back on the same address, with everything it had accepted before."""
        self.server = ThreadingHTTPServer(self.address, self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def fail(self, *failures: Failure) -> None:
        with self.lock:
            self.failures.extend(failures)

    def outage(self, seconds: float) -> None:
        self.outage_until = time.monotonic() + seconds

    def texts(self) -> list[str]:
        return [m["text"] for m in self.messages]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                raw = self.rfile.read(length)
                if "json" in (self.headers.get("content-type") or ""):
                    params = json.loads(raw or b"{}")
                else:
                    params = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
                prefix, _, method = self.path.lstrip("/").partition("/")
                with fake.lock:
                    fake.requests.append((method, params))
                if prefix != f"bot{fake.token}":
                    self._reply(401, {"ok": False, "error_code": 401, "description": "Unauthorized"})
                    return
                if time.monotonic() < fake.outage_until:
                    self._reply(502, {"ok": False, "error_code": 502, "description": "Bad Gateway"})
                    return
                if method == "getMe":
                    self._reply(
                        200,
                        {
                            "ok": True,
                            "result": {"id": BOT_ID, "is_bot": True, "first_name": "HQ", "username": "hq_test_bot"},
                        },
                    )
                    return
                if method != "sendMessage":
                    self._reply(404, {"ok": False, "error_code": 404, "description": "Not Found: method not found"})
                    return
                with fake.lock:
                    failure = fake.failures.popleft() if fake.failures else None
                if failure is not None:
                    body: dict[str, Any] = {
                        "ok": False,
                        "error_code": failure.status,
                        "description": failure.description,
                    }
                    if failure.retry_after is not None:
                        body["parameters"] = {"retry_after": failure.retry_after}
                    self._reply(failure.status, body)
                    return
                chat = str(params.get("chat_id"))
                if chat in fake.blocked_chats:
                    self._reply(
                        403, {"ok": False, "error_code": 403, "description": "Forbidden: bot was blocked by the user"}
                    )
                    return
                if not chat.lstrip("-").isdigit() and not chat.startswith("@"):
                    self._reply(400, {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"})
                    return
                text = str(params.get("text", ""))
                with fake.lock:
                    fake.messages.append(
                        {"chat_id": chat, "text": text, "parse_mode": params.get("parse_mode"), "at": time.monotonic()}
                    )
                    message_id = len(fake.messages)
                if fake.hang_on_text is not None and fake.hang_on_text in text:
                    fake.hung.set()
                    fake.release.wait(60)  # the sender is killed while waiting for this reply
                self._reply(
                    200,
                    {
                        "ok": True,
                        "result": {
                            "message_id": message_id,
                            "date": int(time.time()),
                            "chat": {"id": int(chat) if chat.lstrip("-").isdigit() else 1, "type": "private"},
                            "text": text,
                        },
                    },
                )

            def _reply(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        return Handler
