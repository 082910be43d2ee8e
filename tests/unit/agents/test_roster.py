"""The roster: 33 roles as data, validated as files and as an organisation (each problem named with its file
and field). Syncing it to the table is in tests/integration/agents/test_roster.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agents.roster import load_roster
from config.errors import ConfigError
from tests.support.cli import run_hq
from tests.support.roster import ROLES, copy_roster, edit


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
