"""Model gateway overhead: one streamed Messages API call through HQ's gateway against the same call
straight to the upstream, on the same machine, in the same run.

Both sides are the real anthropic SDK streaming a reply from the fake Anthropic server on
127.0.0.1 (tests/fakes/anthropic_server.py), with a request the size of a coding agent's (a
long system prompt, a dozen tool definitions, a few turns). Through the gateway the SDK talks
over the run's Unix socket, and each call is priced from its tokens, reserved, forwarded with
HQ's key, relayed as it streams, and settled with its cost row. Target: at most 25 ms added to
a call (the time to first token of a real model is several hundred).

    python -m bench.gateway [--calls 200]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

from bench.common import fresh_database, median, percentile, quiet_logging, verdict

MODEL = "claude-sonnet-4-6"
KEY = "sk-ant-bench-provider-key-000000000000"
TARGET_MS = 25.0
SYSTEM = "You are a coding agent working in a git repository. " * 600  # ~30 KB, as a CLI's system prompt
TOOLS: list[Any] = [
    {
        "name": f"tool_{n}",
        "description": "Reads, edits or searches files in the working directory. " * 8,
        "input_schema": {"type": "object", "properties": {"path": {"type": "string"}, "text": {"type": "string"}}},
    }
    for n in range(12)
]
MESSAGES: list[Any] = [
    {"role": "user", "content": "Add mul(a, b) to calc.py and make the tests pass."},
    {"role": "assistant", "content": "I will read calc.py first."},
    {"role": "user", "content": "def add(a, b):\n    return a + b\n" * 40},
]


def main(calls: int = 200, rounds: int = 5) -> float:
    import anthropic
    import httpx2
    from sqlalchemy import text

    from config.settings import load_settings
    from config.vocabulary import TIERS
    from db.engine import get_engine
    from models.config import Deployment, ModelMap, RouterSpec
    from models.forwarder import Forwarder
    from models.router import CallContext, ModelRouter
    from runtimes.gateway import Gateway
    from tests.fakes.anthropic_server import FakeAnthropic, Reply

    quiet_logging()
    fake = FakeAnthropic().start()
    fake.default(MODEL, Reply(text="Done: mul added and the tests pass. " * 4, input_tokens=9000, output_tokens=60))
    try:
        with fresh_database("hq_bench_gateway"):
            settings = load_settings()
            engine = get_engine(settings)
            with engine.begin() as conn:
                issue = conn.execute(
                    text(
                        "INSERT INTO issues (title, status, created_by, budget_usd) "
                        "VALUES ('bench', 'todo', 'bench', 100000) RETURNING id"
                    )
                ).scalar()
            input_price, output_price = Decimal("0.000003"), Decimal("0.000015")
            deployments: dict[str, list[Deployment]] = {
                tier: [
                    Deployment(
                        f"{tier}-1", tier, 1, f"anthropic/{MODEL}", KEY, fake.url, input_price, output_price, "bench"
                    )
                ]
                for tier in TIERS
            }
            router = ModelRouter(
                settings, ModelMap(deployments, RouterSpec(), {t: 4096 for t in deployments}, settings.models_path)
            )
            context = CallContext(run_id=uuid.uuid4(), workflow="bench", issue_id=issue)
            direct = anthropic.Anthropic(api_key=KEY, base_url=fake.url, max_retries=0)
            with tempfile.TemporaryDirectory(prefix="hq-bench-") as scratch:
                socket_path = Path(scratch) / "gateway.sock"
                with Gateway(Forwarder(router), context, "execution", socket_path) as gateway:
                    through = anthropic.Anthropic(
                        api_key=gateway.token,
                        base_url="http://localhost",
                        max_retries=0,
                        http_client=httpx2.Client(transport=httpx2.HTTPTransport(uds=str(socket_path))),
                    )

                    def timed(client: anthropic.Anthropic) -> float:
                        started = time.perf_counter()
                        with client.messages.stream(
                            model=MODEL, max_tokens=4096, system=SYSTEM, tools=TOOLS, messages=MESSAGES
                        ) as stream:
                            for _ in stream.text_stream:
                                pass
                            stream.get_final_message()
                        return (time.perf_counter() - started) * 1000

                    for _ in range(10):  # warm both paths: connections, the tokenizer, the budget connection
                        timed(direct), timed(through)
                    straight, gatewayed = [], []
                    for _ in range(rounds):  # interleaved, so a noisy moment hits both sides
                        straight += [timed(direct) for _ in range(calls // rounds)]
                        gatewayed += [timed(through) for _ in range(calls // rounds)]
            with engine.connect() as conn:
                rows, cost = conn.execute(
                    text("SELECT count(*), coalesce(sum(cost_usd), 0) FROM llm_calls WHERE issue_id = :id"),
                    {"id": issue},
                ).one()
                spent, reserved = conn.execute(
                    text("SELECT spent_usd, reserved_usd FROM issues WHERE id = :id"), {"id": issue}
                ).one()
    finally:
        fake.stop()
    s50, g50 = median(straight), median(gatewayed)
    s95, g95 = percentile(straight, 0.95), percentile(gatewayed, 0.95)
    overhead = g50 - s50
    print(f"request: {len(SYSTEM) // 1000} KB system prompt, {len(TOOLS)} tools, {len(MESSAGES)} messages, streamed")
    print(f"straight to the upstream:  p50 {s50:.2f} ms, p95 {s95:.2f} ms")
    print(f"through the gateway:       p50 {g50:.2f} ms, p95 {g95:.2f} ms  (+{overhead:.2f} ms at p50)")
    print(f"cost rows: {rows} for {len(gatewayed) + 10} calls; spent {spent} = rows {cost}; reserved {reserved}")
    ratio = g50 / s50
    print(
        verdict(
            f"gateway overhead per streamed call (+{overhead:.1f} ms, target <= {TARGET_MS:.0f} ms)",
            ratio,
            f"+<= {TARGET_MS:.0f} ms",
            overhead <= TARGET_MS,
        )
    )
    return ratio


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    main(parser.parse_args().calls)
