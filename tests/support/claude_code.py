"""The real Claude Code CLI against the fake Anthropic server, behind HQ's gateway: shared by its tests.

The CLI is the pinned copy `make claude-code` installs under tools/ (or HQ_CLAUDE_BIN). Its
tests skip only where Node.js is missing, which is the one thing the project's files do not
install; with Node.js present, a missing CLI is a failure that says how to install it.
"""

from __future__ import annotations

import json
import shutil
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from config.settings import PACKAGE_ROOT, load_settings
from runtimes.install import PINNED_VERSION, claude_binary, claude_version
from tests.fakes.anthropic_server import FakeAnthropic, Reply
from tests.support.models import write_models

needs_node = pytest.mark.skipif(
    shutil.which("node") is None or shutil.which("npm") is None,
    reason="Node.js and npm are not installed: the Claude Code CLI cannot be installed (`make claude-code`)",
)

PROVIDER_KEY = "sk-ant-hq-provider-key-0123456789"
WORKER = "claude-sonnet-4-6"  # the execution tier: the engineer, on Claude Code
REVIEWER = "claude-haiku-4-5"  # the reasoning tier: the lead's review, HQ's own loop
PRICE = (3, 15)  # USD per million input / output tokens; cache writes 1.25x and reads 0.1x of input
MAX_TOKENS = 2000


def require_cli() -> Path:
    binary = claude_binary(load_settings())
    if binary is None:
        pytest.fail("Claude Code is not installed: run `make claude-code` (the tests install it with `make test`)")
    assert claude_version(binary) == PINNED_VERSION, f"{binary} is not Claude Code {PINNED_VERSION}"
    return binary


def coding_roles(root: Path, slug: str, options: str = "{max_turns: 12}") -> Path:
    """A copy of the bundled roster in which ``slug`` works with Claude Code."""
    roles = root / "roles"
    shutil.copytree(PACKAGE_ROOT / "agents" / "roles", roles)
    path = roles / slug / "AGENTS.md"
    text = path.read_text(encoding="utf-8")
    head, body = text.split("\n---\n", 1)
    path.write_text(f"{head}\nruntime: claude-code\nruntime_options: {options}\n---\n{body}", encoding="utf-8")
    return roles


def models_file(root: Path, fake: FakeAnthropic) -> Path:
    tiers = {"execution": [f"anthropic/{WORKER}"], "utility": [f"anthropic/{WORKER}"]}
    tiers["reasoning"] = [f"anthropic/{REVIEWER}"]
    return write_models(root / "models.yaml", fake, tiers, max_tokens=MAX_TOKENS, price=PRICE, retries=0)


def use(tool: str, /, **arguments: Any) -> Reply:
    return Reply(text="", tool_calls=[{"name": tool, "input": arguments}], input_tokens=900, output_tokens=60)


def usage_cost(reply: Reply) -> Decimal:
    """What the provider bills for a reply's usage, each kind of token at its own price, as the ledger rounds it."""
    per_token = Decimal(PRICE[0]) / 1_000_000, Decimal(PRICE[1]) / 1_000_000
    cost = (
        per_token[0] * reply.input_tokens
        + per_token[1] * reply.output_tokens
        + per_token[0] * Decimal("1.25") * reply.cache_creation_input_tokens
        + per_token[0] * Decimal("0.1") * reply.cache_read_input_tokens
    )
    return round(cost, 6)


def worker_requests(fake: FakeAnthropic) -> list[dict[str, Any]]:
    return [r for r in fake.requests if r["body"].get("model") == WORKER and r["path"].split("?")[0] == "/v1/messages"]


def calls(raw: psycopg.Connection, issue: int, workflow: str = "execute") -> list[tuple[Any, ...]]:
    return raw.execute(
        "SELECT outcome, model, input_tokens, output_tokens, cache_write_tokens, cache_read_tokens, cost_usd "
        "FROM llm_calls WHERE issue_id = %s AND workflow = %s ORDER BY id",
        (issue, workflow),
    ).fetchall()


def dumps(value: Any) -> str:
    return json.dumps(value, default=str)[:4000]
