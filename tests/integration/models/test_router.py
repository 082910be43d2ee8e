"""The model router against a fake Anthropic Messages API, driven by LiteLLM's real client."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from config.errors import ConfigError
from config.settings import load_settings
from models.budget import BudgetExceeded
from models.router import ModelRequestError, ModelRouter, ModelUnavailable
from tests.fakes.anthropic_server import FakeAnthropic, Reply, error
from tests.support.cli import run_hq
from tests.support.models import KEY, MESSAGES, call_context, router_for, write_models
from tests.support.rows import force_status, held, new_issue, one, workflow_context
from workflows.lib import failures


@pytest.fixture()
def fake() -> Iterator[FakeAnthropic]:
    server = FakeAnthropic().start()
    yield server
    server.stop()


@pytest.fixture()
def boss(raw: psycopg.Connection) -> int:
    raw.execute("INSERT INTO agents (slug, title, workflows) VALUES ('boss', 'Boss', '{execute}')")
    return int(one(raw.execute("SELECT id FROM agents WHERE slug = 'boss'").fetchone())[0])


def rows(raw: psycopg.Connection) -> list[tuple]:
    return raw.execute(
        "SELECT deployment, model, outcome, input_tokens, output_tokens, cost_usd, error "
        "FROM llm_calls ORDER BY call_seq"
    ).fetchall()


def test_cost_row_for_a_priced_call(
    tmp_path: Path, fake: FakeAnthropic, monkeypatch: pytest.MonkeyPatch, raw: psycopg.Connection, boss: int
) -> None:
    fake.default("claude-sonnet-4-5", Reply(text="summary", input_tokens=1000, output_tokens=500))
    router = router_for(
        write_models(
            tmp_path / "m.yaml",
            fake,
            {t: ["anthropic/claude-sonnet-4-5"] for t in ("reasoning", "execution", "utility")},
        ),
        monkeypatch,
    )
    issue = new_issue(raw, status="todo", budget_usd=1)
    completion = router.complete(call_context(raw, issue), "execution", MESSAGES)
    assert completion.text == "summary"
    assert rows(raw) == [("execution-1", "anthropic/claude-sonnet-4-5", "ok", 1000, 500, Decimal("0.01050000"), None)]
    assert raw.execute("SELECT spent_usd, reserved_usd FROM issues WHERE id = %s", (issue,)).fetchone() == (
        Decimal("0.010500"),
        Decimal("0"),
    )
    assert raw.execute("SELECT count(*) FROM budget_reservations").fetchone() == (0,)
    sent = fake.requests[-1]
    assert sent["headers"].get("x-api-key") == KEY and sent["body"]["max_tokens"] == 200


def test_failing_primary_cools_down_and_the_next_deployment_serves(
    tmp_path: Path, fake: FakeAnthropic, monkeypatch: pytest.MonkeyPatch, raw: psycopg.Connection, boss: int
) -> None:
    fake.default("claude-sonnet-4-5", error(500, "overloaded"))
    fake.default("claude-haiku-4-5", Reply(text="from the backup"))
    models = {
        "execution": ["anthropic/claude-sonnet-4-5", "anthropic/claude-haiku-4-5"],
        "reasoning": ["anthropic/claude-haiku-4-5"],
        "utility": ["anthropic/claude-haiku-4-5"],
    }
    router = router_for(write_models(tmp_path / "m.yaml", fake, models), monkeypatch)
    context = call_context(raw, None)
    assert router.complete(context, "execution", MESSAGES).text == "from the backup"
    assert router.complete(context, "execution", MESSAGES).text == "from the backup"
    primary_calls = fake.calls_for("claude-sonnet-4-5")
    third = router.complete(context, "execution", MESSAGES)
    assert third.outcome == "fallback" and third.deployment.id == "execution-2"
    assert fake.calls_for("claude-sonnet-4-5") == primary_calls  # cooling down: not even tried
    outcomes = [(r[0], r[2]) for r in rows(raw)]
    first_answer = outcomes.index(("execution-2", "fallback"))
    assert first_answer >= 1  # the primary failed at least once before the backup answered
    assert set(outcomes[:first_answer]) == {("execution-1", "error")}
    assert outcomes[-1] == ("execution-2", "fallback")
    assert all("500" in (r[6] or "") for r in rows(raw) if r[2] == "error")


def test_rate_limit_retry_after_is_honoured(
    tmp_path: Path, fake: FakeAnthropic, monkeypatch: pytest.MonkeyPatch, raw: psycopg.Connection, boss: int
) -> None:
    fake.script("claude-haiku-4-5", error(429, "slow down", **{"retry-after": "2"}))
    fake.default("claude-haiku-4-5", Reply(text="after the wait"))
    router = router_for(
        write_models(
            tmp_path / "m.yaml",
            fake,
            {t: ["anthropic/claude-haiku-4-5"] for t in ("reasoning", "execution", "utility")},
        ),
        monkeypatch,
    )
    started = time.monotonic()
    completion = router.complete(call_context(raw, None), "utility", MESSAGES)
    assert completion.text == "after the wait"
    assert time.monotonic() - started >= 2.0
    assert [r[2] for r in rows(raw)] == ["error", "ok"]
    assert "429" in rows(raw)[0][6]


def test_all_deployments_down_is_transient_and_releases_the_reservation(
    tmp_path: Path, fake: FakeAnthropic, monkeypatch: pytest.MonkeyPatch, raw: psycopg.Connection, boss: int
) -> None:
    fake.default("claude-haiku-4-5", error(503, "maintenance"))
    router = router_for(
        write_models(
            tmp_path / "m.yaml",
            fake,
            {t: ["anthropic/claude-haiku-4-5"] for t in ("reasoning", "execution", "utility")},
            retries=1,
        ),
        monkeypatch,
    )
    issue = new_issue(raw, status="todo", budget_usd=1)
    with pytest.raises(ModelUnavailable):
        router.complete(call_context(raw, issue), "utility", MESSAGES)
    assert raw.execute("SELECT spent_usd, reserved_usd FROM issues WHERE id = %s", (issue,)).fetchone() == (0, 0)
    assert {r[2] for r in rows(raw)} == {"error"}
    assert raw.execute("SELECT status FROM issues WHERE id = %s", (issue,)).fetchone() == ("todo",)


def test_eight_threads_race_on_a_budget_for_five_calls(
    tmp_path: Path, fake: FakeAnthropic, monkeypatch: pytest.MonkeyPatch, raw: psycopg.Connection, boss: int
) -> None:
    # Input is free and every reply uses all 100 output tokens: each call costs exactly 0.1 USD.
    fake.default("claude-sonnet-4-5", Reply(text="done", input_tokens=50, output_tokens=100))
    router = router_for(
        write_models(
            tmp_path / "m.yaml",
            fake,
            {t: ["anthropic/claude-sonnet-4-5"] for t in ("reasoning", "execution", "utility")},
            max_tokens=100,
            price=(0, 1000),
        ),
        monkeypatch,
    )
    issue = new_issue(raw, status="todo", budget_usd=Decimal("0.55"))
    run_id = uuid.uuid4()
    force_status(raw, issue, "in_progress", lease_owner=run_id)  # held by the run the workers call for
    outcomes: list[str] = []
    refusals: list[BudgetExceeded] = []
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait()
        try:
            router.complete(call_context(raw, issue), "execution", MESSAGES)
            outcomes.append("ok")
        except BudgetExceeded as refused:
            outcomes.append("refused")
            refusals.append(refused)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["ok"] * 5 + ["refused"] * 3
    # The router only refuses; what that does to the issue is the failure policy's, which the run applies.
    assert one(raw.execute("SELECT status FROM issues WHERE id = %s", (issue,)).fetchone()) == ("in_progress",)
    failures.handle(workflow_context("boss", "execute", router.settings), held(issue, run_id), refusals[0])
    assert len(fake.requests) == 5
    assert raw.execute("SELECT outcome, count(*) FROM llm_calls GROUP BY 1 ORDER BY 1").fetchall() == [
        ("budget_refused", 3),
        ("ok", 5),
    ]
    spent, reserved, status, reason = one(
        raw.execute(
            "SELECT spent_usd, reserved_usd, status, blocked_reason FROM issues WHERE id = %s", (issue,)
        ).fetchone()
    )
    assert spent == Decimal("0.5") and reserved == 0 and spent <= Decimal("0.55")
    assert (status, reason) == ("blocked", "budget")
    assert raw.execute("SELECT kind, status FROM approvals WHERE issue_id = %s", (issue,)).fetchall() == [
        ("budget", "pending")
    ]
    # `hq budget ID --add` resolves it: the issue goes back to work and the approval closes.
    assert run_hq("budget", str(issue), "--add", "1").exit_code == 0
    assert raw.execute("SELECT status FROM issues WHERE id = %s", (issue,)).fetchone() == ("todo",)


def test_agent_monthly_budget_is_enforced_without_blocking_the_issue(
    tmp_path: Path, fake: FakeAnthropic, monkeypatch: pytest.MonkeyPatch, raw: psycopg.Connection, boss: int
) -> None:
    fake.default("claude-sonnet-4-5", Reply(text="done", input_tokens=50, output_tokens=100))
    router = router_for(
        write_models(
            tmp_path / "m.yaml",
            fake,
            {t: ["anthropic/claude-sonnet-4-5"] for t in ("reasoning", "execution", "utility")},
            max_tokens=100,
            price=(0, 1000),
        ),
        monkeypatch,
    )
    issue = new_issue(raw, status="todo", budget_usd=10)
    context = call_context(raw, issue)
    context.agent_monthly_limit = Decimal("0.15")
    router.complete(context, "execution", MESSAGES)
    with pytest.raises(BudgetExceeded) as refused:
        router.complete(context, "execution", MESSAGES)
    assert refused.value.scope == "agent"
    assert raw.execute("SELECT status FROM issues WHERE id = %s", (issue,)).fetchone() == ("todo",)
    assert raw.execute("SELECT spent_usd, reserved_usd FROM budget_accounts WHERE scope = 'agent:boss'").fetchone() == (
        Decimal("0.1"),
        0,
    )


def test_secrets_never_reach_the_provider_or_the_rows(
    tmp_path: Path, fake: FakeAnthropic, monkeypatch: pytest.MonkeyPatch, raw: psycopg.Connection, boss: int
) -> None:
    canary = "987654321:AAcanaryCANARYcanaryCANARYcanary12345"
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", canary)
    fake.default("claude-haiku-4-5", error(400, f"echo: {canary}"))
    router = router_for(
        write_models(
            tmp_path / "m.yaml",
            fake,
            {t: ["anthropic/claude-haiku-4-5"] for t in ("reasoning", "execution", "utility")},
        ),
        monkeypatch,
    )
    from config.secrets import register_secrets

    register_secrets(*router.settings.secret_values())
    with pytest.raises(ModelRequestError):
        router.complete(
            call_context(raw, None),
            "utility",
            [{"role": "user", "content": f"the bot token is {canary} and key {KEY}"}],
        )
    sent = json.dumps(fake.requests)
    assert canary not in sent.replace(f'"{KEY}"', "")
    assert "canaryCANARY" not in json.dumps([str(r) for r in rows(raw)])


def test_unknown_price_and_bad_models_file_stop_at_start(
    tmp_path: Path, fake: FakeAnthropic, monkeypatch: pytest.MonkeyPatch, db_url: str
) -> None:
    unpriced = write_models(
        tmp_path / "m.yaml",
        fake,
        {t: ["anthropic/claude-from-the-future"] for t in ("reasoning", "execution", "utility")},
    )
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    monkeypatch.setenv("HQ_MODELS_FILE", str(unpriced))
    with pytest.raises(ConfigError, match="no price known for anthropic/claude-from-the-future"):
        ModelRouter(load_settings())
    broken = tmp_path / "broken.yaml"
    broken.write_text("tiers: {execution: [{model: 'no-slash'}]}\n")
    monkeypatch.setenv("HQ_MODELS_FILE", str(broken))
    result = run_hq("models")
    assert result.exit_code == 2
    assert "tiers.execution.0.model" in result.stderr and "offline" in result.stderr


def test_models_command_masks_keys_and_shows_health(
    tmp_path: Path, fake: FakeAnthropic, monkeypatch: pytest.MonkeyPatch, raw: psycopg.Connection, boss: int
) -> None:
    fake.default("claude-haiku-4-5", Reply(text="hi"))
    router = router_for(
        write_models(
            tmp_path / "m.yaml",
            fake,
            {t: ["anthropic/claude-haiku-4-5"] for t in ("reasoning", "execution", "utility")},
        ),
        monkeypatch,
    )
    router.complete(call_context(raw, None), "utility", MESSAGES)
    result = run_hq("models", "--json")
    assert result.exit_code == 0, result.stderr
    assert KEY not in result.stdout
    data = json.loads(result.stdout)
    assert data["offline"] is False
    utility = next(d for d in data["deployments"] if d["deployment"] == "utility-1")
    assert utility["calls"] == 1 and utility["errors"] == 0 and utility["api_key"].startswith("sk-a")


OFFLINE_PROBE = """
import json, uuid, sys
from models.router import ModelRouter, CallContext
from config.settings import load_settings
router = ModelRouter(load_settings())
assert router.models.offline
answers = {}
for tier in ("reasoning", "execution", "utility"):
    c = router.complete(CallContext(run_id=uuid.uuid4(), workflow="probe"), tier,
                        [{"role": "user", "content": "TASK: review\\n\\n```context\\n{}\\n```"}])
    answers[tier] = [c.deployment.model, c.input_tokens > 0, c.output_tokens > 0, json.loads(c.text)["passed"]]
