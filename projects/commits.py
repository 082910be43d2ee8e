"""What HQ's commits say: a subject a person reads in ``git log``, and trailers a program reads.

The subject of a run's commit is the agent's own summary of what it did, and a merge's names the issue's
title: both are text a model or a person wrote, so hostile. It becomes one line of printable text (every
control, format and line-separator character turned into a space, whitespace collapsed), cut to
SUBJECT_LIMIT characters; an empty one falls back to words HQ chooses. The body is only HQ's trailers
(``HQ-Issue``, ``HQ-Run``, ``HQ-Agent``) and, before them, text HQ wrote itself: git reads trailers from the
last paragraph alone, and the subject can never be more than one line, so nothing a model says reaches them.
"""

from __future__ import annotations

import unicodedata
import uuid

SUBJECT_LIMIT = 72
"""Characters of a commit's subject at most: what ``git log --oneline`` and most tools show whole."""
_ELLIPSIS = "…"
_UNSEEN = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})  # controls, format (bidi, zero-width), surrogates, separators


def one_line(text: str, limit: int = SUBJECT_LIMIT) -> str:
    """``text`` as a single printable line of at most ``limit`` characters (cut at a word where one is near)."""
    shown = "".join(" " if unicodedata.category(ch) in _UNSEEN else ch for ch in text)
    line = " ".join(shown.split())
    if len(line) <= limit:
        return line
    cut = line[: limit - len(_ELLIPSIS)]
    space = cut.rfind(" ")
    if space >= limit // 2:  # a word boundary not too far back: do not cut a word in half
        cut = cut[:space]
    return cut.rstrip(" .,;:-") + _ELLIPSIS


def subject(summary: str | None, fallback: str) -> str:
    """A commit subject from a model's summary ("DONE:" habit dropped), else the ``fallback`` (HQ's words)."""
    said = one_line((summary or "").strip().removeprefix("DONE:"))
    return said or one_line(fallback)


def trailers(*, issue_id: int, run_id: uuid.UUID | None, agent: str) -> str:
    """The trailer block HQ signs each of its commits with (no run: a commit made outside one)."""
    lines = [f"HQ-Issue: {issue_id}"]
    if run_id is not None:
        lines.append(f"HQ-Run: {run_id}")
    lines.append(f"HQ-Agent: {one_line(agent, 100)}")
    return "\n".join(lines)


def message(
    summary: str | None,
    *,
    fallback: str,
    issue_id: int,
    run_id: uuid.UUID | None,
    agent: str,
    body: str = "",
) -> str:
    """A whole commit message: the subject, a blank line, HQ's own ``body`` (if any), then the trailers.

    ``body`` must be HQ's text, never a model's: it is kept as written, before the trailer paragraph.
    """
    parts = [subject(summary, fallback)]
    if body.strip():
        parts.append(body.strip())
    parts.append(trailers(issue_id=issue_id, run_id=run_id, agent=agent))
    return "\n\n".join(parts) + "\n"
