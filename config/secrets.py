"""Secret redaction: one registry consulted by logs, rows, prompts and tool arguments.

Two nets catch a secret: the exact values this process was configured with, and
the shapes provider keys and bot tokens have in the wild (a key pasted into an
issue body is still a key). Anything that leaves the process passes through
``redact`` first.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

MASK = "***"

# Shapes of credentials we know about, matched anywhere in text.
KEY_SHAPES: tuple[re.Pattern[str], ...] = (
    re.compile(r"sk-ant-[A-Za-z0-9_\-]{16,}"),  # Anthropic
    re.compile(r"sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{20,}"),  # OpenAI
    re.compile(r"\b\d{6,12}:AA[A-Za-z0-9_\-]{30,}"),  # Telegram bot token
    re.compile(r"AIza[0-9A-Za-z_\-]{30,}"),  # Google / Gemini
    re.compile(r"(?i)(?<=://)([^:/@\s]+):([^@/\s]+)(?=@)"),  # user:password@ in URLs
)

# Values shorter than this are too likely to collide with ordinary words.
MIN_SECRET_LENGTH = 6


class Redactor:
    """Knows every secret value registered so far and masks them, plus known key shapes."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._lock = threading.Lock()

    def register(self, *values: str | None) -> None:
        with self._lock:
            changed = False
            for value in values:
                for piece in _secret_pieces(value):
                    if piece not in self._values:
                        self._values.add(piece)
                        changed = True
            if changed:
                ordered = sorted(self._values, key=len, reverse=True)
                self._pattern = re.compile("|".join(re.escape(v) for v in ordered))

    def known(self) -> frozenset[str]:
        return frozenset(self._values)

    def redact(self, text: str) -> str:
        if not text:
            return text
        pattern = self._pattern
        if pattern is not None:
            text = pattern.sub(MASK, text)
        for shape in KEY_SHAPES:
            text = shape.sub(MASK, text)
        return text

    def redact_obj(self, value: Any) -> Any:
        """Redact strings anywhere inside JSON-like data, keeping its structure."""
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, dict):
            return {k: (MASK if _is_secret_key(k) else self.redact_obj(v)) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.redact_obj(v) for v in value]
        return value


def _secret_pieces(value: str | None) -> Iterable[str]:
    """A secret and, for URLs, the password inside it (which may appear on its own)."""
    if not value or len(value) < MIN_SECRET_LENGTH:
        return ()
    pieces = [value]
    if "://" in value:
        try:
            password = urlsplit(value).password
        except ValueError:
            password = None
        if password and len(password) >= MIN_SECRET_LENGTH:
            pieces.append(password)
    return pieces


_SECRET_KEY_NAMES = re.compile(r"(?i)(api[_-]?key|token|secret|password|authorization)")


def _is_secret_key(key: object) -> bool:
    return isinstance(key, str) and bool(_SECRET_KEY_NAMES.search(key))


REDACTOR = Redactor()


def redact(text: str) -> str:
    return REDACTOR.redact(text)


def redact_obj(value: Any) -> Any:
    return REDACTOR.redact_obj(value)


def register_secrets(*values: str | None) -> None:
    REDACTOR.register(*values)


def mask(value: str | None, keep: int = 4) -> str:
    """A recognisable but useless form of a secret for display: ``sk-a…***``."""
    if not value:
        return "(unset)"
    if len(value) <= keep * 3:
        return MASK
    return value[:keep] + "…" + MASK
