"""Nothing an agent writes may run on the host: every way into git's config, hooks or a nested repository.

Each attack is planted exactly as a model's tool calls would plant it, through
``dispatch()``; then the workflow's commit runs. Every attack must be refused,
leave no trace of having run, and leave the workspace able to commit.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

from agents.tools.dispatch import dispatch
from config.settings import load_settings
from projects.workspace import Workspace, WorkspaceError
from scheduler.company import Company
from scheduler.heartbeat import run_beat
from tests.fakes.anthropic_server import FakeAnthropic, Reply
from tests.support.cli import run_hq
from tests.support.models import KEY, write_models
from tests.support.rows import new_issue, one, status_of
from tests.support.tools import context


@pytest.fixture()
def company(db_url: str, raw: psycopg.Connection) -> dict[str, int]:
    assert run_hq("agents", "sync").exit_code == 0
    return dict(raw.execute("SELECT slug, id FROM agents").fetchall())


def _nested_repo(prefix: str, config: str) -> list[tuple[str, str]]:
    return [
        (f"{prefix}/HEAD", "ref: refs/heads/main\n"),
        (f"{prefix}/config", config),
        (f"{prefix}/objects/x", ""),
        (f"{prefix}/refs/x", ""),
    ]


def attacks(proof: Path) -> dict[str, list[tuple[str, str]]]:
    """Each attack as the files a model would write; any of them running creates ``proof``."""
    run = f"touch {proof}; echo"
    return {
        "nested fsmonitor": _nested_repo("notes/.git", f'[core]\n\tfsmonitor = "{run}"\n'),
        "nested hooks": [
            *_nested_repo("notes/.git", "[core]\n\thooksPath = hooks\n"),
            ("notes/.git/hooks/pre-commit", f"#!/bin/sh\n{run}\n"),
            ("notes/.git/hooks/post-commit", f"#!/bin/sh\n{run}\n"),
        ],
        "nested sshCommand": _nested_repo(
            "notes/.git", f'[core]\n\tsshCommand = "{run}"\n[remote "origin"]\n\turl = ssh://x/y\n'
        ),
        "nested pager": _nested_repo("notes/.git", f'[core]\n\tpager = "{run}"\n'),
        "upper-case .GIT": [(".GIT/config", f'[core]\n\tfsmonitor = "{run}"\n'), (".GIT/HEAD", "ref: x\n")],
        "mixed-case nested .Git": _nested_repo("deep/er/.Git", f'[core]\n\tfsmonitor = "{run}"\n'),
        "nested alternates": [
            *_nested_repo("notes/.git", f'[core]\n\tfsmonitor = "{run}"\n'),
            ("notes/.git/objects/info/alternates", "../../../.git/objects\n"),
        ],
        "own .git hooks": [(".git/hooks/pre-commit", f"#!/bin/sh\n{run}\n")],
        "attributes filter": [(".gitattributes", "* filter=evil\n"), ("x/.gitattributes", "*.md diff=evil\n")],
        "submodules": [(".gitmodules", '[submodule "x"]\n\tpath = x\n\turl = ../../\n')],
        "ignore everything": [(".gitignore", "*\n")],
    }


@pytest.mark.parametrize("attack", sorted(attacks(Path("/proof"))))
def test_planted_git_files_are_refused_and_nothing_runs(
    attack: str, company: dict[str, int], raw: psycopg.Connection, tmp_path: Path
) -> None:
    proof = tmp_path / "proof"
    issue = new_issue(raw, status="todo", assignee_id=company["backend-engineer"])
    ctx = context(raw, "backend-engineer", issue)
    planted = attacks(proof)[attack]
    for step, (path, content) in enumerate(planted, start=1):
        result = dispatch(ctx, "write_file", {"path": path, "content": content}, step=step)
        assert result.outcome == "error" and "refused" in (result.error or ""), (path, result)
    assert dispatch(ctx, "write_file", {"path": "notes/plan.md", "content": "# Plan\n"}, step=99).ok
    workspace = Workspace(ctx.workspace_root())
    sha = workspace.commit(agent="backend-engineer", run_id=ctx.run_id, issue_id=issue, workflow="execute")
    assert sha is not None and not proof.exists()
    assert workspace.log()[0].startswith(sha)
    # Every call, refused or not, has its audit row.
    assert raw.execute("SELECT count(*) FROM tool_calls WHERE issue_id = %s", (issue,)).fetchone() == (
        len(planted) + 1,
    )


@pytest.mark.parametrize("spelling", [".git", ".GIT", ".Git", ".git.", ".git ", ".g\u200bit", "GIT~1"])
def test_git_is_refused_as_any_path_component(spelling: str, company: dict[str, int], raw: psycopg.Connection) -> None:
    issue = new_issue(raw, status="todo", assignee_id=company["backend-engineer"])
    ctx = context(raw, "backend-engineer", issue)
    for step, path in enumerate([f"{spelling}/config", f"a/{spelling}/config", f"a/b/{spelling}"], start=1):
        assert dispatch(ctx, "write_file", {"path": path, "content": "x"}, step=step).outcome == "error", path


def _git(root: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-C", str(root), *args],
        check=True,
        capture_output=True,
        env={"PATH": "/usr/bin:/bin", "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(root.parent)},
    )


def test_git_runs_hardened_whatever_the_repository_or_home_says(
    company: dict[str, int], raw: psycopg.Connection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Config, hooks and a global config planted by other means than the tools still run nothing."""
    proof = tmp_path / "proof"
    run = f"touch {proof}; echo"
    home = tmp_path / "home"
    home.mkdir()
    (home / ".gitconfig").write_text(f'[core]\n\tfsmonitor = "{run}"\n\thooksPath = {home}/hooks\n')
    (home / "hooks").mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(home / ".gitconfig"))
    issue = new_issue(raw, status="todo", assignee_id=company["backend-engineer"])
    ctx = context(raw, "backend-engineer", issue)
    assert dispatch(ctx, "write_file", {"path": "a.md", "content": "a\n"}, step=1).ok
    root = ctx.workspace_root()
    with (root / ".git" / "config").open("a") as config:
        config.write(f'[core]\n\tfsmonitor = "{run}"\n\tpager = "{run}"\n\tsshCommand = "{run}"\n')
    for hooks in (root / ".git" / "hooks", home / "hooks"):
        hooks.mkdir(exist_ok=True)
        for name in ("pre-commit", "post-commit", "commit-msg", "post-index-change"):
            (hooks / name).write_text(f"#!/bin/sh\n{run}\n")
            (hooks / name).chmod(0o755)
    workspace = Workspace(root)
    assert workspace.commit(agent="backend-engineer", run_id=ctx.run_id, issue_id=issue, workflow="execute")
    assert workspace.log() and not proof.exists()