print(json.dumps(answers))
"""


def test_offline_model_answers_every_tier_with_no_keys_and_no_network(db_url: str) -> None:
    dead = "http://127.0.0.1:9"  # nothing listens there: any network attempt fails
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env.update(HTTP_PROXY=dead, HTTPS_PROXY=dead, http_proxy=dead, https_proxy=dead, NO_PROXY="", no_proxy="")
    result = subprocess.run([sys.executable, "-c", OFFLINE_PROBE], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    answers = json.loads(result.stdout.strip().splitlines()[-1])
    assert answers == {
        tier: [f"hq-offline/{tier}", True, True, False] for tier in ("reasoning", "execution", "utility")
    }


# --- a call lost after it was sent ----------------------------------------------------------------------------
# A request that times out waiting for its answer (or whose connection drops after it was written) may have been
# received, run and billed by the provider: settling it at $0 and sending it again would let the ledger fall
# below the bill, once per retry. Only a failure before the request could leave this host is free and retried.

SENT_MODEL = "claude-sonnet-4-5"


def _sent_calls(raw: psycopg.Connection) -> list[tuple[str, Decimal, Decimal, str | None]]:
    return raw.execute("SELECT outcome, cost_usd, reserved_usd, error FROM llm_calls ORDER BY call_seq").fetchall()


def _issue_money(raw: psycopg.Connection, issue: int) -> tuple[Decimal, Decimal]:
    row = raw.execute("SELECT spent_usd, reserved_usd FROM issues WHERE id = %s", (issue,)).fetchone()
    assert row is not None
    return row[0], row[1]


def test_a_timeout_after_sending_is_charged_its_reservation_and_not_retried(
    tmp_path: Path, fake: FakeAnthropic, monkeypatch: pytest.MonkeyPatch, raw: psycopg.Connection, boss: int
) -> None:
    path = write_models(
        tmp_path / "m.yaml",
        fake,
        {t: [f"anthropic/{SENT_MODEL}"] for t in ("reasoning", "execution", "utility")},
        price=(3, 15),
        retries=2,
    )
    document = json.loads(path.read_text())
    document["router"]["timeout_seconds"] = 1
    path.write_text(json.dumps(document))
    router = router_for(path, monkeypatch)
    fake.default(SENT_MODEL, Reply(text="too late", delay_seconds=3))
    issue = new_issue(raw, status="todo", budget_usd=1)

    with pytest.raises(ModelUnavailable):
        router.complete(call_context(raw, issue), "execution", MESSAGES)

    assert fake.calls_for(SENT_MODEL) == 1  # not sent again
    ((outcome, cost, reserved, why),) = _sent_calls(raw)
    assert outcome == "error" and "charged its worst case" in (why or "")
    assert cost == reserved > 0
    assert _issue_money(raw, issue) == (cost.quantize(Decimal("0.000001")), 0)


def test_a_refused_connection_is_free_and_retried(
    tmp_path: Path, fake: FakeAnthropic, monkeypatch: pytest.MonkeyPatch, raw: psycopg.Connection, boss: int
) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there: the request never leaves this host
    path = write_models(
        tmp_path / "m.yaml",
        fake,
        {t: [f"anthropic/{SENT_MODEL}"] for t in ("reasoning", "execution", "utility")},
        price=(3, 15),
        retries=1,
    )
    document = json.loads(path.read_text())
    for tier in document["tiers"].values():
        tier[0]["api_base"] = f"http://127.0.0.1:{port}"
    path.write_text(json.dumps(document))
    router = router_for(path, monkeypatch)
    issue = new_issue(raw, status="todo", budget_usd=1)

    with pytest.raises(ModelUnavailable):
        router.complete(call_context(raw, issue), "execution", MESSAGES)

    recorded = _sent_calls(raw)
    assert len(recorded) == 2  # tried, and tried again: nothing could have been billed
    assert all(outcome == "error" and cost == 0 for outcome, cost, _reserved, _why in recorded)
    assert _issue_money(raw, issue) == (0, 0)
