"""What a notification says: one HTML message per outbox event, split to fit Telegram.

Every value that came from a person or a model is HTML-escaped; the only markup
is ours (<b>, <code>), and it never spans a line, so splitting on lines never
breaks a tag.
"""

from __future__ import annotations

import re
from html import escape, unescape
from typing import Any

TELEGRAM_LIMIT = 4096
_OUR_MARKUP = re.compile(r"</?(?:b|code)>")


def _issue(payload: dict[str, Any]) -> str:
    issue = payload.get("issue") or {}
    return f"#{issue.get('id', '?')} {escape(str(issue.get('title', '')))}"


def _commands(payload: dict[str, Any]) -> list[str]:
    return [f"<code>{escape(c)}</code>" for c in payload.get("commands") or []]


def _chain(payload: dict[str, Any]) -> str:
    return " → ".join(escape(str(step)) for step in payload.get("chain") or []) or "-"


def render(event: str, payload: dict[str, Any]) -> str:
    lines: list[str]
    if event == "pending_approval":
        lines = [
            f"<b>Approval needed</b> {_issue(payload)}",
            f"Review passed (score {escape(str(payload.get('quality_score') or '-'))}); "
            f"deadline {escape(str(payload.get('deadline', '-')))}. Decide with:",
            *_commands(payload),
        ]
    elif event == "escalated":
        lines = [
            f"<b>Blocked and escalated</b> {_issue(payload)}",
            f"Reason: {escape(str(payload.get('reason', '')))}",
            f"Chain: {_chain(payload)}",
            escape(str(payload.get("note", ""))),
        ]
    elif event == "needs_human":
        lines = [
            f"<b>Escalated to a human</b> {_issue(payload)}",
            f"Climbed: {_chain(payload)}",
            f"Why: {escape(str(payload.get('reason', '')))}",
            f"Deadline {escape(str(payload.get('deadline', '-')))}. Decide with:",
            *_commands(payload),
        ]
    elif event == "budget_exhausted":
        lines = [
            f"<b>Budget exhausted</b> {_issue(payload)}",
            f"Spent ${escape(str(payload.get('spent_usd')))} of ${escape(str(payload.get('budget_usd')))}; "
            f"the next call needs up to ${escape(str(payload.get('needed_usd')))}.",
            *_commands(payload),
        ]
    elif event == "approval_deadline":
        stage = str(payload.get("stage", "passed"))
        headline = {
            "half": "Approval waiting: half its time has gone",
            "ninety": "Approval deadline is near",
            "passed": "Approval deadline passed",
            "escalate": "Approval still unanswered",
            "expire": "Approval expired",
        }.get(stage, stage)
        lines = [
            f"<b>{escape(headline)}</b> {_issue(payload)}",
            f"{escape(str(payload.get('kind', '')))} approval #{payload.get('approval_id')}, "
            f"deadline {escape(str(payload.get('deadline', '-')))}.",
        ]
    elif event == "done":
        cost = payload.get("cost") or {}
        tiers = ", ".join(f"{escape(t)} ${escape(str(c))}" for t, c in (cost.get("by_tier") or {}).items())
        lines = [
            f"<b>Done</b> {_issue(payload)}",
            f"Cost ${escape(str(cost.get('total_usd', '0')))} over {cost.get('calls', 0)} model calls"
            + (f" ({tiers})" if tiers else "")
            + ".",
        ]
    elif event == "heartbeat_failing":
        lines = [
            f"<b>Heartbeats failing</b> {escape(str(payload.get('agent')))} failed "
            f"{payload.get('failures')} beats in a row.",
            f"Last error: {escape(str(payload.get('error', '')))}",
        ]
    elif event == "provider_auth":
        lines = [
            f"<b>Model credentials refused</b> deployment {escape(str(payload.get('deployment')))}",
            f"Error: {escape(str(payload.get('error', '')))}",
            "Calls to it are paused. Replace its key, restart `hq run`, then unblock the work it stopped"
            + (f" ({_issue(payload)})." if payload.get("issue") else "."),
            *_commands(payload),
        ]
    elif event == "digest":
        lines = [
            f"<b>Daily digest</b> {escape(str(payload.get('day')))}",
            *[f"{escape(str(k))}: {escape(str(v))}" for k, v in (payload.get("figures") or {}).items()],
        ]
    else:
        lines = [f"<b>{escape(event)}</b>", escape(str(payload))]
    return "\n".join(line for line in lines if line)


def split(text: str, limit: int = TELEGRAM_LIMIT) -> list[str]:
    """Chunks of at most ``limit`` characters, cut at line ends (never inside a tag or an entity)."""
    parts: list[str] = []
    current = ""
    for line in text.split("\n"):
        while len(line) > limit:  # one huge line: cut it, avoiding the middle of an &entity;
            cut = limit
            amp = line.rfind("&", 0, cut)
            if amp != -1 and ";" not in line[amp:cut]:
                cut = amp
            parts.extend([current] if current else [])
            current = ""
            parts.append(line[:cut])
            line = line[cut:]
        candidate = f"{current}\n{line}" if current else line
        if len(candidate) > limit:
            parts.append(current)
            current = line
        else:
            current = candidate
    if current or not parts:
        parts.append(current)
    return parts


def plain(message: str) -> str:
    """A rendered message as text for a terminal: our tags dropped, the escaped values as they were given.

    Exact because the only markup is ours and every value was escaped; the result is hostile text
    again, for the caller to print safely.
    """
    return unescape(_OUR_MARKUP.sub("", message))
