"""Every path an issue can take through the company, each with its exact event sequence.

The company runs on the offline model, one `run_once` pass (every agent's beat,
in chain-of-command order, then the sweeper) at a time; the test plays the human.
"""

from __future__ import annotations

from collections.abc import Callable

import psycopg
import pytest

from config.settings import get_settings
from scheduler.company import Company
from tests.support.cli import run_hq
from tests.support.rows import events, one, status_of

TERMINAL = {"done", "rejected", "cancelled"}
ROUTED = [(None, "backlog"), ("backlog", "todo")]
REVIEWED_AND_SHIPPED = [
    ("todo", "in_progress"),
    ("in_progress", "in_review"),
    ("in_review", "approved"),
    ("approved", "deploying"),
    ("deploying", "done"),
]


@pytest.fixture()
def company(db_url: str) -> Company:
    return Company(get_settings(), threads=1)


def create(*args: str) -> int:
    result = run_hq("issue", "create", *args)
    assert result.exit_code == 0, result.stderr
    return int(result.stdout)


def drive(
    company: Company,
    raw: psycopg.Connection,
    issue_id: int,
    *,
    human: Callable[[str], None] | None = None,
    passes: int = 15,
) -> str:
    """Run passes until the issue settles; ``human`` sees its status after each pass."""
    for _ in range(passes):
        company.run_once()
        status = status_of(raw, issue_id)
        if status in TERMINAL:
            return status
        if human is not None:
            human(status)
    return status_of(raw, issue_id)


def test_straight_to_done(company: Company, raw: psycopg.Connection) -> None:
    issue = create("Add a health endpoint to the API", "--body", "GET /healthz returns 200.")
    assert drive(company, raw, issue) == "done"
    assert events(raw, issue) == ROUTED + REVIEWED_AND_SHIPPED
    actors = raw.execute(
        "SELECT actor, workflow FROM issue_events WHERE issue_id = %s ORDER BY id", (issue,)
    ).fetchall()
    assert actors[0][0].startswith("human:")
    assert actors[1:] == [
        ("agent:eng-lead-platform", "assign"),
        ("agent:backend-engineer", "execute"),
        ("agent:backend-engineer", "execute"),
        ("agent:eng-lead-platform", "review_gate"),
        ("agent:devops-engineer", "deploy_verify"),
        ("agent:devops-engineer", "deploy_verify"),
    ]
    assert one(raw.execute("SELECT count(*) FROM artifacts WHERE issue_id = %s", (issue,)).fetchone())[0] >= 1
    cost = one(
        raw.execute(
            "SELECT spent_usd, reserved_usd, (SELECT sum(cost_usd) FROM llm_calls WHERE issue_id = %s) "
            "FROM issues WHERE id = %s",
            (issue, issue),
        ).fetchone()
    )
    assert cost[0] > 0 and cost[1] == 0 and cost[0] == cost[2]
    routing = [
        r[0]
        for r in raw.execute(
            "SELECT body FROM comments WHERE issue_id = %s AND body LIKE 'Routed%%' ORDER BY id", (issue,)
        )
    ]
    assert [line.split(" by ")[0] for line in routing] == [
        "Routed to vp-engineering",
        "Routed to eng-lead-platform",
        "Routed to backend-engineer",
    ]
    assert raw.execute(
        "SELECT count(*) FROM llm_calls WHERE issue_id = %s AND workflow = 'assign'", (issue,)
    ).fetchone() == (1,)  # keywords decided every hop; the one call is the VP's playbook classification ("none")


def test_review_failure_and_rework(company: Company, raw: psycopg.Connection) -> None:
    issue = create("Write the launch article [offline:fail-review]")  # no playbook fits
    assert drive(company, raw, issue) == "done"
    assert events(raw, issue) == [
        *ROUTED,
        ("todo", "in_progress"),
        ("in_progress", "in_review"),
        ("in_review", "todo"),
        *REVIEWED_AND_SHIPPED,
    ]
    reviews = raw.execute(
        "SELECT author, body FROM comments WHERE issue_id = %s AND kind = 'review' ORDER BY id", (issue,)
    ).fetchall()
    assert [r[0] for r in reviews] == ["agent:editor", "agent:editor"]
    assert "round 1 failed" in reviews[0][1] and "round 2 passed" in reviews[1][1]
    assert raw.execute("SELECT review_rounds, quality_score > 0.7 FROM issues WHERE id = %s", (issue,)).fetchone() == (
        2,
        True,
    )


