"""The Telegram webhook reads one request per connection: an early answer never reads the body as another
request.
"""

from __future__ import annotations

import json
from typing import Any


def test_an_early_webhook_answer_never_reads_the_body_as_another_request() -> None:
    import socket

    from channels.webhook import WebhookServer

    delivered: list[dict[str, Any]] = []

    def deliver(data: dict[str, Any]) -> bool:
        delivered.append(data)
        return True

    server = WebhookServer("127.0.0.1:0", "https://hq.invalid/hook", "s3cret", deliver)
    server.start()
    try:
        inner = json.dumps({"update_id": 5}).encode()
        smuggled = (
            b"POST /hook HTTP/1.1\r\nHost: x\r\nX-Telegram-Bot-Api-Secret-Token: s3cret\r\n"
            b"content-type: application/json\r\ncontent-length: " + str(len(inner)).encode() + b"\r\n\r\n" + inner
        )
        outer = (
            b"POST /hook HTTP/1.1\r\nHost: x\r\nX-Telegram-Bot-Api-Secret-Token: wrong\r\n"
            b"content-length: " + str(len(smuggled)).encode() + b"\r\n\r\n" + smuggled
        )
        with socket.create_connection(server.address, timeout=30) as connection:
            connection.sendall(outer)
            replies = b""
            while chunk := connection.recv(65536):
                replies += chunk
        assert replies.count(b"HTTP/1.1") == 1 and replies.startswith(b"HTTP/1.1 403")
        assert delivered == []
    finally:
        server.stop()
