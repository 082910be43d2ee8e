"""Payloads a NOTIFY may carry that name no one to wake: every one must be shrugged off."""

from __future__ import annotations

# --- hostile payloads: any role may NOTIFY hq_wake (PostgreSQL has no privilege for it) -------------------

MALFORMED = [
    "[1,2]",
    '{"wake":5}',
    '{"wake":"abc"}',
    '{"wake":[1]}',
    '{"wake":["UPPER"]}',
    '{"wake":[null]}',
    '{"wake":["a b"]}',
    '{"wake":["' + "a" * 100 + '"]}',
    '{"wake":{"ceo":1}}',
    '{"wake":["ceo"],"actor":5}',
    '{"wake":["ceo"],"actor":["agent:ceo"]}',
    "null",
    '"ceo"',
    "",
    "NaN",
    "[" * 3900 + "]" * 3900,
    '{"wake":["_notify"]}',
]