def test_a_nested_repository_on_disk_is_refused_not_opened(
    company: dict[str, int], raw: psycopg.Connection, tmp_path: Path
) -> None:
    """However a nested repository got there, git is not run over it (it would read that repository's config)."""
    proof = tmp_path / "proof"
    issue = new_issue(raw, status="todo", assignee_id=company["backend-engineer"])
    ctx = context(raw, "backend-engineer", issue)
    assert dispatch(ctx, "write_file", {"path": "a.md", "content": "a\n"}, step=1).ok
    nested = ctx.workspace_root() / "vendor" / "lib"
    nested.mkdir(parents=True)
    _git(nested, "init", "-q")
    (nested / ".git" / "config").write_text(f'[core]\n\tfsmonitor = "touch {proof}; echo"\n')
    with pytest.raises(WorkspaceError, match="nested repository"):
        Workspace(ctx.workspace_root()).commit(agent="a", run_id=uuid.uuid4(), issue_id=issue, workflow="execute")
    assert not proof.exists()


def test_directory_targets_are_refused_and_no_temp_file_is_left(
    company: dict[str, int], raw: psycopg.Connection
) -> None:
    issue = new_issue(raw, status="todo", assignee_id=company["backend-engineer"])
    ctx = context(raw, "backend-engineer", issue)
    assert dispatch(ctx, "write_file", {"path": "notes/a.md", "content": "a"}, step=1).ok
    for step, path in enumerate([".", "./", "notes", "notes/", "notes/.", "notes/./"], start=2):
        result = dispatch(ctx, "write_file", {"path": path, "content": "x"}, step=step)
        assert result.outcome == "error" and "director" in (result.error or ""), (path, result)
    workspaces = ctx.workspace_root().parent
    assert sorted(p.name for p in workspaces.iterdir()) == [ctx.workspace_root().name]
    leftovers = [p for p in ctx.workspace_root().rglob("*.tmp")]
    assert leftovers == [] and (ctx.workspace_root() / "notes" / "a.md").read_text() == "a"


