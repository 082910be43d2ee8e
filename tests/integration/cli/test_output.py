"""Output to a pipe keeps every cell whole: `hq models | grep claude` finds claude.

rich sizes output that is not a terminal to 80 columns and cuts table cells to fit
(`anthro…`); through a pipe each table row must be one line holding its full text, while a
terminal still gets a table that fits. `--json` is unchanged.
"""

from __future__ import annotations

import json
import re

import psycopg

from tests.support.cli import LONG_TITLE, run_hq, run_hq_process

KEYS = {
    "ANTHROPIC_API_KEY": "sk-ant-test-000000000000000000000000",
    "OPENAI_API_KEY": "sk-test-0000000000000000000000",
    "GEMINI_API_KEY": "AIzaTest00000000000000000000000000000",
    "COLUMNS": "80",
}


def rows_containing(output: str, needle: str) -> list[str]:
    return [line for line in output.splitlines() if needle in line]


def test_models_through_a_pipe_shows_whole_model_names(db_url: str) -> None:
    result = run_hq_process("models", env=KEYS)  # stdout is a pipe, as in `hq models | grep claude`
    assert result.returncode == 0, result.stderr
    for model in (
        "anthropic/claude-opus-4-7",
        "anthropic/claude-sonnet-4-6",
        "anthropic/claude-haiku-4-5",
        "openai/gpt-4.1-mini",
        "gemini/gemini-2.5-flash-lite",
    ):
        lines = rows_containing(result.stdout, model)
        assert len(lines) == 1, (model, result.stdout)
        tier = "utility" if model.endswith(("haiku-4-5", "mini", "lite")) else None
        if tier:  # the row is one line: its other cells are on it too
            assert tier in lines[0], lines[0]
    assert "…" not in re.sub(r"\S{4}…\*\*\*", "", result.stdout)  # nothing cut (masked keys read `sk-a…***`)


def test_models_json_is_unchanged(db_url: str) -> None:
    result = run_hq_process("models", "--json", env=KEYS)
    assert result.returncode == 0, result.stderr
    models = [d["model"] for d in json.loads(result.stdout)["deployments"]]
    assert "anthropic/claude-opus-4-7" in models and len(models) == 9


def test_issues_through_a_pipe_keep_a_long_title_whole_on_one_line(db_url: str, raw: psycopg.Connection) -> None:
    assert run_hq("agents", "sync").exit_code == 0
    created = run_hq("issue", "create", LONG_TITLE, "--assign", "backend-engineer")
    assert created.exit_code == 0, created.stderr
    result = run_hq_process("issues", env={"COLUMNS": "80"})
    assert result.returncode == 0, result.stderr
    lines = rows_containing(result.stdout, "marker-7731")
    assert len(lines) == 1, result.stdout
    assert LONG_TITLE in lines[0] and "backend-engineer" in lines[0] and "todo" in lines[0]
    # In-process, into a buffer (what a script capturing output gets), the same holds.
    assert rows_containing(run_hq("issues").stdout, LONG_TITLE)
