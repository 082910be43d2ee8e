"""The webhook receiver: Telegram POSTs each update here instead of being polled (HQ_TELEGRAM_WEBHOOK_URL).

It answers 200 only once the update's transaction has committed (``deliver``
returns True), and 500 otherwise, so Telegram delivers it again: the same
"committed or delivered again" rule as polling's stored offset. A request
without Telegram's secret-token header for this bot is refused before its body
is read. It listens on plain HTTP (HQ_TELEGRAM_WEBHOOK_LISTEN, loopback by
default) behind the TLS proxy the public URL names; only the poller lease's
holder listens, so a proxy in front of several hosts reaches the one that does.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from config.errors import describe
from config.log import get_logger
from config.secrets import redact

MAX_BODY_BYTES = 1 << 20  # an update is a few KiB; Telegram's own limit for a message is 4096 characters
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
REQUEST_SECONDS = 30

log = get_logger(__name__)


def webhook_secret(signing_key: bytes) -> str:
    """The secret token Telegram sends with each update (1-256 of A-Z a-z 0-9 _ -), derived from the button key."""
    return hmac.new(signing_key, b"heartbeat-hq telegram webhook v1", hashlib.sha256).hexdigest()


class WebhookServer:
    def __init__(self, listen: str, url: str, secret: str, deliver: Callable[[dict[str, Any]], bool]) -> None:
        host, _, port = listen.rpartition(":")
        self.path = urlsplit(url).path or "/"
        self.secret = secret
        self.deliver = deliver
        self.server = ThreadingHTTPServer((host, int(port)), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="hq-telegram-webhook", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = REQUEST_SECONDS  # a client that sends slowly is cut off, not waited for

            def log_message(self, *args: Any) -> None:  # requests are logged as updates, by the desk
                pass

            def do_GET(self) -> None:
                self._answer(405)

            def do_POST(self) -> None:
                if urlsplit(self.path).path != receiver.path:
                    self._answer(404)
                    return
                given = self.headers.get(SECRET_HEADER) or ""
                if not hmac.compare_digest(given.encode(), receiver.secret.encode()):
                    log.warning("telegram.webhook_refused", reason="secret token", workflow="telegram")
                    self._answer(403)
                    return
                try:
                    length = int(self.headers.get("content-length") or "-1")
                except ValueError:
                    length = -1
                if not 0 <= length <= MAX_BODY_BYTES:
                    self._answer(413 if length > MAX_BODY_BYTES else 411)
                    return
                try:
                    data = json.loads(self.rfile.read(length))
                except (ValueError, RecursionError):
                    self._answer(400)
                    return
                update_id = data.get("update_id") if isinstance(data, dict) else None
                if type(update_id) is not int or not 0 <= update_id < 2**63:
                    self._answer(400)
                    return
                try:
                    handled = receiver.deliver(data)
                except Exception as error:  # Telegram delivers it again
                    log.warning("telegram.webhook_failed", error=redact(describe(error)), workflow="telegram")
                    handled = False
                self._answer(200 if handled else 500)

            def _answer(self, status: int) -> None:
                # One request per connection: an early answer leaves the body unread, and an unread body
                # must never be taken for the next request.
                self.close_connection = True
                body = b"{}" if status == 200 else b""
                try:
                    self.send_response(status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(body)))
                    self.send_header("connection", "close")
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        return Handler
