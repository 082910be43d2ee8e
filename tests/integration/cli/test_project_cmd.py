"""`hq project add|list|show|check|remove`, `hq issue create --project`, and what people see of a project issue."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import psycopg
import pytest

from tests.support.cli import Result, run_hq
from tests.support.projects import git, make_remote, sample_files
from tests.support.rows import force_status, new_issue, one

SHA = "1" * 40
SHA2 = "2" * 40


def count(raw: psycopg.Connection, sql: str, *params: object) -> int:
    return int(one(raw.execute(sql, params).fetchone())[0])


def projects(raw: psycopg.Connection) -> list[tuple[str, str, str, bool]]:
    rows = raw.execute("SELECT name, repo, base_branch, removed_at IS NOT NULL FROM projects ORDER BY id").fetchall()
    return [(r[0], r[1], r[2], r[3]) for r in rows]


def one_error(result: Result, code: int = 2) -> str:
    assert result.exit_code == code, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hq: error: "), result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.fixture()
def remote(tmp_path: Path) -> Path:
    return make_remote(tmp_path)


@pytest.fixture()
def sandbox_none(monkeypatch: pytest.MonkeyPatch) -> None:
    """Checks that need not depend on bubblewrap being usable on this host."""
    monkeypatch.setenv("HQ_SANDBOX", "none")


def test_add_list_show_check_remove(raw: psycopg.Connection, remote: Path, sandbox_none: None) -> None:
    added = run_hq("project", "add", "calc", "--repo", str(remote), "--as", "alice")
    assert added.exit_code == 0, added.stderr
    assert "project calc added" in added.stdout and "branch main at " in added.stdout
    assert "test: python3 -m unittest -q" in added.stdout and "gate: test" in added.stdout
    assert added.stderr == ""
    assert projects(raw) == [("calc", str(remote.resolve()), "main", False)]
    assert one(raw.execute("SELECT created_by FROM projects").fetchone()) == ("human:alice",)

    listed = run_hq("project", "list")
    assert listed.exit_code == 0, listed.stderr
    assert "calc" in listed.stdout and str(remote.resolve()) in listed.stdout and "1 project(s)" in listed.stdout
    rows = json.loads(run_hq("project", "list", "--json").stdout)
    assert [(r["name"], r["base_branch"], r["open_issues"]) for r in rows] == [("calc", "main", 0)]

    head = git(remote, "rev-parse", "main").strip()
    shown = run_hq("project", "show", "calc")
    assert shown.exit_code == 0, shown.stderr
    assert head in shown.stdout and "The project before HQ" in shown.stdout and "gate: test" in shown.stdout
    detail = json.loads(run_hq("project", "show", "calc", "--json").stdout)
    assert detail["base_head"] == head and detail["gate"] == ["test"] and detail["notes"] == []
    assert detail["commands"]["test"]["run"] == ["python3", "-m", "unittest", "-q"]
    assert detail["commands"]["test"]["timeout_from"] == "HQ_COMMAND_TIMEOUT_SECONDS"  # the file gives none
    # The limits HQ applies, as it applies them (issue 26: `show` said 300 s while an HQ cap of 12 s ruled).
    assert detail["limits"] == {
        "command_max_seconds": 10800,
        "tool_loop_max_seconds": 1800,
        "claude_code_max_seconds": 2400,
        "lease_ttl_seconds": 300,
        "lease_renewed_every_seconds": 100.0,
    }
    assert "HQ_TOOL_LOOP_MAX_SECONDS" in shown.stdout and "renewed every 100.0 s" in shown.stdout
    assert len(detail["log"]) == 1

    checked = run_hq("project", "check", "calc")
    assert checked.exit_code == 0, (checked.stdout, checked.stderr)
    assert "fetch: ok" in checked.stdout and f"branch main: ok: at {head[:12]}" in checked.stdout
    assert "project file: ok: commands: test; gate: test" in checked.stdout
    assert "sandbox: warning: HQ_SANDBOX=none" in checked.stdout
    report = json.loads(run_hq("project", "check", "calc", "--json").stdout)
    assert report["ok"] is True and [c["check"] for c in report["checks"]] == [
        "fetch",
        "branch main",
        "project file",
        "sandbox",
        "environment",  # issue 25: the check builds the environment (none declared here) and runs the gate
        "gate test",
    ]

    removed = run_hq("project", "remove", "calc")
    assert removed.exit_code == 0, removed.stderr
    assert projects(raw) == [("calc", str(remote.resolve()), "main", True)]
    assert json.loads(run_hq("project", "list", "--json").stdout) == []
    assert "no project named 'calc'" in one_error(run_hq("project", "show", "calc"))
    # the name is free again
    assert run_hq("project", "add", "calc", "--repo", str(remote)).exit_code == 0


def test_add_keeps_the_clone_it_fetched(raw: psycopg.Connection, remote: Path, tmp_path: Path) -> None:
    assert run_hq("project", "add", "calc", "--repo", str(remote)).exit_code == 0
    project_id = one(raw.execute("SELECT id FROM projects").fetchone())[0]
    projects_dir = tmp_path / "var" / "projects"
    assert (projects_dir / f"{project_id}-calc" / "repo.git" / "HEAD").is_file()
    assert not [p for p in projects_dir.iterdir() if p.name.startswith(".adding-")]


def test_duplicate_and_bad_names_exit_2(raw: psycopg.Connection, remote: Path) -> None:
    assert run_hq("project", "add", "calc", "--repo", str(remote)).exit_code == 0
    assert "project 'calc' already exists" in one_error(run_hq("project", "add", "calc", "--repo", str(remote)))
    assert "invalid project name 'Calc Project'" in one_error(
        run_hq("project", "add", "Calc Project", "--repo", str(remote))
    )
    assert "invalid branch name" in one_error(
        run_hq("project", "add", "other", "--repo", str(remote), "--branch", "-x")
    )
    assert "invalid branch name" in one_error(
        run_hq("project", "add", "other", "--repo", str(remote), "--branch", "hq/issue-1")
    )
    assert [p[0] for p in projects(raw)] == ["calc"]


def test_unreachable_or_unusable_remotes_exit_2_and_write_nothing(raw: psycopg.Connection, tmp_path: Path) -> None:
    not_a_repo = tmp_path / "plain"
    not_a_repo.mkdir()
    empty = tmp_path / "empty.git"
    git(tmp_path, "init", "-q", "--bare", str(empty))
    remote = make_remote(tmp_path)
    cases = {
        str(tmp_path / "nowhere"): "is neither an existing path nor",
        str(not_a_repo): "cannot add project 'calc': calc: cannot fetch",
        f"file://{tmp_path}/nowhere.git": "no such repository on this host",
        "http://127.0.0.1:1/repo.git": "cannot fetch",
        "ext::sh -c touch% /tmp/pwned": "ext:: remotes run programs",
        "fd::3": "fd:: remotes run programs",
        "--upload-pack=touch /tmp/pwned": "must not start with '-'",
        "ssh://git@example.invalid/x.git": "ssh:// remotes are not supported",
        "git@example.invalid:x.git": "is an ssh remote",
        str(empty): "has no branch 'main' (it has no branches)",
    }
    for repo, message in cases.items():
        line = one_error(run_hq("project", "add", "calc", "--repo", repo))
        assert message in line, (repo, line)
    line = one_error(run_hq("project", "add", "calc", "--repo", str(remote), "--branch", "develop"))
    assert "has no branch 'develop' (it has: main)" in line
    assert projects(raw) == []
    assert not Path("/tmp/pwned").exists()


def test_a_checked_out_base_branch_is_refused_with_the_bare_clone_hint(raw: psycopg.Connection, tmp_path: Path) -> None:
    remote = make_remote(tmp_path)
    source = tmp_path / "remote.git-source"  # the non-bare repository make_remote cloned from, main checked out
    line = one_error(run_hq("project", "add", "calc", "--repo", str(source)))
    assert "has 'main' checked out" in line and "git clone --bare" in line
    assert "has 'main' checked out" in one_error(run_hq("project", "add", "calc", "--repo", str(source / ".git")))
    git(source, "checkout", "-q", "-b", "elsewhere")  # another branch checked out: pushes to main are fine
    assert run_hq("project", "add", "calc", "--repo", str(source)).exit_code == 0
    assert run_hq("project", "add", "bare", "--repo", str(remote)).exit_code == 0


def test_a_missing_project_file_is_a_warning_at_add_and_a_failure_at_check(
    raw: psycopg.Connection, tmp_path: Path, sandbox_none: None
) -> None:
    files = {k: v for k, v in sample_files().items() if k != ".hq/project.yaml"}
    remote = make_remote(tmp_path, files)
    added = run_hq("project", "add", "calc", "--repo", str(remote))
    assert added.exit_code == 0, added.stderr
    warning = added.stderr.strip().splitlines()
    assert len(warning) == 1 and warning[0].startswith("hq: warning: project calc: .hq/project.yaml is missing")
    assert [p[0] for p in projects(raw)] == ["calc"]
    checked = run_hq("project", "check", "calc")
    line = one_error(checked, code=1)
    assert "project check failed: project file: .hq/project.yaml is missing" in line
    assert "project file: FAILED: .hq/project.yaml is missing" in checked.stdout and "fetch: ok" in checked.stdout
    shown = run_hq("project", "show", "calc")
    assert shown.exit_code == 0 and "note: project file: .hq/project.yaml is missing" in shown.stdout


def test_show_and_check_when_the_remote_is_gone(raw: psycopg.Connection, remote: Path, sandbox_none: None) -> None:
    assert run_hq("project", "add", "calc", "--repo", str(remote)).exit_code == 0
    shutil.rmtree(remote)
    shown = run_hq("project", "show", "calc")
    assert shown.exit_code == 0, shown.stderr
    notes = [line for line in shown.stdout.splitlines() if "note:" in line]
    assert len(notes) == 1 and "remote unavailable" in notes[0] and "cannot fetch" in notes[0]
    checked = run_hq("project", "check", "calc")
    assert "project check failed: fetch: calc: cannot fetch" in one_error(checked, code=1)
    assert "branch main: skipped" in checked.stdout and "project file: skipped" in checked.stdout
    assert "no project named 'nope'" in one_error(run_hq("project", "check", "nope"))


def test_list_never_prints_a_password_in_a_url(raw: psycopg.Connection) -> None:
    raw.execute(
        "INSERT INTO projects (name, repo, created_by) "
        "VALUES ('web', 'https://bot:Sup3rSecretPw@git.example.invalid/web.git', 'test')"
    )
    for args in (("project", "list"), ("project", "list", "--json")):
        result = run_hq(*args)
        assert result.exit_code == 0 and "git.example.invalid/web.git" in result.stdout
        assert "Sup3rSecretPw" not in result.stdout + result.stderr


def test_remove_is_refused_while_an_issue_is_open(raw: psycopg.Connection, remote: Path) -> None:
    assert run_hq("project", "add", "calc", "--repo", str(remote)).exit_code == 0
    issue = int(run_hq("issue", "create", "Add mul", "--project", "calc").stdout)
    line = one_error(run_hq("project", "remove", "calc"))
    assert f"project 'calc' still has open issues (#{issue})" in line
    assert projects(raw)[0][3] is False
    assert run_hq("cancel", str(issue)).exit_code == 0
    assert run_hq("project", "remove", "calc").exit_code == 0
    assert "no project named 'calc'" in one_error(run_hq("project", "remove", "calc"))


def test_issue_create_with_a_project(raw: psycopg.Connection, remote: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert run_hq("project", "add", "calc", "--repo", str(remote)).exit_code == 0
    project_id = one(raw.execute("SELECT id FROM projects").fetchone())[0]
    issue = int(run_hq("issue", "create", "Add mul", "--project", "calc").stdout)
    assert one(raw.execute("SELECT project_id FROM issues WHERE id = %s", (issue,)).fetchone()) == (project_id,)
    plain = int(run_hq("issue", "create", "Write a memo").stdout)
    assert one(raw.execute("SELECT project_id FROM issues WHERE id = %s", (plain,)).fetchone()) == (None,)

    before = count(raw, "SELECT count(*) FROM issues")
    assert "--project: no project named 'nope'" in one_error(run_hq("issue", "create", "x", "--project", "nope"))
    assert "not both" in one_error(run_hq("issue", "create", "x", "--project", "calc", "--no-project"))
    assert count(raw, "SELECT count(*) FROM issues") == before

    monkeypatch.setenv("HQ_DEFAULT_PROJECT", "calc")
    by_default = int(run_hq("issue", "create", "Add div").stdout)
    assert one(raw.execute("SELECT project_id FROM issues WHERE id = %s", (by_default,)).fetchone()) == (project_id,)
    for flag in (("--no-project",), ("--project", "")):
        none = int(run_hq("issue", "create", "A memo", *flag).stdout)
        assert one(raw.execute("SELECT project_id FROM issues WHERE id = %s", (none,)).fetchone()) == (None,)
    monkeypatch.setenv("HQ_DEFAULT_PROJECT", "gone")
    before = count(raw, "SELECT count(*) FROM issues")
    assert "HQ_DEFAULT_PROJECT: no project named 'gone'" in one_error(run_hq("issue", "create", "x"))
    assert count(raw, "SELECT count(*) FROM issues") == before


def _project_issue_with_evidence(raw: psycopg.Connection, remote: Path) -> int:
    assert run_hq("project", "add", "calc", "--repo", str(remote)).exit_code == 0
    project_id = one(raw.execute("SELECT id FROM projects").fetchone())[0]
    issue = new_issue(raw, "Add mul", status="todo", project_id=project_id)
    force_status(raw, issue, "in_review")
    stat = " calc.py      | 4 ++++\n test_calc.py | 6 ++++++\n 2 files changed, 10 insertions(+)"
    content = f"commit {SHA2}\nbranch hq/issue-{issue}\nbase {SHA}\n\n{stat}\n"
    raw.execute(
        "INSERT INTO artifacts (issue_id, path, sha256, size_bytes, content_type, content, commit_sha) "
        "VALUES (%s, %s, %s, %s, 'text/x-git-commit', %s, %s)",
        (issue, f"hq/issue-{issue}", hashlib.sha256(content.encode()).hexdigest(), len(content), content, SHA2),
    )
    checks = [
        (SHA, "review", "test", 0, "OK"),  # an older commit: not what people see
        (SHA2, "review", "lint", 0, "clean"),
        (SHA2, "review", "test", 1, "Ran 2 tests\nFAIL: test_mul\nAssertionError: 5 != 6\n\x1b[31mFAILED\x1b[0m"),
    ]
    for sha, stage, command, code, output in checks:
        raw.execute(
            "INSERT INTO check_runs (issue_id, project_id, commit_sha, stage, command, exit_code, duration_ms, "
            "output_tail, sandbox) VALUES (%s, %s, %s, %s, %s, %s, 1500, %s, 'bwrap')",
            (issue, project_id, sha, stage, command, code, output),
        )
    return issue


def test_issue_show_of_a_project_issue(raw: psycopg.Connection, remote: Path) -> None:
    issue = _project_issue_with_evidence(raw, remote)
    shown = run_hq("issue", "show", str(issue))
    assert shown.exit_code == 0, shown.stderr
    out = shown.stdout
    assert f"calc (branch hq/issue-{issue}, into main)" in out
    assert f"commit {SHA2} on hq/issue-{issue}" in out and "2 files changed, 10 insertions(+)" in out
    assert "calc.py      | 4 ++++" in out
    assert f"checks at {SHA2[:12]}" in out
    assert "lint" in out and "✓ ok" in out and "✗ exit 1" in out and "sandbox bwrap" in out
    assert "| AssertionError: 5 != 6" in out and "\\x1b[31mFAILED" in out and "\x1b" not in out
    assert "OK" not in out.split("checks at")[1]  # the older commit's run is not shown

    detail = json.loads(run_hq("issue", "show", str(issue), "--json").stdout)
    assert detail["project"] == {
        "id": detail["issue"]["project_id"],
        "name": "calc",
        "base_branch": "main",
        "branch": f"hq/issue-{issue}",
    }
    assert detail["commit"]["sha"] == SHA2 and detail["commit"]["base"] == SHA
    assert detail["commit"]["summary"] == "2 files changed, 10 insertions(+)"
    assert [(c["command"], c["exit_code"], c["commit_sha"]) for c in detail["checks"]] == [
        ("lint", 0, SHA2),
        ("test", 1, SHA2),
    ]
    assert detail["issue"]["merged_sha"] is None

    force_status(raw, issue, "done", merged_sha=SHA)
    assert f"merged: {SHA}" in run_hq("issue", "show", str(issue)).stdout
    plain = new_issue(raw, "A memo")
    shown = run_hq("issue", "show", str(plain))
    assert shown.exit_code == 0 and "project" not in shown.stdout and "checks" not in shown.stdout
    detail = json.loads(run_hq("issue", "show", str(plain), "--json").stdout)
    assert (detail["project"], detail["commit"], detail["checks"]) == (None, None, [])
    assert detail["issue"]["project_id"] is None


def test_approvals_show_the_change_and_the_checks(raw: psycopg.Connection, remote: Path) -> None:
    issue = _project_issue_with_evidence(raw, remote)
    force_status(raw, issue, "pending_approval")
    plain = new_issue(raw, "A memo")
    force_status(raw, plain, "pending_approval")
    for waiting in (issue, plain):
        raw.execute(
            "INSERT INTO approvals (issue_id, kind, requested_by, deadline) "
            "VALUES (%s, 'work', 'agent:dev', now() + interval '1 hour')",
            (waiting,),
        )
    listed = run_hq("approvals")
    assert listed.exit_code == 0, listed.stderr
    assert "calc: 2 files changed, 10 insertions(+); lint ✓, test ✗ exit 1" in listed.stdout
    rows = {row["issue_id"]: row for row in json.loads(run_hq("approvals", "--json").stdout)}
    assert rows[issue]["project"] == "calc" and rows[issue]["changes"] == "2 files changed, 10 insertions(+)"
    assert rows[issue]["checks"] == [
        {"command": "lint", "ok": True, "exit_code": 0},
        {"command": "test", "ok": False, "exit_code": 1},
    ]
    assert (rows[plain]["project"], rows[plain]["changes"], rows[plain]["checks"]) == (None, None, [])


def test_config_check_names_the_sandbox(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HQ_SANDBOX", "none")
    result = run_hq("config", "check")
    assert result.exit_code == 0, (result.stdout, result.stderr)
    assert "sandbox: none (HQ_SANDBOX=none) can run commands" in result.stdout
    assert "sandbox: WARNING: project commands run unconfined" in result.stdout


def test_config_check_fails_when_the_sandbox_cannot_run(
    db_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HQ_SANDBOX", "bwrap")
    monkeypatch.setenv("PATH", str(tmp_path))  # no bwrap on PATH
    result = run_hq("config", "check")
    line = one_error(result, code=1)
    assert "config check failed: sandbox (HQ_SANDBOX=bwrap): " in line and "bwrap" in line
    assert "sandbox: FAILED: HQ_SANDBOX=bwrap" in result.stdout and "database: ok" in result.stdout


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed (`make sandbox-deps`)")
def test_config_check_says_bwrap_works(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HQ_SANDBOX", "bwrap")
    result = run_hq("config", "check")
    assert result.exit_code == 0, (result.stdout, result.stderr)
    assert "sandbox: ok (HQ_SANDBOX=bwrap: bwrap " in result.stdout and " works)" in result.stdout


def test_project_commands_never_load_the_model_stacks(raw: psycopg.Connection, remote: Path) -> None:
    from tests.support.cli import probe

    assert probe("project", "add", "calc", "--repo", str(remote)) == {"code": 0, "heavy": []}
    assert probe("project", "list") == {"code": 0, "heavy": []}
    assert probe("project", "show", "calc") == {"code": 0, "heavy": []}
