"""Tools: toolsets enforced, arguments validated, workspaces confined, every call recorded once."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import psycopg
import pytest

from agents.tools.dispatch import dispatch
from tests.support.cli import run_hq
from tests.support.rows import new_issue
from tests.support.tools import context


@pytest.fixture()
def company(db_url: str, raw: psycopg.Connection) -> dict[str, int]:
    assert run_hq("agents", "sync").exit_code == 0
    return dict(raw.execute("SELECT slug, id FROM agents").fetchall())


def tool_rows(raw: psycopg.Connection) -> list[tuple]:
    return raw.execute("SELECT tool, outcome, error FROM tool_calls ORDER BY id").fetchall()


def test_workspace_refuses_escapes(company: dict[str, int], raw: psycopg.Connection, tmp_path: Path) -> None:
    issue = new_issue(raw, status="todo", assignee_id=company["backend-engineer"])
    ctx = context(raw, "backend-engineer", issue)
    assert dispatch(ctx, "write_file", {"path": "notes/plan.md", "content": "# plan"}, step=1).ok
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, ctx.workspace_root() / "escape")
    for step, path in enumerate(
        ["../../etc/passwd", "/etc/passwd", "escape/owned.txt", ".git/config", "notes/../../x", ""], start=2
    ):
        result = dispatch(ctx, "write_file", {"path": path, "content": "owned"}, step=step)
        assert result.outcome == "error", path
    assert not (outside / "owned.txt").exists()
    assert not Path("/etc/passwd").read_text().startswith("owned")
    big = dispatch(ctx, "write_file", {"path": "big.txt", "content": "x" * (1024 * 1024 + 1)}, step=20)
    assert big.outcome in ("invalid", "error")
    read = dispatch(ctx, "read_file", {"path": "notes/plan.md"}, step=21)
    assert read.ok and read.result == {"path": "notes/plan.md", "content": "# plan"}
    listed = dispatch(ctx, "list_files", {}, step=22)
    assert listed.result == {"files": [{"path": "notes/plan.md", "size_bytes": 6}]}


def test_tool_outside_toolset_is_refused_and_logged(company: dict[str, int], raw: psycopg.Connection) -> None:
    issue = new_issue(raw, status="todo", assignee_id=company["backend-engineer"])
    ctx = context(raw, "backend-engineer", issue)
    result = dispatch(ctx, "deploy", {}, step=1)
    assert result.outcome == "refused"
    assert "release" in (result.error or "")
    unknown = dispatch(ctx, "rm_rf", {}, step=2)
    assert unknown.outcome == "refused"
    assert tool_rows(raw) == [
        ("deploy", "refused", "deploy belongs to the 'release' toolset, which backend-engineer does not have"),
        ("rm_rf", "refused", "there is no tool named 'rm_rf'"),
    ]


def test_same_idempotency_key_creates_one_row(company: dict[str, int], raw: psycopg.Connection) -> None:
    parent = new_issue(raw, "Build the feature", status="todo", assignee_id=company["eng-lead-platform"], budget_usd=4)
    run_id = uuid.uuid4()
    args = {"title": "Write the API", "assignee": "backend-engineer"}
    first = dispatch(context(raw, "eng-lead-platform", parent, run_id), "create_subissue", args, step=3)
    again = dispatch(context(raw, "eng-lead-platform", parent, run_id), "create_subissue", args, step=3)
    assert first.ok and again.ok and again.replayed
    assert first.result == again.result
    assert raw.execute("SELECT count(*) FROM issues WHERE parent_id = %s", (parent,)).fetchone() == (1,)
    assert raw.execute("SELECT count(*) FROM tool_calls").fetchone() == (1,)
    # A re-run of the workflow (new run id) asking for the same sub-issue gets the same one.
    rerun = dispatch(context(raw, "eng-lead-platform", parent), "create_subissue", args, step=3)
    assert rerun.result == first.result
    assert raw.execute("SELECT count(*) FROM issues WHERE parent_id = %s", (parent,)).fetchone() == (1,)
    assert raw.execute("SELECT budget_usd::text FROM issues WHERE parent_id = %s", (parent,)).fetchone() == ("1.0000",)


def test_delegation_only_to_own_reports(company: dict[str, int], raw: psycopg.Connection) -> None:
    parent = new_issue(raw, status="todo", assignee_id=company["eng-lead-platform"])
    ctx = context(raw, "eng-lead-platform", parent)
    refused = dispatch(ctx, "create_subissue", {"title": "x", "assignee": "frontend-engineer"}, step=1)
    assert refused.outcome == "error" and "direct reports" in (refused.error or "")
    mine = new_issue(raw, "route me", status="backlog", assignee_id=company["eng-lead-platform"])
    moved = dispatch(ctx, "assign", {"issue": mine, "slug": "data-engineer"}, step=2)
    assert moved.ok and moved.result == {"issue_id": mine, "assignee": "data-engineer", "status": "todo"}


def test_ask_research_opens_a_sub_issue_and_a_dependency(company: dict[str, int], raw: psycopg.Connection) -> None:
    issue = new_issue(raw, status="todo", assignee_id=company["content-writer"], budget_usd=3)
    ctx = context(raw, "content-writer", issue)
    result = dispatch(ctx, "ask_research", {"question": "What do the top five competitors charge per seat?"}, step=1)
    assert result.ok, result.error
    research = result.result["research_issue_id"]  # type: ignore[index]
    assert ctx.outcome.research_issue_ids == [research]
    row = raw.execute(
        "SELECT a.slug, i.status, i.parent_id, i.labels FROM issues i JOIN agents a ON a.id = i.assignee_id"
        " WHERE i.id = %s",
        (research,),
    ).fetchone()
    assert row == ("researcher", "todo", issue, ["research"])
    assert raw.execute("SELECT unmet_deps FROM issues WHERE id = %s", (issue,)).fetchone() == (1,)


def test_mark_blocked_and_comment(company: dict[str, int], raw: psycopg.Connection) -> None:
    issue = new_issue(raw, status="todo", assignee_id=company["qa-engineer"])
    ctx = context(raw, "qa-engineer", issue)
    assert dispatch(ctx, "comment", {"body": "Reproduced on staging."}, step=1).ok
    assert dispatch(ctx, "mark_blocked", {"reason": "Need staging credentials"}, step=2).ok
    assert ctx.outcome.blocked_reason == "Need staging credentials"
    bodies = [r[0] for r in raw.execute("SELECT body FROM comments WHERE issue_id = %s ORDER BY id", (issue,))]
    assert bodies == ["Reproduced on staging.", "Blocked: Need staging credentials"]
    invalid = dispatch(ctx, "comment", {"body": ""}, step=3)
    assert invalid.outcome == "invalid"
    not_json = dispatch(ctx, "comment", "{not json", step=4)
    assert not_json.outcome == "invalid"


def test_release_tools_run_the_default_project(company: dict[str, int], raw: psycopg.Connection) -> None:
    issue = new_issue(raw, status="todo", assignee_id=company["release-manager"])
    ctx = context(raw, "release-manager", issue)
    dispatch(ctx, "write_file", {"path": "CHANGELOG.md", "content": "# 1.2\n- faster claims\n"}, step=1)
    deployed = dispatch(ctx, "deploy", {}, step=2)
    assert deployed.ok and deployed.result["ok"], deployed.result  # type: ignore[index]
    verified = dispatch(ctx, "verify", {}, step=3)
    assert verified.result["ok"], verified.result  # type: ignore[index]
    published = ctx.settings.data_path / "published" / f"issue-{issue}" / "CHANGELOG.md"
    published.write_text("tampered")
    broken = dispatch(ctx, "verify", {}, step=4)
    assert not broken.result["ok"] and "checksum mismatch" in broken.result["output"]  # type: ignore[index]


def test_publish_and_reports(company: dict[str, int], raw: psycopg.Connection) -> None:
    issue = new_issue(raw, status="todo", assignee_id=company["content-writer"])
    ctx = context(raw, "content-writer", issue)
    dispatch(ctx, "write_file", {"path": "post.md", "content": "# Launch\n"}, step=1)
    result = dispatch(ctx, "publish", {"path": "post.md"}, step=2)
    assert result.ok and result.result["published"] == f"published/issue-{issue}/post.md"  # type: ignore[index]
    assert raw.execute("SELECT path, content FROM artifacts WHERE issue_id = %s", (issue,)).fetchone() == (
        "published/post.md",
        "# Launch\n",
    )
    analyst = context(raw, "data-analyst", issue)
    unknown = dispatch(analyst, "run_report", {"name": "report_nope"}, step=1)
    assert unknown.outcome == "error" and "unknown report" in (unknown.error or "")
    injection = dispatch(analyst, "run_report", {"name": "issues; DROP TABLE issues"}, step=2)
    assert injection.outcome == "invalid"


def test_workspace_commits_record_agent_run_and_issue(company: dict[str, int], raw: psycopg.Connection) -> None:
    from projects.workspace import Workspace

    issue = new_issue(raw, status="todo", assignee_id=company["technical-writer"])
    ctx = context(raw, "technical-writer", issue)
    dispatch(ctx, "write_file", {"path": "guide.md", "content": "# Guide\n"}, step=1)
    workspace = Workspace(ctx.workspace_root())
    sha = workspace.commit(agent="technical-writer", run_id=ctx.run_id, issue_id=issue, workflow="execute")
    assert sha is not None
    assert workspace.commit(agent="technical-writer", run_id=ctx.run_id, issue_id=issue, workflow="execute") is None
    message = subprocess.run(
        ["git", "-C", str(workspace.root), "log", "-1", "--format=%an%n%B"], capture_output=True, text=True, check=True
    ).stdout
    assert message.startswith("technical-writer\nexecute: technical-writer on issue #")
    assert f"HQ-Run: {ctx.run_id}" in message and f"HQ-Issue: {issue}" in message
