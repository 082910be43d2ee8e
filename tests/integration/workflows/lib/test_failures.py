"""One failure policy for model calls, seen through real beats of every workflow that holds an issue.

The provider is a fake Anthropic server on 127.0.0.1 driven by LiteLLM's real
client; each case runs the workflow's own beat and reads the rows it left.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from config.settings import load_settings
from scheduler.company import Company
from scheduler.heartbeat import BeatContext, run_beat
from tests.fakes.anthropic_server import FakeAnthropic, Reply, error
from tests.support.cli import run_hq
from tests.support.models import KEY, write_models
from tests.support.rows import force_status, new_issue, one

MODEL = "claude-sonnet-4-5"
TOO_LONG = "prompt is too long: 250000 tokens > 200000 maximum"


@dataclass(frozen=True)
class Case:
    """A workflow, the agent whose beat runs it, and an issue it will claim."""

    workflow: str
    agent: str
    status: str
    columns: dict[str, str]  # column -> slug of the agent it names


CASES = [
    Case("execute", "backend-engineer", "todo", {"assignee_id": "backend-engineer"}),
    Case(
        "review_gate",
        "eng-lead-platform",
        "in_review",
        {"assignee_id": "backend-engineer", "reviewer_id": "eng-lead-platform"},
    ),
    Case(
        "escalate",
        "eng-lead-platform",
        "blocked",
        {"assignee_id": "backend-engineer", "escalated_to_id": "eng-lead-platform"},
    ),
    Case("assign", "eng-lead-platform", "backlog", {"assignee_id": "eng-lead-platform"}),
]
# What a refunded or counted failure leaves: each claim's own way back.
LEFT_IN = {"execute": "todo", "review_gate": "in_review", "escalate": "blocked", "assign": "backlog"}


@pytest.fixture()
def fake() -> Iterator[FakeAnthropic]:
    server = FakeAnthropic().start()
    yield server
    server.stop()


@pytest.fixture()
def runtime(db_url: str, fake: FakeAnthropic, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> BeatContext:
    assert run_hq("agents", "sync").exit_code == 0
    models = write_models(
        tmp_path / "m.yaml", fake, {t: [f"anthropic/{MODEL}"] for t in ("reasoning", "execution", "utility")}, retries=0
    )
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    monkeypatch.setenv("HQ_MODELS_FILE", str(models))
    return Company(load_settings(), threads=1).runtime


def seed(raw: psycopg.Connection, case: Case, title: str = "Qwzx the frobnicator") -> int:
    ids: dict[str, int] = dict(raw.execute("SELECT slug, id FROM agents").fetchall())
    columns: dict[str, object] = {column: ids[slug] for column, slug in case.columns.items()}
    if case.status == "blocked":
        columns.update(blocked_reason="agent", escalation_chain=["eng-lead-platform"])
    issue = new_issue(raw, title, status="backlog")
    force_status(raw, issue, case.status, **columns)
    return issue


def row(raw: psycopg.Connection, issue: int) -> tuple[str, str | None, int]:
    status, reason, attempts = one(
        raw.execute("SELECT status, blocked_reason, attempts FROM issues WHERE id = %s", (issue,)).fetchone()
    )
    return status, reason, attempts


def notifications(raw: psycopg.Connection, event: str) -> int:
    (count,) = one(raw.execute("SELECT count(*) FROM notifications WHERE event = %s", (event,)).fetchone())
    return int(count)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.workflow)
def test_a_revoked_key_blocks_the_work_once_tells_a_human_once_and_pauses_the_deployment(
    case: Case, runtime: BeatContext, fake: FakeAnthropic, raw: psycopg.Connection
) -> None:
    fake.default(MODEL, error(401, "invalid x-api-key"))
    first = seed(raw, case)
    run_beat(case.agent, runtime)
    assert row(raw, first)[:2] == ("blocked", "provider_auth")
    assert fake.calls_for(MODEL) == 1  # one attempt: a refused key is never retried
    assert notifications(raw, "provider_auth") == 1
    # The next piece of work does not ask again: the deployment is paused, so the work is only given back.
    second = seed(raw, case, "Qwzx the other frobnicator")
    beat = run_beat(case.agent, runtime)
    assert beat.outcome == "degraded"
    assert fake.calls_for(MODEL) == 1
    assert row(raw, second) == (LEFT_IN[case.workflow], "agent" if case.status == "blocked" else None, 0)
    assert notifications(raw, "provider_auth") == 1


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.workflow)
def test_a_refused_request_counts_an_attempt_in_every_workflow_alike(
    case: Case, runtime: BeatContext, fake: FakeAnthropic, raw: psycopg.Connection
) -> None:
    fake.default(MODEL, error(400, TOO_LONG))
    issue = seed(raw, case)
    run_beat(case.agent, runtime)
    status, _reason, attempts = row(raw, issue)
    assert (status, attempts) == (LEFT_IN[case.workflow], 1)
    why = raw.execute("SELECT body FROM comments WHERE issue_id = %s AND kind = 'failure'", (issue,)).fetchall()
    assert len(why) == 1 and "prompt is too long" in why[0][0]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.workflow)
def test_an_overloaded_provider_refunds_in_every_workflow_alike(
    case: Case, runtime: BeatContext, fake: FakeAnthropic, raw: psycopg.Connection
) -> None:
    fake.default(MODEL, error(529, "Overloaded"))
    issue = seed(raw, case)
    beat = run_beat(case.agent, runtime)
    assert beat.outcome == "degraded"
    assert row(raw, issue)[0::2] == (LEFT_IN[case.workflow], 0)
    lease = one(raw.execute("SELECT lease_owner FROM issues WHERE id = %s", (issue,)).fetchone())
    assert lease == (None,)
    assert raw.execute(
        "SELECT count(*) FROM comments WHERE issue_id = %s AND kind = 'failure'", (issue,)
    ).fetchone() == (0,)


def test_a_refused_request_that_uses_the_last_attempt_blocks_and_escalates(
    runtime: BeatContext, fake: FakeAnthropic, raw: psycopg.Connection
) -> None:
    fake.default(MODEL, error(400, TOO_LONG))
    issue = seed(raw, CASES[1])  # in review: the reviewer's claim counts nothing itself
    raw.execute("UPDATE issues SET attempts = max_attempts - 1 WHERE id = %s", (issue,))
    run_beat("eng-lead-platform", runtime)
    assert row(raw, issue)[:2] == ("blocked", "max_attempts")


def test_an_issue_out_of_money_is_blocked_and_a_human_asked_by_the_policy_not_the_router(
    runtime: BeatContext, fake: FakeAnthropic, raw: psycopg.Connection
) -> None:
    issue = seed(raw, CASES[0])
    raw.execute("UPDATE issues SET budget_usd = 0.0001 WHERE id = %s", (issue,))
    run_beat("backend-engineer", runtime)
    assert row(raw, issue)[:2] == ("blocked", "budget")
    assert fake.calls_for(MODEL) == 0
    approvals = raw.execute("SELECT kind, status FROM approvals WHERE issue_id = %s", (issue,)).fetchall()
    assert approvals == [("budget", "pending")]
    assert notifications(raw, "budget_exhausted") == 1


def test_refused_credentials_fail_over_to_a_deployment_with_other_ones(
    db_url: str, fake: FakeAnthropic, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, raw: psycopg.Connection
) -> None:
    """A 401 is not the request's fault: the call moves on to a deployment with other credentials, if any."""
    import json

    from models.router import ModelRouter
    from tests.support.models import MESSAGES, call_context

    assert run_hq("agents", "sync").exit_code == 0
    models = write_models(tmp_path / "m.yaml", fake, {t: [f"anthropic/{MODEL}"] for t in ("reasoning", "utility")})
    document = json.loads(models.read_text())
    revoked = {"model": "anthropic/claude-haiku-4-5", "api_key_env": "REVOKED_KEY", "api_base": fake.url}
    working = {"model": f"anthropic/{MODEL}", "api_key_env": "ANTHROPIC_API_KEY", "api_base": fake.url}
    document["tiers"]["execution"] = [revoked, working]
    models.write_text(json.dumps(document))
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    monkeypatch.setenv("REVOKED_KEY", "sk-ant-revoked-0123456789abcdef")
    monkeypatch.setenv("HQ_MODELS_FILE", str(models))
    fake.default("claude-haiku-4-5", error(401, "invalid x-api-key"))
    fake.default(MODEL, Reply(text="answered"))
    router = ModelRouter(load_settings())
    assert router.complete(call_context(raw, None, "backend-engineer"), "execution", MESSAGES).text == "answered"
    assert fake.calls_for("claude-haiku-4-5") == 1 and fake.calls_for(MODEL) == 1
    assert router.paused == {"execution-1"}  # the refused key only; the working one keeps serving
    outcomes = raw.execute("SELECT deployment, outcome FROM llm_calls ORDER BY id").fetchall()
    assert outcomes == [("execution-1", "error"), ("execution-2", "fallback")]
