"""The tool-use loop: the model's tool calls go through the dispatcher and come back as results."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import psycopg
import pytest

from agents.tools.context import ToolContext
from config.settings import get_settings, load_settings
from db.engine import get_engine
from models.protocol import user_message
from models.router import CallContext, ModelRouter
from runtimes.builtin import run_tool_loop
from tests.fakes.anthropic_server import FakeAnthropic, Reply
from tests.support.cli import run_hq
from tests.support.models import KEY, write_models
from tests.support.rows import agent_record, new_issue, one


def contexts(raw: psycopg.Connection, slug: str, issue_id: int) -> tuple[CallContext, ToolContext]:
    run_id = uuid.uuid4()
    agent = agent_record(slug)
    call = CallContext(run_id=run_id, workflow="execute", agent_id=agent.id, agent_slug=slug, issue_id=issue_id)
    tool = ToolContext(
        agent=agent, issue_id=issue_id, run_id=run_id, workflow="execute", settings=get_settings(), engine=get_engine()
    )
    return call, tool


@pytest.fixture()
def company(db_url: str, raw: psycopg.Connection) -> dict[str, int]:
    assert run_hq("agents", "sync").exit_code == 0
    return dict(raw.execute("SELECT slug, id FROM agents").fetchall())


def test_anthropic_tool_use_round_trip(
    tmp_path: Path, company: dict[str, int], raw: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeAnthropic().start()
    try:
        fake.script(
            "claude-sonnet-4-5",
            Reply(
                text="Writing the notes.",
                tool_calls=[{"name": "write_file", "input": {"path": "notes.md", "content": "# Notes\n"}}],
            ),
            Reply(text="DONE: notes written"),
        )
        models = write_models(
            tmp_path / "m.yaml",
            fake,
            {t: ["anthropic/claude-sonnet-4-5"] for t in ("reasoning", "execution", "utility")},
        )
        monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
        monkeypatch.setenv("HQ_MODELS_FILE", str(models))
        router = ModelRouter(load_settings())
        issue = new_issue(raw, "Write notes", status="todo", assignee_id=company["backend-engineer"])
        call, tool = contexts(raw, "backend-engineer", issue)
        result = run_tool_loop(
            router, call, tool, tier="execution", system="You are a backend engineer.", user="Write notes.md"
        )
        assert result.text == "DONE: notes written" and not result.exhausted
        assert (tool.workspace_root() / "notes.md").read_text() == "# Notes\n"
        assert raw.execute("SELECT tool, outcome, step FROM tool_calls").fetchall() == [("write_file", "ok", 1)]
        assert raw.execute("SELECT count(*) FROM llm_calls WHERE outcome = 'ok'").fetchone() == (2,)
        second = fake.requests[-1]["body"]
        tool_names = [t["name"] for t in second["tools"]]
        assert "write_file" in tool_names and "deploy" not in tool_names  # only its own toolsets
        results = [
            block
            for m in second["messages"]
            if isinstance(m["content"], list)
            for block in m["content"]
            if block.get("type") == "tool_result"
        ]
        assert len(results) == 1 and "sha256" in json.dumps(results[0])
    finally:
        fake.stop()


def test_step_limit_stops_a_model_that_never_finishes(
    tmp_path: Path, company: dict[str, int], raw: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeAnthropic().start()
    try:
        fake.default("claude-sonnet-4-5", Reply(text="", tool_calls=[{"name": "list_files", "input": {}}]))
        models = write_models(
            tmp_path / "m.yaml",
            fake,
            {t: ["anthropic/claude-sonnet-4-5"] for t in ("reasoning", "execution", "utility")},
        )
        monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
        monkeypatch.setenv("HQ_MODELS_FILE", str(models))
        issue = new_issue(raw, "Loop", status="todo", assignee_id=company["backend-engineer"])
        call, tool = contexts(raw, "backend-engineer", issue)
        result = run_tool_loop(
            ModelRouter(load_settings()), call, tool, tier="execution", system="s", user="u", max_steps=3
        )
        assert result.exhausted and len(result.completions) == 3
        assert raw.execute("SELECT count(*) FROM tool_calls").fetchone() == (3,)
    finally:
        fake.stop()


def test_offline_model_works_an_issue_through_the_tools(company: dict[str, int], raw: psycopg.Connection) -> None:
    router = ModelRouter(get_settings())
    assert router.models.offline
    issue = new_issue(raw, "Write the launch post", status="todo", assignee_id=company["content-writer"], budget_usd=1)
    call, tool = contexts(raw, "content-writer", issue)
    context = {
        "agent": {"slug": "content-writer", "title": "Content Writer", "checklist": ["Facts are sourced."]},
        "issue": {"id": issue, "title": "Write the launch post", "body": ""},
        "deliverable_path": "post.md",
    }
    result = run_tool_loop(
        router, call, tool, tier="execution", system="You write.", user=user_message("execute", "Do the work.", context)
    )
    assert result.text.startswith("DONE:")
    assert [r.name for r in result.tool_results] == ["write_file", "publish"]
    assert "Facts are sourced." in (tool.workspace_root() / "post.md").read_text()
    spent = one(raw.execute("SELECT spent_usd FROM issues WHERE id = %s", (issue,)).fetchone())[0]
    cost = one(
        raw.execute("SELECT sum(cost_usd), min(input_tokens) FROM llm_calls WHERE issue_id = %s", (issue,)).fetchone()
    )
    assert spent > 0 and spent == cost[0] and cost[1] > 0


def test_offline_block_directive(company: dict[str, int], raw: psycopg.Connection) -> None:
    issue = new_issue(raw, "Migrate billing [offline:block]", status="todo", assignee_id=company["backend-engineer"])
    call, tool = contexts(raw, "backend-engineer", issue)
    context = {
        "agent": {"slug": "backend-engineer"},
        "issue": {"id": issue, "title": "Migrate billing [offline:block]"},
    }
    result = run_tool_loop(
        ModelRouter(get_settings()),
        call,
        tool,
        tier="execution",
        system="s",
        user=user_message("execute", "Do the work.", context),
    )
    assert result.text.startswith("BLOCKED:")
    assert tool.outcome.blocked_reason is not None
