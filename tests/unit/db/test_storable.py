"""Text PostgreSQL cannot store (NUL, lone surrogates, NaN) is shown escaped, never dropped or a crash."""

from __future__ import annotations


def test_unstorable_text_is_shown_escaped() -> None:
    from db.storable import storable, storable_text

    assert storable_text("fine") == "fine"
    assert storable_text("a\x00b\ud800c") == "a\\u0000b\\ud800c"
    assert storable({"n": float("nan"), "k\x00": ["\udcff"]}) == {"n": "nan", "k\\u0000": ["\\udcff"]}
