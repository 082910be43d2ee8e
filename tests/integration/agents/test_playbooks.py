"""Playbooks: validated as data, chosen by keywords first, run as dependency waves, assembled at the end."""

from __future__ import annotations

import re
import shutil
from datetime import datetime
from decimal import ROUND_DOWN, Decimal
from pathlib import Path

import psycopg
import pytest

from agents.playbooks import load_playbooks
from config.errors import ConfigError
from config.settings import get_settings
from scheduler.company import Company
from tests.support.cli import run_hq
from tests.support.playbooks import PLAYBOOKS, ROLES
from tests.support.processes import start, stop, wait_until
from tests.support.rows import one


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            (r"depends_on: \[spec\]\n(\s+output: Wireframes)", r"depends_on: [ui]\n\1"),
            "feature-delivery.yaml: module design: dependency cycle design -> ui -> design",
        ),
        (
            (r"role: ux-designer", "role: astrologer"),
            "feature-delivery.yaml: module design: role 'astrologer' is not in the roster",
        ),
        (
            (r"depends_on: \[spec\]\n(\s+output: Wireframes)", r"depends_on: [spek]\n\1"),
            "feature-delivery.yaml: module design: depends_on names unknown module 'spek'",
        ),
    ],
)
def test_bad_playbooks_fail_check_naming_file_and_module(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch, edit: tuple[str, str], expected: str
) -> None:
    folder = tmp_path / "playbooks"
    shutil.copytree(PLAYBOOKS, folder)
    path = folder / "feature-delivery.yaml"
    text = path.read_text()
    changed = re.sub(edit[0], edit[1], text, count=1)
    assert changed != text
    path.write_text(changed)
    with pytest.raises(ConfigError):
        load_playbooks(folder, ROLES)
    monkeypatch.setenv("HQ_PLAYBOOKS_DIR", str(folder))
    result = run_hq("playbooks", "check")
    assert result.exit_code == 2
    assert expected in result.stderr
    refused = run_hq("run", "--once")
    assert refused.exit_code == 2 and "feature-delivery.yaml" in refused.stderr


def children(raw: psycopg.Connection, parent: int) -> dict[str, int]:
    return dict(
        raw.execute(
            "SELECT module_key, id FROM issues WHERE parent_id = %s AND module_key IS NOT NULL", (parent,)
        ).fetchall()
    )


def parent_calls(raw: psycopg.Connection, parent: int, tier: str) -> int:
    return one(
        raw.execute(
            "SELECT count(*) FROM llm_calls WHERE issue_id = %s AND workflow = 'assign' AND tier = %s", (parent, tier)
        ).fetchone()
    )[0]


def test_keyword_match_decomposes_without_a_classification_call(db_url: str, raw: psycopg.Connection) -> None:
    company = Company(get_settings(), threads=1)
    parent = int(
        run_hq(
            "issue",
            "create",
            "Ship the onboarding checklist feature",
            "--label",
            "decompose",
            "--assign",
            "vp-product",
            "--budget",
            "5",
        ).stdout
    )
    company.run_once()
    parts = children(raw, parent)
    assert set(parts) == {"spec", "design", "api", "ui", "tests", "docs"}
    assert parent_calls(raw, parent, "utility") == 0  # keywords chose the playbook
    assert parent_calls(raw, parent, "reasoning") == 1  # the adaptation
    row = raw.execute(
        "SELECT status, blocked_reason, playbook, unmet_deps FROM issues WHERE id = %s", (parent,)
    ).fetchone()
    assert row == ("blocked", "waiting", "feature-delivery", 6)
    owners: dict[str, str] = dict(
        raw.execute(
            "SELECT i.module_key, a.slug FROM issues i JOIN agents a ON a.id = i.assignee_id WHERE parent_id = %s",
            (parent,),
        ).fetchall()
    )
    assert owners["api"] == "backend-engineer" and owners["design"] == "ux-designer"
    budgets = [r[0] for r in raw.execute("SELECT budget_usd FROM issues WHERE parent_id = %s", (parent,))]
    kept, spent = one(raw.execute("SELECT budget_usd, spent_usd FROM issues WHERE id = %s", (parent,)).fetchone())
    # An equal share of what was left after deciding, to the cent, one share kept back for the assembly:
    # carved out of the parent's budget, so parent and parts hold the 5 USD it had, not a cent more.
    assert set(budgets) == {((Decimal(5) - spent) / 7).quantize(Decimal("0.01"), rounding=ROUND_DOWN)}
    assert kept + sum(budgets) == Decimal(5)
    deps = raw.execute("SELECT count(*) FROM issue_dependencies WHERE issue_id = %s", (parts["ui"],)).fetchone()
    assert deps == (2,)  # design and api


