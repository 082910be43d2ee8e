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

from rich.console import Console, ConsoleDimensions
from rich.markup import escape

PIPE_WIDTH = 100_000
"""Columns of output that is not a terminal: every table row, cell and line whole, on one line."""


def to_terminal(file: Any = None) -> bool:
    """Whether output goes to a terminal (stdout by default); a pipe or a file is not one.

    Asked of the file itself: FORCE_COLOR or TTY_COMPATIBLE asks for colours, not for cut cells.
    """
    isatty = getattr(sys.stdout if file is None else file, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # closed
        return False


class _Console(Console):
    """Fits a terminal's width; anywhere else (``hq models | grep claude``) lines are never folded or cut.

    rich sizes output that is not a terminal to 80 columns (or $COLUMNS) and ellipsizes table cells
    to fit; to a pipe or a file a table is as wide as its widest row instead. Only a width given
    in code is kept.
    """

    def __init__(self, *args: Any, width: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, width=width, **kwargs)
        self._fixed_width = width is not None

    @property
    def size(self) -> ConsoleDimensions:
        size = super().size
        if not self._fixed_width and not to_terminal(self.file):
            return ConsoleDimensions(PIPE_WIDTH, size.height)
        return size

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        Console.size.fset(self, new_size)  # type: ignore[attr-defined]
        self._fixed_width = True

    @property
    def width(self) -> int:
        return self.size.width

    @width.setter
    def width(self, width: int) -> None:
        Console.width.fset(self, width)  # type: ignore[attr-defined]
        self._fixed_width = True


console = _Console(highlight=False, soft_wrap=False, emoji=False)  # no :emoji: codes: they are data here

# C0/C1 controls (terminal escapes, bells), plus the invisible characters that reorder or hide
# text on a terminal (bidi overrides and isolates, zero-width marks): shown, never obeyed.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")


def safe(text: object, *, limit: int | None = None) -> str:
    """Printable, markup-free text; ``limit`` truncates with an ellipsis, on a terminal only.

    Piped or redirected output keeps the whole text, so a script or ``grep`` sees what is stored.
    """
    value = "" if text is None else str(text)
    value = visible(value)
    if limit is not None and len(value) > limit and to_terminal(console.file):
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
    return _CONTROL.sub(
        lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) <= 0xFF else f"\\u{ord(m.group()):04x}", text
    )


def fail(message: str) -> None:
    """One line on stderr, never wrapped: scripts grep for it."""
    sys.stderr.write(f"hq: error: {visible(' '.join(message.split()))}\n")


def warn(message: str) -> None:
    """One warning line on stderr: something to fix that did not stop the command."""
    sys.stderr.write(f"hq: warning: {visible(' '.join(message.split()))}\n")
