"""Looking at the org writes nothing, and a sync writes only the rows that change.

A row's ``xmin`` is the transaction that last wrote it and ``xmax`` the last one
that locked it, so comparing them before and after a command shows whether it
wrote (or locked) a row even when the values came out the same: a rewrite that
changes nothing still costs a claim its lock wait at a million issues.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import psycopg

from config.settings import PACKAGE_ROOT
from tests.support.cli import run_hq
from tests.support.rows import force_status, new_issue

ROLES = PACKAGE_ROOT / "agents" / "roles"
REMOVED = "vp-operations"  # a VP: its reports move to the CEO, who routes but does not execute
REPORTS = ("career-ops-specialist", "finance-analyst", "release-manager", "support-agent")

Versions = dict[int, tuple[str, str]]


def versions(raw: psycopg.Connection, table: str) -> Versions:
    """Every row's (xmin, xmax): who last wrote it and who last locked it."""
    assert table in ("agents", "issues")
    return {row[0]: (row[1], row[2]) for row in raw.execute(f"SELECT id, xmin::text, xmax::text FROM {table}")}


def written(before: Versions, after: Versions) -> set[int]:
    """The rows whose xmin moved (or that appeared or went)."""
    return {i for i in before.keys() | after.keys() if before.get(i, ("?", ""))[0] != after.get(i, ("?", ""))[0]}


def synced_roster(tmp_path: Path) -> Path:
    roles = tmp_path / "roles"
    shutil.copytree(ROLES, roles)
    result = run_hq("--roles-dir", str(roles), "agents", "sync")
    assert result.exit_code == 0, result.stderr
    return roles


def reorganise(roles: Path) -> None:
    """Remove the VP of operations from the files; its reports now answer to the CEO."""
    shutil.rmtree(roles / REMOVED)
    for slug in REPORTS:
        path = roles / slug / "AGENTS.md"
        text = path.read_text()
        assert f"\nreports_to: {REMOVED}\n" in text
        path.write_text(text.replace(f"\nreports_to: {REMOVED}\n", "\nreports_to: ceo\n", 1))


def seed_work(raw: psycopg.Connection) -> dict[str, int]:
    """Open and finished issues in several statuses, some of which the reorganisation must re-target."""
    ids: dict[str, int] = dict(raw.execute("SELECT slug, id FROM agents").fetchall())
    vp, ceo = ids[REMOVED], ids["ceo"]
    issues = {
        # unstarted work of the role that goes: up to the CEO, and `todo` back to `backlog` (the CEO only routes)
        "vp_todo": new_issue(raw, "vp todo", status="todo", assignee_id=vp),
        "vp_backlog": new_issue(raw, "vp backlog", status="backlog", assignee_id=vp),
        # started or finished work stays where it is
        "vp_started": new_issue(raw, "vp started", status="todo", assignee_id=vp),
        "vp_done": new_issue(raw, "vp done", status="todo", assignee_id=vp),
        # a review waiting on the VP moves to the author's new reviewer
        "review": new_issue(raw, "review", status="todo", assignee_id=ids["support-agent"]),
        # an escalation sitting with the VP climbs to the CEO; one already with the CEO stays
        "escalated": new_issue(raw, "escalated", status="todo", assignee_id=ids["finance-analyst"]),
        "escalated_ceo": new_issue(raw, "escalated to ceo", status="todo", assignee_id=ids["finance-analyst"]),
        # elsewhere in the company nothing is touched
        "review_elsewhere": new_issue(raw, "other review", status="todo", assignee_id=ids["backend-engineer"]),
        "escalated_elsewhere": new_issue(raw, "other block", status="todo", assignee_id=ids["frontend-engineer"]),
        "todo_elsewhere": new_issue(raw, "other todo", status="todo", assignee_id=ids["qa-engineer"]),
        "backlog_unassigned": new_issue(raw, "unassigned"),
    }
    force_status(raw, issues["vp_started"], "in_progress")
    force_status(raw, issues["vp_done"], "done")
    force_status(raw, issues["review"], "in_review", reviewer_id=vp)
    force_status(raw, issues["escalated"], "blocked", escalated_to_id=vp, escalation_chain=[REMOVED])
    force_status(raw, issues["escalated_ceo"], "blocked", escalated_to_id=ceo, escalation_chain=[REMOVED, "ceo"])
    force_status(raw, issues["review_elsewhere"], "in_review", reviewer_id=ids["eng-lead-platform"])
    force_status(
        raw,
        issues["escalated_elsewhere"],
        "blocked",
        escalated_to_id=ids["eng-lead-web"],
        escalation_chain=["eng-lead-web"],
    )
    return issues


