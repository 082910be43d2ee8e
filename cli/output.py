"""Terminal output: rich tables for people, JSON for programs, nothing unsafe either way.

Issue titles and bodies come from people and models; before they reach a
terminal, markup is escaped and control characters are made visible so an
issue cannot repaint the screen or fake a prompt.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import sys
from decimal import Decimal
from typing import Any

from rich.console import Console
from rich.markup import escape

console = Console(highlight=False, soft_wrap=False, emoji=False)  # no :emoji: codes: they are data here

# C0/C1 controls (terminal escapes, bells), plus the invisible characters that reorder or hide
# text on a terminal (bidi overrides and isolates, zero-width marks): shown, never obeyed.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")


def safe(text: object, *, limit: int | None = None) -> str:
    """Printable, markup-free text; ``limit`` truncates with an ellipsis."""
    value = "" if text is None else str(text)
    value = visible(value)
    if limit is not None and len(value) > limit:
        value = value[: limit - 1] + "…"
    return escape(value)


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    return str(value)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, default=_default, ensure_ascii=False, indent=2) + "\n")


def money(value: Decimal | float | None) -> str:
    return "-" if value is None else f"${Decimal(value):.4f}"


def when(value: dt.datetime | None) -> str:
    return "-" if value is None else value.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def visible(text: str) -> str:
    """Control characters shown as escapes (no markup handling: for plain writes)."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) <= 0xFF else f"\\u{ord(m.group()):04x}",
                        text)


def fail(message: str) -> None:
    """One line on stderr, never wrapped: scripts grep for it."""
    sys.stderr.write(f"hq: error: {visible(' '.join(message.split()))}\n")
