"""Work goes to engineers: project issues created without --assign are routed by the real assign workflow, on the
offline model, to roles with the `code` toolset, and to the project's team's engineers when it names a team."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from scheduler.heartbeat import BeatContext, run_beat
from tests.support.cli import run_hq
from tests.support.projects import make_remote

pytestmark = pytest.mark.usefixtures("db_url")

TEN = (
    ("Fix KeyError when refresh tokens expire", "auth/refresh.py: Python raises KeyError when tokens lack 'exp'."),
    ("Quarantine the flaky checkout test", "test_checkout fails one run in ten on CI: nondeterministic ordering."),
    ("Fix the modal CSS on narrow screens", "The settings modal overflows below 400px: fix the responsive layout."),
    ("Add a migration for the invoices table", "A due_date column with a backfill; the schema change in migrations/."),
    ("Fix a typo in README.md", "The quickstart in the readme says 'instal'."),
    ("Cache dependencies in the CI pipeline", "The github-actions build downloads everything on each runner."),
    ("Retry the payments client on timeouts", "Add retry with backoff and error-handling around the request."),
    ("Add an index for the slow report query", "The report query scans the events table; add an index."),
    ("Pin the vulnerable yaml dependency", "A CVE advisory for pyyaml: patch it after a dependency-audit."),
    ("Fix the crash when the Android app resumes", "The Kotlin app crashes on resume: a null check in MainActivity."),
)  # fmt: skip


def managers(raw: psycopg.Connection) -> list[str]:
    return [r[0] for r in raw.execute("SELECT slug FROM agents WHERE 'assign' = ANY(workflows) ORDER BY slug")]


def code_roles(raw: psycopg.Connection) -> set[str]:
    return {r[0] for r in raw.execute("SELECT slug FROM agents WHERE 'code' = ANY(toolsets)")}


def route_all(runtime: BeatContext, raw: psycopg.Connection, issues: list[int]) -> dict[int, str]:
    """Beat every manager, round after round, until no issue waits with a manager (or nobody moves one)."""
    held = set(managers(raw))
    owners: dict[int, str] = {}
    for _ in range(8):
        for slug in ["ceo", *sorted(held - {"ceo"})]:
            run_beat(slug, runtime)
        owners = dict(
            raw.execute(
                "SELECT i.id, coalesce(a.slug, '-') FROM issues i LEFT JOIN agents a ON a.id = i.assignee_id "
                "WHERE i.id = ANY(%s)",
                (issues,),
            ).fetchall()
        )
        if not set(owners.values()) & (held | {"-"}):
            break
    return owners


def create_ten(project: str) -> list[int]:
    ids = []
    for title, body in TEN:
        created = run_hq("issue", "create", title, "--project", project, "--body", body)
        assert created.exit_code == 0, created.stderr
        ids.append(int(created.stdout))
    return ids


def show_table(heading: str, issues: list[int], owners: dict[int, str]) -> None:
    print(f"\n{heading}")  # the routing table the issue's closing note reports
    for (title, _), issue in zip(TEN, issues, strict=True):
        print(f"  #{issue:<3} {owners[issue]:<28} {title}")


def test_ten_project_issues_without_assign_land_on_engineers(
    runtime: BeatContext, raw: psycopg.Connection, tmp_path: Path
) -> None:
    remote = make_remote(tmp_path)
    assert run_hq("project", "add", "calc", "--repo", str(remote)).exit_code == 0
    issues = create_ten("calc")
    owners = route_all(runtime, raw, issues)
    show_table("no team", issues, owners)
    engineers = code_roles(raw)
    assert all(owner in engineers for owner in owners.values()), owners
    # Keyword-shaped ("crash", "flaky", "fails") but project issues: routed whole, never split by a playbook.
    assert raw.execute("SELECT count(*) FROM issues WHERE parent_id = ANY(%s)", (issues,)).fetchone() == (0,)
    routed = raw.execute(
        "SELECT body FROM comments WHERE issue_id = %s AND kind = 'system' ORDER BY id DESC LIMIT 1", (issues[0],)
    ).fetchone()
    assert routed is not None and "among engineers" in routed[0]


def test_a_projects_team_takes_all_its_issues(runtime: BeatContext, raw: psycopg.Connection, tmp_path: Path) -> None:
    remote = make_remote(tmp_path)
    added = run_hq("project", "add", "api", "--repo", str(remote), "--team", "eng-lead-platform")
    assert added.exit_code == 0, added.stderr
    assert "team: eng-lead-platform (" in added.stdout and "backend-engineer" in added.stdout
    issues = create_ten("api")
    owners = route_all(runtime, raw, issues)
    show_table("team eng-lead-platform", issues, owners)
    team = {
        r[0]
        for r in raw.execute(
            "SELECT a.slug FROM agents a JOIN agents m ON m.id = a.manager_id "
            "WHERE m.slug = 'eng-lead-platform' AND 'code' = ANY(a.toolsets)"
        )
    }
    assert set(owners.values()) <= team, owners
    assert owners[issues[0]] != "design-systems-engineer"  # "tokens" no longer pulls a Python fix to design


def test_a_project_issue_given_to_a_manager_without_engineers_is_handed_on(
    runtime: BeatContext, raw: psycopg.Connection, tmp_path: Path
) -> None:
    remote = make_remote(tmp_path)
    assert run_hq("project", "add", "site", "--repo", str(remote)).exit_code == 0
    created = run_hq(
        "issue", "create", "Fix a typo in the docs", "--project", "site", "--assign", "vp-content", "--body", "readme"
    )
    issue = int(created.stdout)
    run_beat("vp-content", runtime)
    (owner,) = raw.execute(
        "SELECT a.slug FROM issues i JOIN agents a ON a.id = i.assignee_id WHERE i.id = %s", (issue,)
    ).fetchone() or ("",)
    assert owner in code_roles(raw), owner  # not the technical writer, who cannot work a repository
    comment = raw.execute("SELECT body FROM comments WHERE issue_id = %s AND kind = 'system'", (issue,)).fetchone()
    assert comment is not None and "nearest engineer" in comment[0]
    # With a team, the same hand-over goes to the team's manager, who routes among its engineers.
    assert run_hq("project", "set", "site", "--team", "qa-lead").exit_code == 0
    second = int(
        run_hq("issue", "create", "Fix a typo", "--project", "site", "--assign", "vp-content", "--body", "x").stdout
    )
    run_beat("vp-content", runtime)
    assert raw.execute(
        "SELECT a.slug FROM issues i JOIN agents a ON a.id = i.assignee_id WHERE i.id = %s", (second,)
    ).fetchone() == ("qa-lead",)


def test_plain_issues_still_route_by_keywords_alone(runtime: BeatContext, raw: psycopg.Connection) -> None:
    """No project: the design-token request reaches the design-systems engineer exactly as before."""
    issue = int(run_hq("issue", "create", "Refresh the design tokens for dark mode", "--body", "palette").stdout)
    owners = route_all(runtime, raw, [issue])
    assert owners[issue] == "design-systems-engineer"


def test_team_must_be_a_manager_and_shows_in_list_and_show(raw: psycopg.Connection, tmp_path: Path) -> None:
    assert run_hq("agents", "sync").exit_code == 0
    remote = make_remote(tmp_path)
    for slug, says in (("backend-engineer", "has no reports"), ("astrologer", "no agent named")):
        refused = run_hq("project", "add", "calc", "--repo", str(remote), "--team", slug)
        assert refused.exit_code == 2 and says in refused.stderr, refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1 and "Traceback" not in refused.stderr
    assert raw.execute("SELECT count(*) FROM projects").fetchone() == (0,)  # nothing written
    assert run_hq("project", "add", "calc", "--repo", str(remote), "--team", "eng-lead-web").exit_code == 0
    listed = run_hq("project", "list", "--json")
    assert '"team": "eng-lead-web"' in listed.stdout
    shown = run_hq("project", "show", "calc")
    assert "team: eng-lead-web" in shown.stdout
    assert run_hq("project", "set", "calc", "--no-team").exit_code == 0
    assert raw.execute("SELECT team_id FROM projects WHERE name = 'calc'").fetchone() == (None,)
    both = run_hq("project", "set", "calc", "--team", "qa-lead", "--no-team")
    assert both.exit_code == 2
    assert run_hq("project", "set", "nope", "--team", "qa-lead").exit_code == 2