def test_pending_approval_waits_for_a_human(company: Company, raw: psycopg.Connection) -> None:
    issue = create("Write the newsletter announcing version 1.0", "--needs-approval")
    seen: list[str] = []

    def human(status: str) -> None:
        seen.append(status)
        if status == "pending_approval" and seen.count("pending_approval") == 2:  # it waited a whole pass
            assert run_hq("approve", str(issue), "--as", "carol").exit_code == 0

    assert drive(company, raw, issue, human=human) == "done"
    assert events(raw, issue) == [
        *ROUTED,
        ("todo", "in_progress"),
        ("in_progress", "in_review"),
        ("in_review", "pending_approval"),
        ("pending_approval", "approved"),
        ("approved", "deploying"),
        ("deploying", "done"),
    ]
    assert raw.execute("SELECT kind, status, decided_by FROM approvals WHERE issue_id = %s", (issue,)).fetchall() == [
        ("work", "approved", "human:carol")
    ]
    assert raw.execute(
        "SELECT count(*) FROM notifications WHERE issue_id = %s AND event = 'pending_approval'", (issue,)
    ).fetchone() == (1,)


def test_blocked_climbs_the_chain_to_a_human(company: Company, raw: psycopg.Connection) -> None:
    issue = create("Renew the finance vendor invoice contract [offline:block] [offline:escalate]")
    chains: list[list[str]] = []

    def human(status: str) -> None:
        row = one(raw.execute("SELECT escalation_chain, blocked_reason FROM issues WHERE id = %s", (issue,)).fetchone())
        chains.append(list(row[0]))
        if status == "blocked" and row[1] == "human":
            assert run_hq("unblock", str(issue), "--note", "Take the one-year term.", "--as", "dana").exit_code == 0

    assert drive(company, raw, issue, human=human) == "done"
    assert events(raw, issue) == [
        *ROUTED,
        ("todo", "in_progress"),
        ("in_progress", "blocked"),
        ("blocked", "todo"),
        *REVIEWED_AND_SHIPPED,
    ]
    assert ["vp-operations", "ceo", "human"] in chains
    assert raw.execute("SELECT kind, status FROM approvals WHERE issue_id = %s", (issue,)).fetchall() == [
        ("escalation", "resolved")
    ]
    climbed = [
        r[0]
        for r in raw.execute(
            "SELECT body FROM comments WHERE issue_id = %s AND body LIKE 'Escalated%%' ORDER BY id", (issue,)
        )
    ]
    assert [c.split(":")[0] for c in climbed] == ["Escalated by vp-operations to ceo", "Escalated by ceo to a human"]
    assert {r[0] for r in raw.execute("SELECT event FROM notifications WHERE issue_id = %s", (issue,))} >= {
        "escalated",
        "needs_human",
        "done",
    }


def test_budget_exhausted_then_raised(company: Company, raw: psycopg.Connection) -> None:
    issue = create("Train the recommendation model", "--budget", "0.01")

    def human(status: str) -> None:
        reason = one(raw.execute("SELECT blocked_reason FROM issues WHERE id = %s", (issue,)).fetchone())[0]
        if status == "blocked" and reason == "budget":
            assert run_hq("budget", str(issue), "--add", "2").exit_code == 0

    assert drive(company, raw, issue, human=human) == "done"
    assert events(raw, issue) == [
        *ROUTED,
        ("todo", "in_progress"),
        ("in_progress", "blocked"),
        ("blocked", "todo"),
        *REVIEWED_AND_SHIPPED,
    ]
    assert raw.execute(
        "SELECT reason FROM issue_events WHERE issue_id = %s AND to_status = 'blocked'", (issue,)
    ).fetchone() == ("budget",)
    assert raw.execute(
        "SELECT count(*) FROM llm_calls WHERE issue_id = %s AND outcome = 'budget_refused'", (issue,)
    ).fetchone() == (1,)
    spent, budget = one(raw.execute("SELECT spent_usd, budget_usd FROM issues WHERE id = %s", (issue,)).fetchone())
    assert spent <= budget