def test_nul_in_tool_arguments_is_refused_before_any_side_effect(
    company: dict[str, int], raw: psycopg.Connection
) -> None:
    issue = new_issue(raw, status="todo", assignee_id=company["backend-engineer"])
    ctx = context(raw, "backend-engineer", issue)
    cases: list[tuple[str, str | dict[str, Any]]] = [
        ("write_file", {"path": "a.md", "content": "before\x00after"}),
        ("write_file", {"path": "b\x00.md", "content": "x"}),
        ("comment", {"body": "nul\x00here"}),
        ("write_file", json.dumps({"path": "c.md", "content": "x", "extra\x00key": 1})),
    ]
    for step, (tool, arguments) in enumerate(cases, start=1):
        result = dispatch(ctx, tool, arguments, step=step)
        assert result.outcome == "invalid" and "NUL" in (result.error or ""), result
    assert not (ctx.workspace_root() / "a.md").exists() and not (ctx.workspace_root() / "c.md").exists()
    rows = raw.execute(
        "SELECT step, outcome, arguments::text FROM tool_calls WHERE issue_id = %s ORDER BY step", (issue,)
    ).fetchall()
    assert [(r[0], r[1]) for r in rows] == [(1, "invalid"), (2, "invalid"), (3, "invalid"), (4, "invalid")]
    assert "before\\\\u0000after" in rows[0][2]  # what was refused is on record, NUL shown escaped
    assert raw.execute("SELECT count(*) FROM comments WHERE issue_id = %s", (issue,)).fetchone() == (0,)


def test_a_file_holding_nul_read_back_is_audited(company: dict[str, int], raw: psycopg.Connection) -> None:
    """A tool result jsonb cannot hold (a NUL read from disk) is stored escaped, not lost with the audit row."""
    issue = new_issue(raw, status="todo", assignee_id=company["backend-engineer"])
    ctx = context(raw, "backend-engineer", issue)
    assert dispatch(ctx, "write_file", {"path": "a.md", "content": "x"}, step=1).ok
    (ctx.workspace_root() / "a.md").write_bytes(b"left\x00right")
    result = dispatch(ctx, "read_file", {"path": "a.md"}, step=2)
    assert result.ok and result.result == {"path": "a.md", "content": "left\x00right"}
    stored = raw.execute("SELECT result->>'content' FROM tool_calls WHERE step = 2").fetchone()
    assert stored == ("left\\u0000right",)


