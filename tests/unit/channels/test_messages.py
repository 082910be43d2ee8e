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


def test_plain_text_drops_our_markup_and_gives_back_the_values_as_given() -> None:
    from channels.messages import plain

    title = "<b>fake</b> & <script>alert(1)</script>"
    text = render("done", {"issue": {"id": 7, "title": title}, "cost": {"total_usd": "0.5", "calls": 2}})
    assert "<b>Done</b>" in text and "&lt;script&gt;" in text
    assert plain(text).splitlines()[0] == f"Done #7 {title}"
    needs_human = render("needs_human", {"issue": {"id": 7, "title": "t"}, "commands": ["hq unblock 7 --note '...'"]})
    assert "hq unblock 7 --note '...'" in plain(needs_human).splitlines() and "<code>" not in plain(needs_human)
