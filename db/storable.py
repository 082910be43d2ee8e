"""What PostgreSQL can store: text without NUL or lone surrogates, JSON without NaN or Infinity.

Model output and tool arguments can hold all of these (JSON's ``\\ud800``,
``NaN``, ``\\u0000``), and each makes an INSERT fail: a write whose audit row
cannot be stored would be a side effect nobody can see. So values are either
refused up front (``problem``) or stored with the offending parts shown as
visible escapes (``storable``), never silently lost.
"""

from __future__ import annotations

import math
from typing import Any

MAX_DEPTH = 32  # deeper JSON is nobody's tool argument; Python's own limit is a crash, not an error


def _text_problem(text: str) -> str | None:
    if "\x00" in text:
        return "NUL characters are not allowed"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "lone surrogate code points are not allowed (the text is not valid Unicode)"
    return None


def problem(value: Any, depth: int = 0) -> str | None:
    """Why ``value`` cannot be stored as it is, or None."""
    if depth > MAX_DEPTH:
        return f"nested deeper than {MAX_DEPTH} levels"
    if isinstance(value, str):
        return _text_problem(value)
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN and Infinity are not numbers JSON allows"
    if isinstance(value, dict):
        return next((p for k, v in value.items() if (p := problem(k, depth + 1) or problem(v, depth + 1))), None)
    if isinstance(value, list | tuple):
        return next((p for v in value if (p := problem(v, depth + 1))), None)
    return None


def storable_text(text: str) -> str:
    """``text`` with NUL and lone surrogates shown as their escapes (``\\u0000``, ``\\udcff``)."""
    if _text_problem(text) is None:
        return text
    return text.replace("\x00", "\\u0000").encode("utf-8", "backslashreplace").decode("utf-8")


def storable(value: Any, depth: int = 0) -> Any:
    """A copy of a JSON-like value that PostgreSQL accepts, every unstorable part made visible."""
    if depth > MAX_DEPTH:
        return "… (nested too deep)"
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {storable_text(str(k)): storable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [storable(v, depth + 1) for v in value]
    return value
