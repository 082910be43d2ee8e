"""Structured answers: ask for JSON matching a pydantic schema, get a validated object back."""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel

from models.protocol import InvalidReply, parse_reply
from models.router import CallContext, ModelRequestError, ModelRouter

T = TypeVar("T", bound=BaseModel)


def complete_json(
    router: ModelRouter,
    call: CallContext,
    tier: str,
    *,
    system: str,
    user: str,
    schema: type[T],
    max_tokens: int | None = None,
) -> T:
    """One call, plus one repair round if the reply does not validate."""
    messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
    completion = router.complete(call, tier, messages, max_tokens=max_tokens)
    try:
        return parse_reply(completion.text, schema)
    except InvalidReply as error:
        messages += [
            {"role": "assistant", "content": completion.text},
            {"role": "user", "content": f"That reply was not valid ({error}). Reply again with only the JSON object."},
        ]
    completion = router.complete(call, tier, messages, max_tokens=max_tokens)
    try:
        return parse_reply(completion.text, schema)
    except InvalidReply as error:
        raise ModelRequestError(f"the {tier} model did not return a valid {schema.__name__}: {error}") from None
