"""Toolset `code` (and the workspace tools) in a project issue's worktree, called as a model would: through dispatch().

The worktree is a real one, prepared by the product (projects/repo/work.py), of a real bare remote; the
commands run in the real sandbox.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import psycopg
import pytest

from agents.tools.context import ToolContext
from config.settings import get_settings
from db.engine import get_engine
from tests.support.cli import run_hq
from tests.support.projects import (
    CALC,
    GOOD_MUL,
    ToolRun,
    add_project,
    make_remote,
    needs_bwrap,
    project_issue,
    project_run,
    sample_files,
)
from tests.support.rows import agent_record, new_issue

pytestmark = needs_bwrap

PROJECT_YAML = (
    "commands:\n"
    "  test: [python3, -m, unittest, -q]\n"
    "  where: [python3, -c, \"import os; print('cwd', os.getcwd(), 'issue', os.environ.get('HQ_ISSUE_ID'))\"]\n"
    "  deploy: [python3, -c, \"print('deployed')\"]\n"
    "  slow: [python3, -c, \"import time; time.sleep(3); print('slept')\"]\n"
    "gate: [test]\n"
)
TWICE = "x = 1\nx = 1\n"


@pytest.fixture()
def outside(tmp_path: Path) -> Path:
    """A file outside the worktree that a symlink in the repository points at."""
    target = tmp_path / "outside" / "secret.py"
    target.parent.mkdir()
    target.write_text("SECRET = 1\n")
    return target


@pytest.fixture()
def tools(db_url: str, raw: psycopg.Connection, tmp_path: Path, outside: Path) -> ToolRun:
    assert run_hq("agents", "sync").exit_code == 0
    files = sample_files() | {".hq/project.yaml": PROJECT_YAML, "twice.py": TWICE}
    links = {"escape.py": str(outside), "escape_dir": str(outside.parent), "inner.py": "calc.py"}
    remote = make_remote(tmp_path, files, links=links)
    project_id = add_project(raw, remote)
    return project_run(project_id, project_issue(raw, project_id, "Add mul", ""))


# --- edit_file ------------------------------------------------------------------------------------------------


def test_edit_file_replaces_exactly_one_occurrence(tools: ToolRun) -> None:
    written = tools.ok("edit_file", path="calc.py", old_text="    return a + b\n", new_text="    return a + b\n\n\n")
    assert written["path"] == "calc.py"
    mul = "a + b\n\n\ndef mul(a, b):\n    return a * b\n"
    tools.ok("edit_file", path="calc.py", old_text="a + b\n\n\n", new_text=mul)
    assert (tools.work.worktree.root / "calc.py").read_text() == GOOD_MUL
    # A new text that holds the old one is written as given: the replacement does not run on its own result.
    tools.ok("edit_file", path="calc.py", old_text="a * b", new_text="a * b  # not a * b")
    assert (tools.work.worktree.root / "calc.py").read_text().count("a * b") == 2


def test_edit_file_names_the_path_when_the_old_text_is_missing(tools: ToolRun) -> None:
    error = tools.error("edit_file", path="calc.py", old_text="return a - b", new_text="return a * b")
    assert "does not occur in calc.py" in error
    assert (tools.work.worktree.root / "calc.py").read_text() == CALC


def test_edit_file_counts_the_occurrences_when_the_old_text_is_not_unique(tools: ToolRun) -> None:
    error = tools.error("edit_file", path="twice.py", old_text="x = 1", new_text="x = 2")
    assert "occurs 2 times in twice.py" in error
    assert (tools.work.worktree.root / "twice.py").read_text() == TWICE


def test_edit_file_of_a_missing_file_is_an_error(tools: ToolRun) -> None:
    assert "no such file: nothing.py" in tools.error("edit_file", path="nothing.py", old_text="a", new_text="b")


def test_an_empty_old_text_is_invalid(tools: ToolRun) -> None:
    result = tools("edit_file", path="calc.py", old_text="", new_text="x")
    assert result.outcome == "invalid" and "old_text" in (result.error or "")


REFUSED = {
    "../calc.py": "'..' is refused",
    "sub/../../x.py": "'..' is refused",
    "/etc/passwd": "absolute paths are refused",
    ".git/config": "git's own files",
    ".GIT/HEAD": "git's own files",
    "escape.py": "leads outside the workspace",
    "escape_dir/secret.py": "leads outside the workspace",
}


@pytest.mark.parametrize("path", sorted(REFUSED))
def test_path_rules_hold_in_the_worktree(path: str, tools: ToolRun, outside: Path) -> None:
    git_file = (tools.work.worktree.root / ".git").read_text()
    assert REFUSED[path] in tools.error("edit_file", path=path, old_text="SECRET", new_text="STOLEN")
    assert REFUSED[path] in tools.error("write_file", path=path, content="SECRET = 2\n")
    assert REFUSED[path] in tools.error("read_file", path=path)
    assert outside.read_text() == "SECRET = 1\n"
    assert (tools.work.worktree.root / ".git").read_text() == git_file  # the worktree's link to its repository


def test_a_symlink_inside_the_worktree_may_be_followed(tools: ToolRun) -> None:
    assert tools.ok("read_file", path="inner.py")["content"] == CALC


# --- run_command ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["rm", "bash", "python3 -c 'print(1)'", "deploy"])
def test_run_command_refuses_a_name_the_run_may_not_use(name: str, tools: ToolRun) -> None:
    error = tools.error("run_command", name=name)
    assert f"{name!r} is not a command this run may use" in error
    assert "test" in error and "where" in error  # it says which it may use
    assert "deployed" not in error


def test_run_command_runs_a_project_command_in_the_sandbox(tools: ToolRun) -> None:
    where = tools.ok("run_command", name="where")
    assert where["exit_code"] == 0 and where["timed_out"] is False
    assert f"cwd /workspace issue {tools.ctx.issue_id}" in where["output_tail"]  # the sandbox's view, not the host's


def test_run_command_longer_than_postgres_allows_an_idle_transaction_holds_none(
    tools: ToolRun, raw: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A suite runs for minutes; PostgreSQL ends a session idle in a transaction after
    HQ_IDLE_IN_TRANSACTION_TIMEOUT_MS (60 s by default). The command ran inside the call's transaction, so a
    command longer than that lost the call's row and its evidence: the dispatcher holds none while it runs."""
    from config.settings import reset_settings

    monkeypatch.setenv("HQ_IDLE_IN_TRANSACTION_TIMEOUT_MS", "1000")  # every transaction of hq's: idle for 1 s at most
    reset_settings()
    slow = tools.ok("run_command", name="slow")
    assert slow["exit_code"] == 0 and "slept" in slow["output_tail"] and slow["seconds"] >= 3
    calls = raw.execute("SELECT outcome FROM tool_calls WHERE run_id = %s", (tools.ctx.run_id,)).fetchall()
    evidence = raw.execute(
        "SELECT exit_code FROM check_runs WHERE issue_id = %s AND command = 'slow'", (tools.ctx.issue_id,)
    ).fetchall()
    assert calls == [("ok",)] and evidence == [(0,)]


