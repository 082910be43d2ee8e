"""The roster: 33 roles as data, validated as files and as an organisation, synced to the table."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import psycopg
import pytest

from agents.roster import load_roster
from config.errors import ConfigError
from config.settings import PACKAGE_ROOT
from tests.conftest import run_hq
from tests.support.rows import new_issue, one

ROLES = PACKAGE_ROOT / "agents" / "roles"


def copy_roster(tmp_path: Path) -> Path:
    target = tmp_path / "roles"
    shutil.copytree(ROLES, target)
    return target


def edit(roles: Path, slug: str, pattern: str, replacement: str) -> None:
    path = roles / slug / "AGENTS.md"
    text = path.read_text()
    changed = re.sub(pattern, replacement, text, count=1, flags=re.MULTILINE)
    assert changed != text, f"{pattern} not found in {slug}"
    path.write_text(changed)


def test_default_roster_is_33_agents_in_one_tree() -> None:
    roster = load_roster(ROLES)
    assert len(roster.roles) == 33
    assert roster.ceo.slug == "ceo"
    assert next(role.slug for _depth, role in roster.walk()) == "ceo"
    assert len(list(roster.walk())) == 33  # everyone is reachable from the root
    assert sorted(roster.reports_of("ceo")) == ["vp-content", "vp-engineering", "vp-operations", "vp-product"]
    assert roster.chain_of_command("backend-engineer") == ["eng-lead-platform", "vp-engineering", "ceo"]
    assert roster.ceo.spec.heartbeat == "8h"
    for role in roster.roles.values():
        assert 2 <= len(role.spec.skills) <= 3
        assert len(role.instructions) > 1000, role.slug


def test_role_bodies_share_no_boilerplate() -> None:
    roster = load_roster(ROLES)
    owners: dict[str, set[str]] = {}
    for role in roster.roles.values():
        for sentence in re.split(r"(?<=[.!?])\s+", role.instructions):
            sentence = " ".join(sentence.split())
            if len(sentence) > 40:
                owners.setdefault(sentence, set()).add(role.slug)
    shared = {s: v for s, v in owners.items() if len(v) > 1}
    assert shared == {}


def test_siblings_do_not_share_routing_keywords() -> None:
    roster = load_roster(ROLES)
    for manager in roster.roles:
        seen: dict[str, str] = {}
        for report in roster.reports_of(manager):
            for skill in roster.roles[report].spec.skills:
                for keyword in skill.keywords:
                    assert seen.setdefault(keyword, report) == report, (manager, keyword, seen[keyword], report)


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


def test_broken_roster_lists_every_problem_with_file_and_field(tmp_path: Path) -> None:
    roles = copy_roster(tmp_path)
    edit(roles, "vp-product", r"^reports_to: ceo$", "reports_to: researcher")  # cycle
    edit(roles, "qa-lead", r"^reports_to: vp-engineering$", "reports_to: vp-nowhere")  # missing parent
    edit(roles, "editor", r"^toolsets: \[", "toolsets: [teleport, ")  # unknown toolset
    edit(roles, "support-agent", r"^heartbeat: .*$", "heartbeat: often")  # bad heartbeat
    result = run_hq("--roles-dir", str(roles), "agents", "check")
    assert result.exit_code == 2
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1
    assert "roles/vp-product/AGENTS.md: reports_to: chain of command has a cycle" in message
    assert "roles/qa-lead/AGENTS.md: reports_to: no role named 'vp-nowhere'" in message
    assert "roles/editor/AGENTS.md: toolsets.0:" in message
    assert "roles/support-agent/AGENTS.md: heartbeat:" in message


@pytest.mark.parametrize(
    ("slug", "pattern", "replacement", "expected"),
    [
        (
            "ceo",
            r"^tier: reasoning$",
            "tier: reasoning\nreports_to: vp-product",
            "exactly one role must have no manager",
        ),
        ("backend-engineer", r"^slug: backend-engineer$", "slug: frontend-engineer", "must match its folder name"),
        ("frontend-engineer", r"^workflows: \[execute\]$", "workflows: [execute, dance]", "workflows.1"),
        ("content-writer", r"^reviewer: editor$", "reviewer: seo-specialist", "does not run the review_gate"),
        ("mobile-engineer", r"^jitter: .*$", "jitter: 1h", "jitter: must be shorter than the heartbeat"),
        ("ml-engineer", r"^title: .*$", "title: ML\nfavourite_colour: blue", "favourite_colour: Extra inputs"),
        ("data-analyst", r"^---\n", "---\n: : :\n", "front matter is not valid YAML"),
    ],
)
def test_each_kind_of_roster_problem(tmp_path: Path, slug: str, pattern: str, replacement: str, expected: str) -> None:
    roles = copy_roster(tmp_path)
    edit(roles, slug, pattern, replacement)
    with pytest.raises(ConfigError) as caught:
        load_roster(roles)
    assert expected in caught.value.message


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
