"""The offline model as a LiteLLM custom provider (``hq-offline/<tier>``).

It goes through exactly the same router, budget and cost-row path as a real
provider; only the answer comes from models/offline_brain instead of the
network. Token counts are real (LiteLLM's tokenizer over the actual messages and
reply), so budgets and cost reports behave as they would online.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import litellm
from litellm import CustomLLM, ModelResponse

from models.offline_brain import delay_seconds, respond


class OfflineModel(CustomLLM):
    def _answer(self, model: str, messages: list[dict[str, Any]], optional_params: dict[str, Any]) -> ModelResponse:
        pause = delay_seconds(messages)
        if pause:
            time.sleep(pause)
        tools = optional_params.get("tools") or []
        names = [t.get("function", {}).get("name", "") for t in tools if isinstance(t, dict)]
        reply = respond(messages, names)
        calls: list[dict[str, Any]] = [
            {
                "id": f"call_{uuid.uuid4().hex[:16]}",
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(arguments, ensure_ascii=False)},
            }
            for name, arguments in reply.tool_calls
        ]
        prompt_tokens = litellm.token_counter(messages=messages)
        if tools:
            prompt_tokens += litellm.token_counter(text=json.dumps(tools))
        produced = reply.text + "".join(c["function"]["arguments"] for c in calls)
        completion_tokens = litellm.token_counter(text=produced) if produced else 0
        limit = optional_params.get("max_tokens")
        if limit:
            completion_tokens = min(completion_tokens, int(limit))
        message: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
        if calls:
            message["tool_calls"] = calls
        return ModelResponse(
            model=f"hq-offline/{model}",
            choices=[{"index": 0, "message": message, "finish_reason": "tool_calls" if calls else "stop"}],
            usage={
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        )

    def completion(
        self,
        model: str,
        messages: list[dict[str, Any]],
        api_base: str,
        custom_prompt_dict: dict[str, Any],
        model_response: ModelResponse,
        print_verbose: Any,
        encoding: Any,
        api_key: Any,
        logging_obj: Any,
        optional_params: dict[str, Any],
        *args: Any,
        **kwargs: Any,
    ) -> ModelResponse:
        return self._answer(model, messages, optional_params)

    async def acompletion(
        self,
        model: str,
        messages: list[dict[str, Any]],
        api_base: str,
        custom_prompt_dict: dict[str, Any],
        model_response: ModelResponse,
        print_verbose: Any,
        encoding: Any,
        api_key: Any,
        logging_obj: Any,
        optional_params: dict[str, Any],
        *args: Any,
        **kwargs: Any,
    ) -> ModelResponse:
        return self._answer(model, messages, optional_params)