def test_research_sub_issue_then_resume(company: Company, raw: psycopg.Connection) -> None:
    issue = create("Write an article on how teams adopt agents [offline:research]")
    assert drive(company, raw, issue) == "done"
    assert events(raw, issue) == [*ROUTED, ("todo", "in_progress"), ("in_progress", "todo"), *REVIEWED_AND_SHIPPED]
    research = raw.execute(
        "SELECT i.id, a.slug FROM issues i JOIN agents a ON a.id = i.assignee_id "
        "WHERE parent_id = %s AND 'research' = ANY (labels)",
        (issue,),
    ).fetchall()
    assert len(research) == 1 and research[0][1] == "researcher"
    assert events(raw, research[0][0]) == [(None, "todo"), *REVIEWED_AND_SHIPPED]
    # The resumed run saw the answer: its deliverable cites the research.
    final = one(
        raw.execute("SELECT content FROM artifacts WHERE issue_id = %s ORDER BY id DESC LIMIT 1", (issue,)).fetchone()
    )
    assert "Research used" in final[0]
    # The asking issue's run never started before the research was done.
    order = raw.execute(
        "SELECT (SELECT max(created_at) FROM issue_events WHERE issue_id = %s AND to_status = 'done') < "
        "(SELECT max(created_at) FROM issue_events WHERE issue_id = %s AND to_status = 'in_progress')",
        (research[0][0], issue),
    ).fetchone()
    assert order == (True,)


def test_deploy_verification_failure_and_rework(company: Company, raw: psycopg.Connection) -> None:
    issue = create("Write the 1.0 release notes [offline:fail-verify]")
    assert drive(company, raw, issue) == "done"
    assert events(raw, issue) == [
        *ROUTED,
        ("todo", "in_progress"),
        ("in_progress", "in_review"),
        ("in_review", "approved"),
        ("approved", "deploying"),
        ("deploying", "todo"),
        *REVIEWED_AND_SHIPPED,
    ]
    failure = one(
        raw.execute("SELECT body FROM comments WHERE issue_id = %s AND kind = 'failure'", (issue,)).fetchone()
    )
    assert "unfilled placeholder {{release_date}}" in failure[0]


def test_too_many_failed_reviews_block_and_the_manager_reassigns(company: Company, raw: psycopg.Connection) -> None:
    issue = create("Fix the flaky login test [offline:fail-review-always]")
    for _ in range(12):
        company.run_once()
        if one(
            raw.execute(
                "SELECT count(*) FROM comments WHERE issue_id = %s AND body LIKE 'Reassigned%%'", (issue,)
            ).fetchone()
        )[0]:
            break
    sequence = events(raw, issue)
    rework = [("todo", "in_progress"), ("in_progress", "in_review"), ("in_review", "todo")]
    assert sequence[:11] == ROUTED + rework * 2 + [
        ("todo", "in_progress"),
        ("in_progress", "in_review"),
        ("in_review", "blocked"),
    ]
    assert sequence[11] == ("blocked", "todo")
    assert raw.execute(
        "SELECT reason FROM issue_events WHERE issue_id = %s AND to_status = 'blocked'", (issue,)
    ).fetchone() == ("review_rounds",)
    owner = one(
        raw.execute(
            "SELECT a.slug FROM issues i JOIN agents a ON a.id = i.assignee_id WHERE i.id = %s", (issue,)
        ).fetchone()
    )[0]
    assert owner != "test-automation-engineer"  # the QA lead gave it to someone else
