"""The roster: 33 roles as data, validated as files and as an organisation, synced to the table."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import psycopg

from tests.support.cli import run_hq
from tests.support.roster import ROLES, copy_roster, edit
from tests.support.rows import new_issue, one


def test_agents_check_and_tree(db_url: str) -> None:
    check = run_hq("agents", "check")
    assert check.exit_code == 0, check.stderr
    assert "33 agents" in check.stdout
    tree = run_hq("agents", "--json")
    assert tree.exit_code == 0, tree.stderr
    nodes = json.loads(tree.stdout)
    assert len(nodes) == 33 and nodes[0]["slug"] == "ceo" and nodes[0]["depth"] == 0
    text = run_hq("agents")
    assert "ceo" in text.stdout and "every 8h" in text.stdout and "33 agents" in text.stdout


def test_run_refuses_an_invalid_roster(tmp_path: Path, db_url: str) -> None:
    roles = copy_roster(tmp_path)
    edit(roles, "support-agent", r"^heartbeat: .*$", "heartbeat: sometimes")
    for command in (("run", "--once"), ("demo",)):
        result = run_hq("--roles-dir", str(roles), *command)
        assert result.exit_code == 2, (command, result)
        assert "support-agent/AGENTS.md: heartbeat" in result.stderr


def test_sync_pauses_removed_roles_and_restores_them(tmp_path: Path, raw: psycopg.Connection) -> None:
    roles = copy_roster(tmp_path)
    assert run_hq("--roles-dir", str(roles), "agents", "sync").exit_code == 0
    assert raw.execute("SELECT count(*) FROM agents WHERE status = 'active'").fetchone() == (33,)
    issue = new_issue(
        raw,
        "writing",
        status="todo",
        assignee_id=one(raw.execute("SELECT id FROM agents WHERE slug = 'social-media-manager'").fetchone())[0],
    )
    shutil.rmtree(roles / "social-media-manager")
    result = run_hq("--roles-dir", str(roles), "agents", "sync")
    assert result.exit_code == 0, result.stderr
    assert raw.execute("SELECT status, paused_reason FROM agents WHERE slug = 'social-media-manager'").fetchone() == (
        "paused",
        "removed",
    )
    # Its unstarted work goes up to its manager to be routed again.
    assert raw.execute(
        "SELECT a.slug, i.status FROM issues i JOIN agents a ON a.id = i.assignee_id WHERE i.id = %s", (issue,)
    ).fetchone() == ("vp-content", "todo")
    assert run_hq("--roles-dir", str(roles), "agents", "resume", "social-media-manager").exit_code == 2
    shutil.copytree(ROLES / "social-media-manager", roles / "social-media-manager")
    run_hq("--roles-dir", str(roles), "agents", "sync")
    assert raw.execute("SELECT status FROM agents WHERE slug = 'social-media-manager'").fetchone() == ("active",)


def test_reorganisation_retargets_escalations_and_reviews(tmp_path: Path, raw: psycopg.Connection) -> None:
    roles = copy_roster(tmp_path)
    run_hq("--roles-dir", str(roles), "agents", "sync")
    ids: dict[str, int] = dict(raw.execute("SELECT slug, id FROM agents").fetchall())
    blocked = new_issue(raw, "stuck", status="todo", assignee_id=ids["backend-engineer"])
    raw.execute(
        "UPDATE issues SET status = 'blocked', escalated_to_id = %s, escalation_chain = '{eng-lead-platform}'"
        " WHERE id = %s",
        (ids["eng-lead-platform"], blocked),
    )
    reviewing = new_issue(
        raw, "in review", status="todo", assignee_id=ids["backend-engineer"], reviewer_id=ids["eng-lead-platform"]
    )
    # Reorganise: backend engineers now report to (and are reviewed by) the web lead.
    edit(roles, "backend-engineer", r"^reports_to: eng-lead-platform$", "reports_to: eng-lead-web")
    result = run_hq("--roles-dir", str(roles), "agents", "sync")
    assert result.exit_code == 0, result.stderr
    assert "re-targeted" in result.stdout
    assert raw.execute("SELECT escalated_to_id FROM issues WHERE id = %s", (blocked,)).fetchone() == (
        ids["eng-lead-web"],
    )
    assert raw.execute("SELECT reviewer_id FROM issues WHERE id = %s", (reviewing,)).fetchone() == (
        ids["eng-lead-web"],
    )


def test_pause_and_resume_and_show(db_url: str, raw: psycopg.Connection) -> None:
    assert run_hq("agents", "pause", "qa-lead", "--as", "dana").exit_code == 0
    assert raw.execute("SELECT status, paused_reason FROM agents WHERE slug = 'qa-lead'").fetchone() == (
        "paused",
        "human",
    )
    shown = json.loads(run_hq("agents", "show", "qa-engineer", "--json").stdout)
    assert shown["chain_of_command"] == ["qa-lead", "vp-engineering", "ceo"]
    assert shown["front_matter"]["heartbeat"] == "15m"
    assert run_hq("agents", "resume", "qa-lead").exit_code == 0
    assert raw.execute("SELECT status FROM agents WHERE slug = 'qa-lead'").fetchone() == ("active",)
    assert run_hq("agents", "pause", "nobody").exit_code == 2
    assert run_hq("agents", "show", "nobody").exit_code == 2