def test_ambiguous_request_uses_exactly_one_utility_call(db_url: str, raw: psycopg.Connection) -> None:
    company = Company(get_settings(), threads=1)
    parent = int(
        run_hq(
            "issue", "create", "Prepare the quarterly initiative", "--label", "decompose", "--assign", "vp-product"
        ).stdout
    )
    company.run_once()
    assert parent_calls(raw, parent, "utility") == 1
    assert children(raw, parent)  # the model picked a playbook


def test_decomposed_feature_runs_in_waves_to_done(db_url: str, raw: psycopg.Connection, tmp_path: Path) -> None:
    assert run_hq("agents", "sync").exit_code == 0
    parent = int(
        run_hq(
            "issue",
            "create",
            "Ship the onboarding checklist feature [offline:slow]",
            "--label",
            "decompose",
            "--assign",
            "vp-product",
            "--budget",
            "5",
        ).stdout
    )
    workers = [start(tmp_path, "a"), start(tmp_path, "b")]
    try:
        settled = wait_until(
            lambda: one(raw.execute("SELECT status FROM issues WHERE id = %s", (parent,)).fetchone())[0] == "done",
            timeout=150,
        )
    finally:
        for worker in workers:
            stop(worker)
    assert settled, raw.execute("SELECT id, module_key, status FROM issues ORDER BY id").fetchall()
    parts = children(raw, parent)

    def first(issue: int, status: str) -> datetime:
        return one(
            raw.execute(
                "SELECT min(created_at) FROM issue_events WHERE issue_id = %s AND to_status = %s", (issue, status)
            ).fetchone()
        )[0]

    def last(issue: int, status: str) -> datetime:
        return one(
            raw.execute(
                "SELECT max(created_at) FROM issue_events WHERE issue_id = %s AND to_status = %s", (issue, status)
            ).fetchone()
        )[0]

    playbook = load_playbooks(PLAYBOOKS, ROLES).get("feature-delivery")
    assert playbook is not None
    for module in playbook.modules:
        for dependency in module.depends_on:
            assert first(parts[module.id], "in_progress") >= last(parts[dependency], "done"), (module.id, dependency)
    # Wave 2 (design and api) worked at the same time.
    design = (first(parts["design"], "in_progress"), last(parts["design"], "in_review"))
    api = (first(parts["api"], "in_progress"), last(parts["api"], "in_review"))
    assert design[0] < api[1] and api[0] < design[1]
    # The parent was assembled by its owner after every part was done, then reviewed and shipped.
    assert first(parent, "in_progress") >= max(last(c, "done") for c in parts.values())
    path = [r[0] for r in raw.execute("SELECT to_status FROM issue_events WHERE issue_id = %s ORDER BY id", (parent,))]
    assert path == ["backlog", "todo", "blocked", "todo", "in_progress", "in_review", "approved", "deploying", "done"]
    final = one(
        raw.execute("SELECT content FROM artifacts WHERE issue_id = %s ORDER BY id DESC LIMIT 1", (parent,)).fetchone()
    )
    assert "Assembled result" in final[0]
    # Its cost row is its own calls plus every part's.
    row = raw.execute(
        "SELECT own_cost_usd, sub_issue_cost_usd, total_cost_usd FROM report_cost_by_issue WHERE issue_id = %s",
        (parent,),
    ).fetchone()
    own = one(
        raw.execute("SELECT coalesce(sum(cost_usd), 0) FROM llm_calls WHERE issue_id = %s", (parent,)).fetchone()
    )[0]
    parts_cost = one(
        raw.execute(
            "SELECT coalesce(sum(cost_usd), 0) FROM llm_calls WHERE issue_id = ANY(%s)", (list(parts.values()),)
        ).fetchone()
    )[0]
    assert row == (own, parts_cost, own + parts_cost) and parts_cost > 0
    tree = run_hq("issue", "show", str(parent), "--tree")
    assert tree.exit_code == 0 and "decomposition" in tree.stdout and tree.stdout.count("done") >= 7
