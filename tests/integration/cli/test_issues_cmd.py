"""`hq issue create|show` and `hq issues`: what a person types, what they see, and what is stored."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg

from tests.support.cli import run_hq
from tests.support.rows import seed_agents


def count(raw: psycopg.Connection, table: str) -> int:
    row = raw.execute(f"SELECT count(*) FROM {table}").fetchone()
    assert row is not None
    return int(row[0])


def test_create_prints_the_new_id_and_records_the_human(raw: psycopg.Connection) -> None:
    result = run_hq(
        "issue",
        "create",
        "Ship the thing",
        "--body",
        "details",
        "--priority",
        "2",
        "--budget",
        "3.5",
        "--needs-approval",
        "--as",
        "alice",
    )
    assert result.exit_code == 0, result.stderr
    issue_id = int(result.stdout.strip())
    row = raw.execute(
        "SELECT title, body, priority, budget_usd, needs_approval, status, created_by FROM issues WHERE id = %s",
        (issue_id,),
    ).fetchone()
    assert row is not None
    assert row[:5] == ("Ship the thing", "details", 2, __import__("decimal").Decimal("3.5000"), True)
    assert row[5] == "backlog"
    assert row[6] == "human:alice"
    actor = raw.execute("SELECT actor FROM issue_events WHERE issue_id = %s", (issue_id,)).fetchone()
    assert actor == ("human:alice",)


def test_create_assigned_to_an_executor_is_todo_with_dependencies(raw: psycopg.Connection) -> None:
    seed_agents(raw)
    first = int(run_hq("issue", "create", "first").stdout)
    second = int(run_hq("issue", "create", "second").stdout)
    result = run_hq(
        "issue", "create", "third", "--assign", "dev", "--depends-on", str(first), "--depends-on", f"{second}"
    )
    assert result.exit_code == 0, result.stderr
    third = int(result.stdout)
    assert raw.execute("SELECT status, unmet_deps FROM issues WHERE id = %s", (third,)).fetchone() == ("todo", 2)
    manager_owned = int(run_hq("issue", "create", "route me", "--assign", "boss").stdout)
    assert raw.execute("SELECT status FROM issues WHERE id = %s", (manager_owned,)).fetchone() == ("backlog",)


def test_body_file_and_stdin(raw: psycopg.Connection, tmp_path: Path) -> None:
    body = tmp_path / "body.md"
    body.write_text("# Acceptance\n- it works\n", encoding="utf-8")
    issue_id = int(run_hq("issue", "create", "from file", "--body-file", str(body)).stdout)
    assert raw.execute("SELECT body FROM issues WHERE id = %s", (issue_id,)).fetchone() == (
        "# Acceptance\n- it works\n",
    )
    issue_id = int(run_hq("issue", "create", "from stdin", "--body-file", "-", stdin="piped body").stdout)
    assert raw.execute("SELECT body FROM issues WHERE id = %s", (issue_id,)).fetchone() == ("piped body",)


def test_bad_input_is_one_line_exit_2_and_writes_nothing(raw: psycopg.Connection, tmp_path: Path) -> None:
    binary = tmp_path / "blob.bin"
    binary.write_bytes(b"\xff\xfe\x00\x01")
    cases = [
        ("issue", "create", ""),
        ("issue", "create", "   "),
        ("issue", "create", "x" * 501),
        ("issue", "create", "ok", "--priority", "12"),
        ("issue", "create", "ok", "--budget", "-1"),
        ("issue", "create", "ok", "--budget", "lots"),
        ("issue", "create", "ok", "--assign", "nobody"),
        ("issue", "create", "ok", "--depends-on", "424242"),
        ("issue", "create", "ok", "--depends-on", "abc"),
        ("issue", "create", "ok", "--body", "a", "--body-file", str(binary)),
        ("issue", "create", "ok", "--body-file", str(binary)),
        ("issue", "create", "ok", "--body-file", str(tmp_path / "missing.md")),
        ("issue", "create", "nul\x00byte"),
        ("issue", "create", "two\nlines"),
        ("issues", "--status", "nonsense"),
        ("issue", "show", "999999"),
    ]
    for args in cases:
        result = run_hq(*args)
        assert result.exit_code == 2, (args, result)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("hq: error:"), (args, result.stderr)
        assert "Traceback" not in result.stderr
    assert count(raw, "issues") == 0


def test_issue_create_empty_title_message(db_url: str) -> None:
    result = run_hq("issue", "create", "")
    assert result.exit_code == 2
    assert "title" in result.stderr and "empty" in result.stderr


def test_issues_lists_and_filters(raw: psycopg.Connection) -> None:
    seed_agents(raw)
    run_hq("issue", "create", "alpha", "--assign", "dev")
    run_hq("issue", "create", "beta")
    table = run_hq("issues")
    assert table.exit_code == 0
    assert "alpha" in table.stdout and "beta" in table.stdout
    todo = json.loads(run_hq("issues", "--status", "todo", "--json").stdout)
    assert [row["title"] for row in todo] == ["alpha"]
    assert todo[0]["assignee"] == "dev"
    mine = json.loads(run_hq("issues", "--assignee", "dev", "--json").stdout)
    assert [row["title"] for row in mine] == ["alpha"]


def test_issue_show_has_fields_dependencies_timeline_comments_and_cost(raw: psycopg.Connection) -> None:
    seed_agents(raw)
    dep = int(run_hq("issue", "create", "dependency").stdout)
    issue_id = int(run_hq("issue", "create", "main", "--assign", "dev", "--depends-on", str(dep)).stdout)
    raw.execute("INSERT INTO comments (issue_id, author, body) VALUES (%s, 'agent:dev', 'halfway there')", (issue_id,))
    raw.execute(
        "INSERT INTO llm_calls (run_id, call_seq, issue_id, tier, outcome, cost_usd) VALUES "
        "(gen_random_uuid(), 1, %s, 'execution', 'ok', 0.25), (gen_random_uuid(), 1, %s, 'utility', 'ok', 0.5)",
        (issue_id, issue_id),
    )
    detail = json.loads(run_hq("issue", "show", str(issue_id), "--json").stdout)
    assert detail["issue"]["title"] == "main"
    assert detail["issue"]["assignee"] == "dev"
    assert detail["dependencies"] == [{"id": dep, "title": "dependency", "status": "backlog"}]
    assert [item["change"] for item in detail["timeline"]] == ["(new) -> todo", "comment (note)"]
    assert detail["cost_usd"] == "0.75000000"
    text = run_hq("issue", "show", str(issue_id))
    assert text.exit_code == 0
    assert "halfway there" in text.stdout and "$0.7500" in text.stdout


def test_hostile_text_is_stored_verbatim_and_shown_safely(raw: psycopg.Connection) -> None:
    title = "[bold red]x[/] \x1b[2J'; DROP TABLE issues; --"
    result = run_hq("issue", "create", title, "--body", "\x07bell \u202e")
    assert result.exit_code == 0, result.stderr
    issue_id = int(result.stdout)
    assert raw.execute("SELECT title FROM issues WHERE id = %s", (issue_id,)).fetchone() == (title,)
    shown = run_hq("issue", "show", str(issue_id)).stdout
    assert "\x1b" not in shown and "\x07" not in shown
    assert "\\x1b[2J" in shown and "[bold red]" in shown
