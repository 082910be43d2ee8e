"""Telegram messages: a long message is split at line ends, each part within Telegram's limit."""

from __future__ import annotations

from channels.messages import render, split


def test_long_messages_are_split_at_line_ends() -> None:
    text = render("escalated", {"issue": {"id": 1, "title": "t"}, "reason": "agent", "chain": ["a", "b"], "note": "x"})
    assert split(text) == [text]
    long = "\n".join(f"line {i} " + "y" * 100 for i in range(200))
    parts = split(long)
    assert len(parts) > 1 and all(len(p) <= 4096 for p in parts)
    assert "\n".join(parts) == long
    entities = "&amp;" * 1000
    assert all(not p.endswith("&") and len(p) <= 4096 for p in split(entities))
    assert "".join(split(entities)) == entities
