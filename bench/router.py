"""Router overhead: one model call through the router — budget reservation, the call, settlement,
the cost row — against a bare `litellm.completion(..., mock_response=...)` on the same machine.

Both sides get the same canned answer from LiteLLM's mock, so the difference is exactly what
the router adds. Target: at most 1.5x.

    python -m bench.router [--calls 300]
"""

from __future__ import annotations

import argparse
import time
import uuid
from decimal import Decimal

from bench.common import fresh_database, median, quiet_logging, verdict

MODEL = "openai/gpt-4.1-mini"
KEY = "sk-bench-not-a-real-key-0000000000000000"
MESSAGES = [
    {"role": "system", "content": "You are a careful engineer."},
    {
        "role": "user",
        "content": "Summarise the change in one sentence: the claim query now uses a "
        "materialized CTE with SKIP LOCKED.",
    },
]


def main(calls: int = 300, rounds: int = 5) -> float:
    import litellm
    from sqlalchemy import text

    from config.settings import load_settings
    from config.vocabulary import TIERS
    from db.engine import get_engine
    from models.budget import CallRow, Payer, record, reserve
    from models.config import Deployment, ModelMap, RouterSpec
    from models.router import CallContext, ModelRouter

    quiet_logging()  # after importing LiteLLM, which resets its loggers
    with fresh_database("hq_bench_router"):
        settings = load_settings()
        engine = get_engine(settings)
        with engine.begin() as conn:
            agent = conn.execute(
                text("INSERT INTO agents (slug, title, workflows) VALUES ('bench', 'Bench', '{execute}') RETURNING id")
            ).scalar()
            issue = conn.execute(
                text(
                    "INSERT INTO issues (title, status, created_by, budget_usd) "
                    "VALUES ('bench', 'todo', 'bench', 100000) RETURNING id"
                )
            ).scalar()
        price = Decimal("0.000001")
        deployments: dict[str, list[Deployment]] = {
            tier: [Deployment(f"{tier}-1", tier, 1, MODEL, KEY, None, price, price, "bench", "ok")] for tier in TIERS
        }
        router = ModelRouter(
            settings, ModelMap(deployments, RouterSpec(), {t: 256 for t in deployments}, settings.models_path)
        )

        def through_router(n: int) -> float:
            context = CallContext(
                run_id=uuid.uuid4(),
                workflow="bench",
                agent_id=agent,
                agent_slug="bench",
                agent_monthly_limit=Decimal(100000),
                issue_id=issue,
            )
            started = time.perf_counter()
            for _ in range(n):
                router.complete(context, "execution", MESSAGES, max_tokens=256)
            return (time.perf_counter() - started) / n

        def bare(n: int) -> float:
            started = time.perf_counter()
            for _ in range(n):
                litellm.completion(model=MODEL, messages=MESSAGES, mock_response="ok", api_key=KEY, max_tokens=256)
            return (time.perf_counter() - started) / n

        def accounting(n: int) -> tuple[float, float]:
            """The database part alone: reserve (durable commit), then settle with the cost row."""
            payer = Payer(issue, "bench", Decimal(100000), Decimal(100000))
            run_id, reserving, settling = uuid.uuid4(), 0.0, 0.0
            for seq in range(1, n + 1):
                started = time.perf_counter()
                reservation = reserve(engine, payer, Decimal("0.001"), run_id, 900)
                middle = time.perf_counter()
                record(
                    engine,
                    CallRow(
                        run_id,
                        seq,
                        issue,
                        agent,
                        "bench",
                        "execution",
                        "openai",
                        MODEL,
                        "execution-1",
                        "ok",
                        input_tokens=40,
                        output_tokens=1,
                        cost=Decimal("0.00004"),
                        reserved=Decimal("0.001"),
                        latency_ms=1,
                    ),
                    reservation,
                )
                reserving, settling = reserving + middle - started, settling + time.perf_counter() - middle
            return reserving / n, settling / n

        through_router(20)
        bare(20)
        router_times, bare_times, parts = [], [], []
        for _ in range(rounds):  # interleaved, so a noisy moment hits both sides
            bare_times.append(bare(calls // rounds))
            router_times.append(through_router(calls // rounds))
            parts.append(accounting(calls // rounds))
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT count(*), count(DISTINCT (run_id, call_seq)) FROM llm_calls")).one()
            spent = conn.execute(text("SELECT spent_usd, reserved_usd FROM issues WHERE id = :id"), {"id": issue}).one()
    r, b = median(router_times) * 1000, median(bare_times) * 1000
    reserving, settling = (median([p[i] for p in parts]) * 1000 for i in (0, 1))
    print(f"bare litellm.completion(mock_response): {b:.2f} ms/call")
    print(f"through the router (reserve, call, settle, cost row): {r:.2f} ms/call")
    print(
        f"  the accounting alone, without LiteLLM running: reserve {reserving:.2f} ms (durable commit), "
        f"settle + cost row + report summaries {settling:.2f} ms"
    )
    print(f"cost rows written: {rows[0]} (unique: {rows[1]}); issue spent {spent[0]}, still reserved {spent[1]}")
    ratio = r / b
    print(verdict("router overhead", ratio, "<= 1.5x", ratio <= 1.5))
    return ratio


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    main(parser.parse_args().calls)