def assert_read_only(raw: psycopg.Connection, *args: str) -> str:
    """Run one command and check it wrote and locked no agent and no issue row."""
    agents, issues = versions(raw, "agents"), versions(raw, "issues")
    result = run_hq(*args)
    assert result.exit_code == 0, (args, result.stderr)
    assert versions(raw, "agents") == agents, args
    assert versions(raw, "issues") == issues, args
    return result.stdout


READ_COMMANDS = (
    ("agents",),
    ("agents", "--json"),
    ("agents", "show", "support-agent"),
    ("agents", "show", "finance-analyst", "--json"),
    ("agents", "check"),
)


def test_listing_and_checking_write_nothing(tmp_path: Path, raw: psycopg.Connection) -> None:
    roles = synced_roster(tmp_path)
    issues = seed_work(raw)
    for command in READ_COMMANDS:
        assert_read_only(raw, "--roles-dir", str(roles), *command)
    # The files now differ from the table: looking still applies nothing, and says how to apply it.
    reorganise(roles)
    for command in READ_COMMANDS:
        assert_read_only(raw, "--roles-dir", str(roles), *command)
    listing = assert_read_only(raw, "--roles-dir", str(roles), "agents")
    assert "4 changed, 1 removed" in listing and "hq agents sync" in listing
    assert raw.execute("SELECT status FROM agents WHERE slug = %s", (REMOVED,)).fetchone() == ("active",)
    assert raw.execute(
        "SELECT a.slug, i.status FROM issues i JOIN agents a ON a.id = i.assignee_id WHERE i.id = %s",
        (issues["vp_todo"],),
    ).fetchone() == (REMOVED, "todo")


def test_listing_a_database_never_synced_shows_the_files(tmp_path: Path, raw: psycopg.Connection) -> None:
    listing = run_hq("agents")
    assert listing.exit_code == 0, listing.stderr
    assert "33 agents" in listing.stdout and "every 8h" in listing.stdout
    assert "run `hq agents sync`" in listing.stdout
    nodes = json.loads(run_hq("agents", "--json").stdout)
    assert len(nodes) == 33 and {n["status"] for n in nodes} == {"unsynced"}
    shown = run_hq("agents", "show", "qa-engineer", "--json")
    assert shown.exit_code == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert data["status"] == "unsynced" and data["chain_of_command"] == ["qa-lead", "vp-engineering", "ceo"]
    assert data["open_issues"] == 0 and data["recent_heartbeats"] == []
    assert raw.execute("SELECT count(*) FROM agents").fetchone() == (0,)


def test_a_sync_with_nothing_to_do_writes_and_locks_nothing(tmp_path: Path, raw: psycopg.Connection) -> None:
    roles = synced_roster(tmp_path)
    seed_work(raw)
    agents, issues = versions(raw, "agents"), versions(raw, "issues")
    result = run_hq("--roles-dir", str(roles), "agents", "sync")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == "roster synced: unchanged"
    assert versions(raw, "agents") == agents
    assert versions(raw, "issues") == issues


