"""Playbooks as described: keywords alone decompose a request (no bullet list needed), a request no keyword
matches costs one utility classification (answered by the offline model, never repeated down the chain, and
skipped without a crash when the budget refuses it), and a part is not claimable before its dependencies are done."""

from __future__ import annotations

import psycopg
import pytest

from scheduler.heartbeat import BeatContext, run_beat
from tests.integration.workflows.test_assign_projects import route_all
from tests.support.cli import run_hq
from tests.support.rows import one
from workflows.lib.decomposition import classified_key

pytestmark = pytest.mark.usefixtures("db_url")


def parts(raw: psycopg.Connection, parent: int) -> dict[str, int]:
    return dict(raw.execute("SELECT module_key, id FROM issues WHERE parent_id = %s", (parent,)).fetchall())


def utility_calls(raw: psycopg.Connection, issue: int, outcome: str = "ok") -> int:
    row = raw.execute(
        "SELECT count(*) FROM llm_calls WHERE issue_id = %s AND workflow = 'assign' AND tier = 'utility' "
        "AND outcome = %s",
        (issue, outcome),
    ).fetchone()
    return int(one(row)[0])


def test_keywords_without_bullets_or_label_decompose(runtime: BeatContext, raw: psycopg.Connection) -> None:
    parent = int(
        run_hq(
            "issue",
            "create",
            "Ship the onboarding checklist feature",
            "--body",
            "A new user sees a checklist of first steps in the app.",  # no bullet line at all
            "--assign",
            "vp-product",
        ).stdout
    )
    run_beat("vp-product", runtime)
    assert set(parts(raw, parent)) == {"spec", "design", "api", "ui", "tests", "docs"}
    assert utility_calls(raw, parent) == 0  # the keywords chose: no classification call
    assert one(raw.execute("SELECT playbook FROM issues WHERE id = %s", (parent,)).fetchone())[0] == "feature-delivery"


def test_a_request_no_keyword_matches_is_classified_once_and_routed_whole(
    runtime: BeatContext, raw: psycopg.Connection
) -> None:
    issue = int(
        run_hq("issue", "create", "Add a health endpoint to the API", "--body", "GET /healthz returns 200.").stdout
    )
    owners = route_all(runtime, raw, [issue])
    assert owners[issue] == "backend-engineer"
    assert parts(raw, issue) == {}
    # One utility call (the VP's classification, "none"); the lead below saw its answer and did not ask again.
    assert utility_calls(raw, issue) == 1
    marker = raw.execute("SELECT body FROM comments WHERE idempotency_key = %s", (classified_key(issue),)).fetchone()
    assert marker is not None and "No playbook fits" in marker[0] and "vp-engineering" in marker[0]


def test_a_classification_refused_for_budget_routes_the_issue_whole(
    runtime: BeatContext, raw: psycopg.Connection
) -> None:
    issue = int(run_hq("issue", "create", "Add a health endpoint to the API", "--body", "GET /healthz").stdout)
    raw.execute("UPDATE issues SET budget_usd = 0 WHERE id = %s", (issue,))  # nothing left for any model call
    owners = route_all(runtime, raw, [issue])
    assert owners[issue] == "backend-engineer"
    assert utility_calls(raw, issue, "budget_refused") >= 1 and utility_calls(raw, issue) == 0
    row = raw.execute("SELECT status, blocked_reason FROM issues WHERE id = %s", (issue,)).fetchone()
    assert row == ("todo", None)  # routed, not blocked: the classification is optional
    assert parts(raw, issue) == {}


def move(raw: psycopg.Connection, issue: int, *statuses: str) -> None:
    for status in statuses:
        raw.execute("UPDATE issues SET status = %s WHERE id = %s", (status, issue))


def test_a_part_is_not_claimable_before_its_dependency_is_done(runtime: BeatContext, raw: psycopg.Connection) -> None:
    parent = int(
        run_hq(
            "issue",
            "create",
            "The checkout crash is a regression",
            "--body",
            "The cart is broken since Monday.",
            "--assign",
            "vp-engineering",
        ).stdout
    )
    run_beat("vp-engineering", runtime)
    modules = parts(raw, parent)
    assert set(modules) == {"reproduce", "fix", "regression"}
    edges = set(raw.execute("SELECT issue_id, depends_on_id FROM issue_dependencies").fetchall())
    assert {(modules["fix"], modules["reproduce"]), (modules["regression"], modules["fix"])} <= edges
    assert {(parent, m) for m in modules.values()} <= edges

    def state(key: str) -> tuple[str, int]:
        return raw.execute(  # type: ignore[return-value]
            "SELECT status, unmet_deps FROM issues WHERE id = %s", (modules[key],)
        ).fetchone()

    assert state("fix") == ("todo", 1)
    run_beat("backend-engineer", runtime)  # the real claim path: claim_todo skips it
    assert state("fix") == ("todo", 1)
    assert raw.execute("SELECT count(*) FROM llm_calls WHERE issue_id = %s", (modules["fix"],)).fetchone() == (0,)
    move(raw, modules["reproduce"], "in_progress", "in_review", "approved", "deploying")
    run_beat("backend-engineer", runtime)
    assert state("fix") == ("todo", 1)  # deploying is not done
    move(raw, modules["reproduce"], "done")
    assert state("fix") == ("todo", 0)
    run_beat("backend-engineer", runtime)
    assert state("fix")[0] != "todo"  # claimed and worked once its dependency was done
    assert state("regression") == ("todo", 1)
