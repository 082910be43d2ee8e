"""The forwarder reads the upstream's usage from the stream however the chunks split its events."""

from __future__ import annotations

import json
from typing import Any

from models.forwarder import Usage, _Events


def test_usage_is_read_whatever_chunk_boundaries_split_the_events() -> None:
    """An upstream (or a proxy) framing events with CRLF may be cut between a \\r and its \\n: the usage must
    still be read, or a call that finished would be settled as cut and charged its worst case."""
    start: dict[str, Any] = {"type": "message_start", "message": {"usage": {"input_tokens": 100, "output_tokens": 1}}}
    delta: dict[str, Any] = {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn"},
        "usage": {"output_tokens": 42},
    }
    for newline in (b"\n", b"\r\n"):
        wire = b"".join(
            b"event: " + e["type"].encode() + newline + b"data: " + json.dumps(e).encode() + newline + newline
            for e in (start, delta)
        )
        for cut in range(1, len(wire)):
            events = _Events(Usage())
            events.feed(wire[:cut])
            events.feed(wire[cut:])
            assert (events.usage.final, events.usage.input_tokens, events.usage.output_tokens) == (True, 100, 42), cut