def test_retarget_after_removing_a_role_changes_exactly_the_rows_that_need_it(
    tmp_path: Path, raw: psycopg.Connection
) -> None:
    roles = synced_roster(tmp_path)
    issues = seed_work(raw)
    ids: dict[str, int] = dict(raw.execute("SELECT slug, id FROM agents").fetchall())
    agents_before, issues_before = versions(raw, "agents"), versions(raw, "issues")
    reorganise(roles)
    result = run_hq("--roles-dir", str(roles), "agents", "sync")
    assert result.exit_code == 0, result.stderr
    retargeted = [line.strip() for line in result.stdout.splitlines() if line.startswith("  re-targeted ")]
    assert retargeted == [
        f"re-targeted #{issues['vp_todo']} assignee {REMOVED}->ceo",
        f"re-targeted #{issues['vp_backlog']} assignee {REMOVED}->ceo",
        f"re-targeted #{issues['review']} reviewer {REMOVED}->ceo",
        f"re-targeted #{issues['escalated']} escalation {REMOVED}->ceo",
    ]
    agents_after, issues_after = versions(raw, "agents"), versions(raw, "issues")
    assert written(agents_before, agents_after) == {ids[slug] for slug in (REMOVED, *REPORTS)}
    changed = {issues[name] for name in ("vp_todo", "vp_backlog", "review", "escalated")}
    assert written(issues_before, issues_after) == changed
    # The issues that needed nothing were not even locked.
    assert {i: v for i, v in issues_after.items() if i not in changed} == {
        i: v for i, v in issues_before.items() if i not in changed
    }
    rows = {
        name: raw.execute(
            "SELECT status, assignee_id, reviewer_id, escalated_to_id FROM issues WHERE id = %s", (issue_id,)
        ).fetchone()
        for name, issue_id in issues.items()
    }
    assert rows["vp_todo"] == ("backlog", ids["ceo"], None, None)
    assert rows["vp_backlog"] == ("backlog", ids["ceo"], None, None)
    assert rows["vp_started"] == ("in_progress", ids[REMOVED], None, None)
    assert rows["vp_done"] == ("done", ids[REMOVED], None, None)
    assert rows["review"] == ("in_review", ids["support-agent"], ids["ceo"], None)
    assert rows["escalated"] == ("blocked", ids["finance-analyst"], None, ids["ceo"])
    assert rows["escalated_ceo"] == ("blocked", ids["finance-analyst"], None, ids["ceo"])
    # Nothing left to do: a second sync writes nothing.
    again = run_hq("--roles-dir", str(roles), "agents", "sync")
    assert again.stdout.strip() == "roster synced: unchanged", again.stdout
    assert versions(raw, "agents") == agents_after and versions(raw, "issues") == issues_after


def test_pausing_a_reviewer_moves_only_its_reviews_and_escalations(raw: psycopg.Connection) -> None:
    assert run_hq("agents", "sync").exit_code == 0
    ids: dict[str, int] = dict(raw.execute("SELECT slug, id FROM agents").fetchall())
    review = new_issue(raw, "qa review", status="todo", assignee_id=ids["qa-engineer"])
    force_status(raw, review, "in_review", reviewer_id=ids["qa-lead"])
    escalated = new_issue(raw, "qa block", status="todo", assignee_id=ids["qa-engineer"])
    force_status(raw, escalated, "blocked", escalated_to_id=ids["qa-lead"], escalation_chain=["qa-lead"])
    elsewhere = new_issue(raw, "other review", status="todo", assignee_id=ids["backend-engineer"])
    force_status(raw, elsewhere, "in_review", reviewer_id=ids["eng-lead-platform"])
    unstarted = new_issue(raw, "qa lead's own", status="todo", assignee_id=ids["qa-lead"])
    agents_before, issues_before = versions(raw, "agents"), versions(raw, "issues")
    result = run_hq("agents", "pause", "qa-lead", "--as", "dana")
    assert result.exit_code == 0, result.stderr
    # A paused reviewer is stood in for by the author's nearest active manager; a paused (not removed)
    # owner keeps its unstarted work, as before.
    assert raw.execute("SELECT reviewer_id FROM issues WHERE id = %s", (review,)).fetchone() == (ids["vp-engineering"],)
    assert raw.execute("SELECT escalated_to_id FROM issues WHERE id = %s", (escalated,)).fetchone() == (
        ids["vp-engineering"],
    )
    assert raw.execute("SELECT assignee_id FROM issues WHERE id = %s", (unstarted,)).fetchone() == (ids["qa-lead"],)
    assert written(agents_before, versions(raw, "agents")) == {ids["qa-lead"]}
    issues_after = versions(raw, "issues")
    assert written(issues_before, issues_after) == {review, escalated}
    assert issues_after[elsewhere] == issues_before[elsewhere] and issues_after[unstarted] == issues_before[unstarted]