def test_a_commit_failure_is_an_issue_failure_not_a_crashed_beat(
    company: dict[str, int], raw: psycopg.Connection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real execute workflow: a scripted model plants every attack, then a broken repository fails the commit."""
    proof = tmp_path / "proof"
    planted = [call for files in attacks(proof).values() for call in files]
    fake = FakeAnthropic().start()
    try:
        calls = [{"name": "write_file", "input": {"path": path, "content": content}} for path, content in planted]
        fake.script(
            "claude-sonnet-4-5",
            Reply(text="Planting.", tool_calls=calls),
            Reply(
                text="", tool_calls=[{"name": "write_file", "input": {"path": "deliverable.md", "content": "# Done\n"}}]
            ),
            Reply(text="DONE: delivered"),
        )
        fake.default("claude-sonnet-4-5", Reply(text="DONE: delivered"))
        models = write_models(
            tmp_path / "m.yaml",
            fake,
            {t: ["anthropic/claude-sonnet-4-5"] for t in ("reasoning", "execution", "utility")},
        )
        monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
        monkeypatch.setenv("HQ_MODELS_FILE", str(models))
        settings = load_settings()
        issue = new_issue(raw, "Write it", status="todo", assignee_id=company["backend-engineer"], budget_usd=5)
        runtime = Company(settings, threads=1).runtime
        workspace = Workspace(settings.data_path / "workspaces" / f"issue-{issue}").ensure()
        (workspace.root / ".git" / "index.lock").write_text("")  # another git "holds" the index: add fails
        beat = run_beat("backend-engineer", runtime)
        assert beat.outcome == "ok" and not proof.exists()
        assert status_of(raw, issue) == "todo"
        (attempts,) = one(raw.execute("SELECT attempts FROM issues WHERE id = %s", (issue,)).fetchone())
        assert attempts == 1
        why = raw.execute("SELECT body FROM comments WHERE issue_id = %s AND kind = 'failure'", (issue,)).fetchone()
        assert why is not None and "Could not commit the workspace" in why[0] and "index.lock" in why[0]
        refused = raw.execute(
            "SELECT count(*) FROM tool_calls WHERE issue_id = %s AND outcome = 'error'", (issue,)
        ).fetchone()
        assert refused == (len(planted),)
        # Once the repository is healthy again, the same issue commits and goes to review.
        (workspace.root / ".git" / "index.lock").unlink()
        fake.script(
            "claude-sonnet-4-5",
            Reply(
                text="", tool_calls=[{"name": "write_file", "input": {"path": "deliverable.md", "content": "# Done\n"}}]
            ),
            Reply(text="DONE: delivered"),
        )
        assert run_beat("backend-engineer", runtime).outcome == "ok"
        assert status_of(raw, issue) == "in_review" and workspace.log() and not proof.exists()
    finally:
        fake.stop()


def test_a_symlink_into_git_is_no_way_in(company: dict[str, int], raw: psycopg.Connection, tmp_path: Path) -> None:
    """A link to .git (made by a deploy command or a cloned project, not by the tools) does not open it."""
    import os

    proof = tmp_path / "proof"
    issue = new_issue(raw, status="todo", assignee_id=company["backend-engineer"])
    ctx = context(raw, "backend-engineer", issue)
    assert dispatch(ctx, "write_file", {"path": "a.md", "content": "a\n"}, step=1).ok
    os.symlink(".git", ctx.workspace_root() / "docs")
    writes = [
        ("docs/config", f'[filter "evil"]\n\tclean = touch {proof}\n'),
        ("docs/info/attributes", "* filter=evil\n"),
    ]
    for step, (path, content) in enumerate(writes, start=2):
        result = dispatch(ctx, "write_file", {"path": path, "content": content}, step=step)
        assert result.outcome == "error" and "git's own files" in (result.error or ""), result
    (ctx.workspace_root() / "docs").unlink()
    assert dispatch(ctx, "write_file", {"path": "b.md", "content": "b\n"}, step=9).ok
    assert Workspace(ctx.workspace_root()).commit(agent="a", run_id=uuid.uuid4(), issue_id=issue, workflow="execute")
    assert not proof.exists()


@pytest.mark.parametrize(
    "arguments",
    [
        '{"path": "nan.md", "content": "hi", "x": NaN}',
        '{"path": "inf.md", "content": "hi", "x": Infinity}',
        '{"path": "lo\\udcff.md", "content": "hi"}',
        '{"path": "s.md", "content": "hi", "x": "\\ud800"}',
        '{"path": "deep.md", "content": "hi", "x": ' + "[" * 3000 + "]" * 3000 + "}",
    ],
)
def test_arguments_the_audit_row_cannot_hold_are_refused_first(
    arguments: str, company: dict[str, int], raw: psycopg.Connection
) -> None:
    issue = new_issue(raw, status="todo", assignee_id=company["backend-engineer"])
    ctx = context(raw, "backend-engineer", issue)
    result = dispatch(ctx, "write_file", arguments, step=1)
    assert result.outcome == "invalid", result
    assert not ctx.workspace_root().exists() or not [p for p in ctx.workspace_root().iterdir() if p.name != ".git"]
    assert raw.execute("SELECT outcome FROM tool_calls WHERE issue_id = %s", (issue,)).fetchall() == [("invalid",)]
    assert dispatch(ctx, "list_files", {}, step=2).ok  # the workspace still works
