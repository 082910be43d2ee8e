"""Model calls in tests: a models file on the fake Anthropic API, a router reading it, the context of a call."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import psycopg
import pytest

from config.settings import load_settings
from models.router import CallContext, ModelRouter
from tests.fakes.anthropic_server import FakeAnthropic

KEY = "sk-ant-test-0123456789abcdefghij"
MESSAGES = [{"role": "user", "content": "Summarise the release."}]


def write_models(
    path: Path,
    fake: FakeAnthropic,
    tiers: dict[str, list[str]],
    *,
    max_tokens: int = 200,
    price: tuple[float, float] | None = None,
    cooldown: int = 60,
    retries: int = 2,
) -> Path:
    def deployment(model: str) -> dict[str, object]:
        entry: dict[str, object] = {"model": model, "api_key_env": "ANTHROPIC_API_KEY", "api_base": fake.url}
        if price is not None:
            entry.update(input_usd_per_mtok=price[0], output_usd_per_mtok=price[1])
        return entry

    document = {
        "router": {
            "num_retries": retries,
            "allowed_fails": 1,
            "cooldown_seconds": cooldown,
            "timeout_seconds": 10,
            "tier_fallbacks": {"reasoning": ["execution"]},
        },
        "max_output_tokens": {"reasoning": max_tokens, "execution": max_tokens, "utility": max_tokens},
        "tiers": {tier: [deployment(m) for m in models] for tier, models in tiers.items()},
        "offline": {
            t: {"input_usd_per_mtok": 1, "output_usd_per_mtok": 1} for t in ("reasoning", "execution", "utility")
        },
    }
    path.write_text(json.dumps(document))  # JSON is YAML
    return path


def router_for(models_file: Path, monkeypatch: pytest.MonkeyPatch) -> ModelRouter:
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    monkeypatch.setenv("HQ_MODELS_FILE", str(models_file))
    return ModelRouter(load_settings())


def call_context(raw: psycopg.Connection, issue_id: int | None, slug: str = "boss") -> CallContext:
    agent = raw.execute("SELECT id, slug FROM agents WHERE slug = %s", (slug,)).fetchone()
    assert agent is not None
    return CallContext(
        run_id=uuid.uuid4(), workflow="execute", agent_id=agent[0], agent_slug=agent[1], issue_id=issue_id
    )
