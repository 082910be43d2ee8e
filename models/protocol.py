"""How workflows talk to models: a task line, prose instructions, a JSON context block,
and (for structured answers) the JSON schema the reply must match.

Real models read it as a well-organised prompt; the offline model parses the
task and context back out, which is how it answers every workflow in the shape
that workflow expects without any network.
"""

from __future__ import annotations

import json
import re
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

T = TypeVar("T", bound=BaseModel)

_TASK = re.compile(r"^TASK: ([a-z_]+)\s*$", re.MULTILINE)
_CONTEXT = re.compile(r"```context\n(.*?)\n```", re.DOTALL)
_JSON_BLOCK = re.compile(r"```(?:json)?\s*\n(.*?)\n```", re.DOTALL)


def user_message(task: str, instructions: str, context: dict[str, Any], schema: type[BaseModel] | None = None) -> str:
    parts = [
        f"TASK: {task}",
        "",
        instructions.strip(),
        "",
        "```context",
        json.dumps(context, ensure_ascii=False, indent=1, default=str),
        "```",
    ]
    if schema is not None:
        parts += [
            "",
            "Reply with only one JSON object that matches this JSON schema:",
            json.dumps(schema.model_json_schema(), separators=(",", ":")),
        ]
    return "\n".join(parts)


def parse_user_message(text: str) -> tuple[str | None, dict[str, Any]]:
    """The task name and context dict of a protocol message (None, {} if it is not one)."""
    task = _TASK.search(text or "")
    context = _CONTEXT.search(text or "")
    try:
        data = json.loads(context.group(1)) if context else {}
    except ValueError:
        data = {}
    return (task.group(1) if task else None), (data if isinstance(data, dict) else {})


class InvalidReply(ValueError):
    """The model's reply was not the JSON the task asked for."""


def parse_reply(text: str, schema: type[T]) -> T:
    """Validate a structured reply, tolerating code fences and prose around the JSON."""
    candidates = [m.group(1) for m in _JSON_BLOCK.finditer(text or "")]
    start, end = (text or "").find("{"), (text or "").rfind("}")
    if start != -1 and end > start:
        candidates.append(text[start : end + 1])
    last_error: Exception | None = None
    for candidate in candidates:
        try:
            return schema.model_validate_json(candidate)
        except (ValidationError, ValueError) as error:
            last_error = error
    raise InvalidReply(
        f"reply is not a valid {schema.__name__}: {str(last_error)[:300] if last_error else 'no JSON found'}"
    )