def test_run_command_returns_the_tests_exit_code_and_output_tail(tools: ToolRun) -> None:
    failed = tools.ok("run_command", name="test")
    assert failed["exit_code"] != 0 and "cannot import name 'mul'" in failed["output_tail"]
    assert isinstance(failed["seconds"], float)
    tools.ok("write_file", path="calc.py", content=GOOD_MUL)
    passed = tools.ok("run_command", name="test")
    assert passed["exit_code"] == 0 and "OK" in passed["output_tail"]


def test_extra_arguments_cannot_smuggle_a_command_line(tools: ToolRun) -> None:
    result = tools.ok("run_command", name="where", argv=["sh", "-c", "echo pwned"], shell="echo pwned")
    assert "pwned" not in result["output_tail"] and "cwd /workspace" in result["output_tail"]


# --- search and diff ------------------------------------------------------------------------------------------


def test_search_finds_a_pattern_in_tracked_and_new_files(tools: ToolRun) -> None:
    found = tools.ok("search", pattern=r"def (add|mul)")
    assert found == {"matches": ["calc.py:1:def add(a, b):"], "truncated": False}
    tools.ok("write_file", path="lib/extra.py", content="def mul(a, b):\n    return a * b\n")
    assert tools.ok("search", pattern="def mul")["matches"] == ["lib/extra.py:1:def mul(a, b):"]
    assert tools.ok("search", pattern="import", glob="test_*.py")["matches"][0].startswith("test_calc.py:")
    assert tools.ok("search", pattern="no such thing anywhere") == {"matches": [], "truncated": False}


def test_diff_shows_the_change_against_the_base(tools: ToolRun) -> None:
    assert tools.ok("diff") == {"stat": "", "patch": ""}
    tools.ok("edit_file", path="calc.py", old_text="a + b\n", new_text="a + b\n\n\ndef mul(a, b):\n    return a * b\n")
    tools.ok("write_file", path="notes/new.md", content="# New\n")
    shown = tools.ok("diff")
    assert "calc.py" in shown["stat"] and "notes/new.md" in shown["stat"]
    assert "+def mul(a, b):" in shown["patch"] and "+# New" in shown["patch"]
    assert "def add" not in [line[1:] for line in shown["patch"].splitlines() if line[:1] in "+-"]


def test_code_tools_need_a_project(db_url: str, raw: psycopg.Connection) -> None:
    assert run_hq("agents", "sync").exit_code == 0
    issue = new_issue(raw, status="todo")
    ctx = ToolContext(
        agent=agent_record("backend-engineer"),
        issue_id=issue,
        run_id=uuid.uuid4(),
        workflow="execute",
        settings=get_settings(),
        engine=get_engine(),
    )
    tools = ToolRun(ctx)
    for tool, arguments in (("run_command", {"name": "test"}), ("diff", {}), ("search", {"pattern": "x"})):
        assert "this issue has no project" in tools.error(tool, **arguments)
