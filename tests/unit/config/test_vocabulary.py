"""config/vocabulary.py and workflows/registry.py say what the code says, exactly: tiers, the roster's
workflows, the registry's modules and claims. What the database says is in
tests/integration/config/test_vocabulary.py.
"""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path
from typing import get_args

import pytest

from agents.roster import WORKFLOWS, RoleSpec, load_roster
from config import vocabulary as v
from config.settings import PACKAGE_ROOT
from db.sqlfiles import query
from workflows import registry


def test_the_tier_literal_and_tuple_agree() -> None:
    assert v.TIERS == get_args(v.Tier) == ("reasoning", "execution", "utility")
    assert get_args(RoleSpec.model_fields["tier"].annotation) == v.TIERS


def test_the_research_role_is_in_the_default_roster() -> None:
    roster = load_roster(PACKAGE_ROOT / "agents" / "roles")
    assert v.RESEARCH_ROLE in roster.roles
    assert "execute" in roster.roles[v.RESEARCH_ROLE].spec.workflows  # research questions are issues it works


def test_no_playbook_file_takes_the_split_marker() -> None:
    names = {path.stem for path in (PACKAGE_ROOT / "agents" / "playbooks").glob("*.yaml")}
    assert names, "no playbooks found"
    assert v.SPLIT_PLAYBOOK not in names


# --- the workflow registry ---------------------------------------------------------------


def test_the_roster_accepts_exactly_the_registered_workflows() -> None:
    assert WORKFLOWS == registry.WORKFLOW_NAMES == tuple(w.name for w in registry.REGISTRY)
    assert len(set(registry.WORKFLOW_NAMES)) == len(registry.WORKFLOW_NAMES)
    (item,) = get_args(RoleSpec.model_fields["workflows"].annotation)
    assert set(get_args(item)) == set(registry.WORKFLOW_NAMES)
    assert registry.WORKFLOW_NAMES == ("plan", "escalate", "assign", "review_gate", "execute", "deploy_verify")
    assert "sweep" not in registry.WORKFLOW_NAMES  # a timer job, not a beat workflow


def test_every_registered_workflow_resolves_to_its_modules_run() -> None:
    runners = registry.runners()
    assert list(runners) == list(registry.WORKFLOW_NAMES)
    for workflow in registry.REGISTRY:
        module = importlib.import_module(workflow.module)
        assert runners[workflow.name] is module.run, workflow.name
        assert registry.get(workflow.name) is workflow
    with pytest.raises(KeyError, match="no workflow 'sweep'"):
        registry.get("sweep")


def claim_names() -> set[str]:
    source = (PACKAGE_ROOT / "db" / "sql" / "queries" / "claims.sql").read_text()
    return set(re.findall(r"^--\s*name:\s*((?:re)?claim_[a-z0-9_]*)\s*$", source, re.MULTILINE))


def test_every_registered_claim_exists_and_is_the_one_its_module_runs() -> None:
    for workflow in registry.REGISTRY:
        for name in workflow.claims:
            query("claims", name)  # KeyError when claims.sql has no such query
        spec = importlib.util.find_spec(workflow.module)
        assert spec is not None and spec.origin is not None
        tree = ast.parse(Path(spec.origin).read_text())
        mentioned = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
        assert set(workflow.claims) == mentioned & claim_names(), workflow.name
    assert all(registry.get(w).claims for w in ("escalate", "assign", "review_gate", "execute", "deploy_verify"))
    with pytest.raises(KeyError):
        query("claims", "claim_nothing_by_that_name")
