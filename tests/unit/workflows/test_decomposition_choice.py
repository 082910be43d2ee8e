"""Which requests a playbook splits: keywords enough on their own (no bullet list needed), project issues only
when asked for, and the offline model's classification and adaptation deterministic."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

from agents.playbooks import load_playbooks, waves, within_roles
from models import schemas
from models.offline_brain import respond
from models.protocol import user_message
from tests.support.playbooks import PLAYBOOKS, ROLES
from tests.support.records import issue
from workflows.lib.decomposition import by_keywords, wants_decomposition

PLAYBOOK_SET = load_playbooks(PLAYBOOKS, ROLES)


def test_keywords_alone_choose_a_playbook_without_bullets_and_one_stray_word_does_not() -> None:
    feature = issue("Ship the onboarding checklist feature", "A new user sees a checklist of first steps.", None)
    assert by_keywords(PLAYBOOK_SET, feature).playbook == "feature-delivery"
    stray = issue("Fix the flaky login test", "The e2e login test fails one run in twenty on CI.", None)
    verdict = by_keywords(PLAYBOOK_SET, stray)
    assert verdict.playbook is None and verdict.scores["bugfix-regression"] == 1  # "fails": a classification decides


def test_which_issues_a_playbook_may_split() -> None:
    ctx: Any = SimpleNamespace(playbooks=PLAYBOOK_SET)
    plain = issue("Ship the onboarding checklist feature", "No bullets at all.", None)
    assert wants_decomposition(ctx, plain)
    project = issue("Ship the onboarding checklist feature", "No bullets at all.", 7)
    assert not wants_decomposition(ctx, project)  # one change on one branch, for one engineer
    labelled = issue("Ship the onboarding checklist feature", "", 7)
    object.__setattr__(labelled, "labels", ["decompose"])
    assert wants_decomposition(ctx, labelled)
    part = issue("Ship it — spec", "", None)
    object.__setattr__(part, "parent_id", 3)
    assert not wants_decomposition(ctx, part)
    assert not wants_decomposition(SimpleNamespace(playbooks=None), plain)  # type: ignore[arg-type]


def test_a_dropped_module_passes_its_dependencies_on() -> None:
    feature = PLAYBOOK_SET.get("feature-delivery")
    assert feature is not None
    engineers = {"backend-engineer", "frontend-engineer", "test-automation-engineer", "qa-engineer"}
    kept = within_roles(feature.modules, engineers)
    assert [m.id for m in kept] == ["api", "ui", "tests"]
    assert {m.id: m.depends_on for m in kept} == {"api": [], "ui": ["api"], "tests": ["ui"]}
    assert waves(kept) == [["api"], ["ui"], ["tests"]]
    assert within_roles(feature.modules, ROLES) == list(feature.modules)


def ask(task: str, context: dict[str, Any], schema: Any) -> Any:
    message = {"role": "user", "content": user_message(task, "instructions", context, schema)}
    return schema.model_validate(json.loads(respond([message], []).text))


def test_the_offline_model_classifies_and_adapts_deterministically() -> None:
    listed = [
        {"name": p.name, "description": p.description, "keywords": p.classification_keywords}
        for p in PLAYBOOK_SET.playbooks.values()
    ]

    def classify(title: str, labels: list[str]) -> str | None:
        context = {"issue": {"title": title, "body": "", "labels": labels}, "playbooks": listed}
        return ask("classify", context, schema=schemas.PlaybookChoice).playbook

    assert classify("Fix the flaky login test that fails", []) is None  # one keyword: no playbook fits
    assert classify("Fix the flaky login test that fails", ["decompose"]) == "bugfix-regression"
    assert classify("Prepare the quarterly initiative", ["decompose"]) == "blog-post"  # the first, by name
    assert classify("A crash: the export is broken", []) == "bugfix-regression"
    feature = PLAYBOOK_SET.get("feature-delivery")
    assert feature is not None
    roles = [{"slug": s, "title": s} for s in ("backend-engineer", "frontend-engineer", "test-automation-engineer")]
    context = {"issue": {"title": "x"}, "playbook": feature.model_dump(), "roles": roles}
    adapted = ask("adapt", context, schemas.PlaybookAdaptation)
    assert [(m.id, m.depends_on) for m in adapted.modules] == [("api", []), ("ui", ["api"]), ("tests", ["ui"])]
    assert ask("adapt", context, schemas.PlaybookAdaptation) == adapted
    everyone = context | {"roles": [{"slug": s, "title": s} for s in sorted(ROLES)]}
    assert [m.id for m in ask("adapt", everyone, schemas.PlaybookAdaptation).modules] == [m.id for m in feature.modules]
