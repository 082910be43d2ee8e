"""The bad-input corpus: malformed CLI arguments, settings, AGENTS.md files, playbooks, models
files and issue text. Each either gets a clear one-line error (exit 2, no traceback) and
leaves every table exactly as it was, or is stored verbatim and shown safely.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from config.settings import PACKAGE_ROOT
from tests.support.cli import Result, run_hq
from tests.support.rows import agent_record, one

Setup = Callable[[Path, pytest.MonkeyPatch], list[str]]


def fingerprint(raw: psycopg.Connection) -> dict[str, str]:
    """Every table's full contents, hashed: equal fingerprints mean nothing was written."""
    tables = [
        r[0]
        for r in raw.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
        )
    ]
    return {
        t: one(
            raw.execute(f"SELECT md5(coalesce(string_agg(x::text, ',' ORDER BY x::text), '')) FROM {t} x").fetchone()
        )[0]
        for t in tables
    }


def assert_clean_error(result: Result, fragment: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2, (result.exit_code, result.stderr, result.stdout)
    assert len(lines) == 1 and lines[0].startswith("hq: error: "), result.stderr
    assert fragment.lower() in lines[0].lower(), (fragment, lines[0])
    assert "Traceback" not in result.stderr + result.stdout


@pytest.fixture()
def company(db_url: str, raw: psycopg.Connection) -> dict[str, int]:
    assert run_hq("agents", "sync").exit_code == 0
    todo = int(run_hq("issue", "create", "An ordinary issue", "--assign", "backend-engineer").stdout)
    return {"todo": todo}


# --- CLI arguments and issue text that must be refused ----------------------------------------


def _binary_body(tmp: Path, _mp: pytest.MonkeyPatch) -> list[str]:
    path = tmp / "body.bin"
    path.write_bytes(bytes(range(256)) * 4)
    return ["issue", "create", "Binary body", "--body-file", str(path)]


REFUSED: dict[str, tuple[list[str] | Setup, str]] = {
    "empty title": (["issue", "create", ""], "title"),
    "blank title": (["issue", "create", "   \t "], "title"),
    "title over 500 chars": (["issue", "create", "x" * 501], "title"),
    "multi-line title": (["issue", "create", "line one\nline two"], "single line"),
    "NUL in title": (["issue", "create", "nul\x00here"], "NUL"),
    "NUL in body": (["issue", "create", "ok", "--body", "a\x00b"], "NUL"),
    "body over 200k chars": (["issue", "create", "ok", "--body", "y" * 200_001], "body"),
    "binary body file": (_binary_body, "not UTF-8"),
    "missing body file": (["issue", "create", "ok", "--body-file", "/nonexistent/body.md"], "cannot read"),
    "priority out of range": (["issue", "create", "ok", "--priority", "42"], "priority"),
    "unknown assignee": (["issue", "create", "ok", "--assign", "nobody"], "nobody"),
    "negative budget": (["issue", "create", "ok", "--budget", "-1"], "budget"),
    "budget not a number": (["issue", "create", "ok", "--budget", "lots"], "budget"),
    "unknown dependency": (["issue", "create", "ok", "--depends-on", "999999"], "999999"),
    "malformed label": (["issue", "create", "ok", "--label", "Bad Label!"], "label"),
    "approve unknown issue": (["approve", "999999"], "999999"),
    "approve non-number": (["approve", "abc"], "not an issue id"),
    "approve an issue not waiting": (["approve", "{todo}"], "pending_approval"),
    "reject without reason": (["reject", "{todo}"], "--reason"),
    "budget add negative": (["budget", "{todo}", "--add", "-5"], "--add"),
    "unblock an issue not blocked": (["unblock", "{todo}", "--note", "go"], "blocked"),
    "unknown status filter": (["issues", "--status", "nonsense"], "status"),
    "since not a date": (["report", "cost_by_tier", "--since", "yesterday"], "since"),
    "unknown report": (["report", "report_nope"], "unknown report"),
    "unknown agent": (["agents", "show", "nobody"], "nobody"),
    "empty goal": (["goal", "create", " "], "title"),
    "unknown command": (["frobnicate"], "frobnicate"),
    # ids: ASCII digits within bigint, everywhere one is read
    "issue show past bigint": (["issue", "show", "9223372036854775808"], "not an issue id"),
    "issue show zero": (["issue", "show", "0"], "not an issue id"),
    "goal close past bigint": (["goal", "close", "9223372036854775808"], "not a goal id"),
    "notifications retry past bigint": (["notifications", "retry", "9223372036854775808"], "not a notification id"),
    "approve past bigint": (["approve", "9223372036854775808"], "not an issue id"),
    "cancel non-ASCII digit": (["cancel", "\u0663"], "not an issue id"),
    "budget past bigint": (["budget", "9223372036854775808", "--add", "1"], "not an issue id"),
    "depends-on past bigint": (["issue", "create", "ok", "--depends-on", "9223372036854775808"], "--depends-on"),
    "depends-on Arabic-Indic digit": (["issue", "create", "ok", "--depends-on", "\u0661"], "--depends-on"),
    "depends-on superscript digit": (["issue", "create", "ok", "--depends-on", "\u00b2"], "--depends-on"),
    "depends-on signed": (["issue", "create", "ok", "--depends-on", "+1"], "--depends-on"),
    # amounts: plain ASCII decimals, at least one cent, at most the cap, no more places than the column
    "budget add below a cent": (["budget", "{todo}", "--add", "1e-9"], "--add"),
    "budget add a tenth of a cent": (["budget", "{todo}", "--add", "0.001"], "--add"),
    "budget add five places": (["budget", "{todo}", "--add", "1.00001"], "--add"),
    "budget add infinity": (["budget", "{todo}", "--add", "Infinity"], "--add"),
    "budget add over the cap": (["budget", "{todo}", "--add", "100000.01"], "--add"),
    "budget add non-ASCII digit": (["budget", "{todo}", "--add", "\u0665"], "--add"),
    "issue budget below a cent": (["issue", "create", "ok", "--budget", "0.001"], "--budget"),
    "issue budget over the cap": (["issue", "create", "ok", "--budget", "100001"], "--budget"),
    "issue budget exponent": (["issue", "create", "ok", "--budget", "1e3"], "--budget"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_refused_cleanly_and_nothing_written(
    case: str, company: dict[str, int], raw: psycopg.Connection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec, fragment = REFUSED[case]
    args = spec(tmp_path, monkeypatch) if callable(spec) else [a.format(**company) for a in spec]
    before = fingerprint(raw)
    assert_clean_error(run_hq(*args), fragment)
    assert fingerprint(raw) == before


# --- settings -------------------------------------------------------------------------------

BAD_SETTINGS: dict[str, tuple[str, str, str]] = {
    "zero attempts": ("HQ_MAX_ATTEMPTS", "0", "max_attempts"),
    "heartbeat scale not a number": ("HQ_HEARTBEAT_SCALE", "fast", "heartbeat_scale"),
    "unknown log level": ("HQ_LOG_LEVEL", "loud", "log_level"),
    "agent lease shorter than the minimum": ("HQ_AGENT_LEASE_TTL_SECONDS", "2", "agent_lease_ttl_seconds"),
    "telegram base not http": ("TELEGRAM_API_BASE", "ftp://bots.example", "http"),
    "deploy command a shell string": ("HQ_DEPLOY_COMMAND", "rm -rf /", "deploy_command"),
    "database url not a url": ("DATABASE_URL", "not a database url", "DATABASE_URL"),
    # values that used to validate and then fail later, at a reservation, an INSERT or a deploy
    "company budget infinite": ("HQ_COMPANY_MONTHLY_BUDGET_USD", "inf", "HQ_COMPANY_MONTHLY_BUDGET_USD"),
    "company budget NaN": ("HQ_COMPANY_MONTHLY_BUDGET_USD", "nan", "HQ_COMPANY_MONTHLY_BUDGET_USD"),
    "company budget past numeric(12,4)": (
        "HQ_COMPANY_MONTHLY_BUDGET_USD",
        "100000000",
        "HQ_COMPANY_MONTHLY_BUDGET_USD",
    ),
    "issue budget past numeric(12,4)": ("HQ_DEFAULT_ISSUE_BUDGET_USD", "1e20", "HQ_DEFAULT_ISSUE_BUDGET_USD"),
    "issue budget over the --budget cap": ("HQ_DEFAULT_ISSUE_BUDGET_USD", "99999999", "HQ_DEFAULT_ISSUE_BUDGET_USD"),
    "issue budget below a cent": ("HQ_DEFAULT_ISSUE_BUDGET_USD", "0.001", "HQ_DEFAULT_ISSUE_BUDGET_USD"),
    "statement timeout past int": ("HQ_STATEMENT_TIMEOUT_MS", "99999999999", "HQ_STATEMENT_TIMEOUT_MS"),
    "idle timeout past int": ("HQ_IDLE_IN_TRANSACTION_TIMEOUT_MS", "2147483648", "HQ_IDLE_IN_TRANSACTION_TIMEOUT_MS"),
    "approval deadline infinite": ("HQ_APPROVAL_DEADLINE_HOURS", "inf", "HQ_APPROVAL_DEADLINE_HOURS"),
    "deploy command with ${HOME}": ("HQ_DEPLOY_COMMAND", '["cp", "-r", "{workspace}", "${HOME}/site"]', "{HOME}"),
    "deploy command empty": ("HQ_DEPLOY_COMMAND", "[]", "omit HQ_DEPLOY_COMMAND"),
    "verify command empty": ("HQ_VERIFY_COMMAND", "[]", "omit HQ_VERIFY_COMMAND"),
    "verify command positional {}": ("HQ_VERIFY_COMMAND", '["test", "-d", "{}"]', "positional"),
    "verify command unclosed brace": ("HQ_VERIFY_COMMAND", '["test", "-d", "{published"]', "HQ_VERIFY_COMMAND"),
    "verify command attribute": ("HQ_VERIFY_COMMAND", '["test", "-d", "{published.parent}"]', "{published.parent}"),
    "verify command format spec": ("HQ_VERIFY_COMMAND", '["echo", "{issue_id:d}"]', "HQ_VERIFY_COMMAND"),
    "database url port not a number": ("DATABASE_URL", "postgresql://hq@localhost:notaport/hq", "port"),
    "database url port out of range": ("DATABASE_URL", "postgresql://hq@localhost:70000/hq", "port"),
    "data dir that cannot exist": ("HQ_DATA_DIR", "/proc/nope", "HQ_DATA_DIR"),
    "data dir under a file": ("HQ_DATA_DIR", "/etc/hostname/var", "HQ_DATA_DIR"),
}


@pytest.mark.parametrize("case", sorted(BAD_SETTINGS))
def test_bad_settings_stop_every_command(
    case: str, company: dict[str, int], raw: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    variable, value, fragment = BAD_SETTINGS[case]
    before = fingerprint(raw)
    monkeypatch.setenv(variable, value)
    for args in (["config", "check"], ["issue", "create", "Should not be created"]):
        assert_clean_error(run_hq(*args), fragment)
    monkeypatch.delenv(variable)
    assert fingerprint(raw) == before


# --- AGENTS.md, playbooks, models file --------------------------------------------------------


def _roles(tmp: Path, mp: pytest.MonkeyPatch, role: str, text: str | bytes) -> None:
    roles = tmp / "roles"
    shutil.copytree(PACKAGE_ROOT / "agents" / "roles", roles)
    target = roles / role / "AGENTS.md"
    target.write_bytes(text if isinstance(text, bytes) else text.encode())
    mp.setenv("HQ_ROLES_DIR", str(roles))


def _edit_role(tmp: Path, mp: pytest.MonkeyPatch, role: str, old: str, new: str) -> None:
    original = (PACKAGE_ROOT / "agents" / "roles" / role / "AGENTS.md").read_text()
    assert old in original
    _roles(tmp, mp, role, original.replace(old, new))


def _playbook(tmp: Path, mp: pytest.MonkeyPatch, name: str, text: str) -> None:
    playbooks = tmp / "playbooks"
    shutil.copytree(PACKAGE_ROOT / "agents" / "playbooks", playbooks)
    (playbooks / name).write_text(text)
    mp.setenv("HQ_PLAYBOOKS_DIR", str(playbooks))


def _models(tmp: Path, mp: pytest.MonkeyPatch, text: str) -> None:
    (tmp / "models.yaml").write_text(text)
    mp.setenv("HQ_MODELS_FILE", str(tmp / "models.yaml"))


VALID_MODELS = (PACKAGE_ROOT / "config" / "models.yaml").read_text()

BAD_FILES: dict[str, tuple[Callable[[Path, pytest.MonkeyPatch], None], str]] = {
    "AGENTS.md without front matter": (
        lambda t, m: _roles(t, m, "qa-engineer", "# QA\n\nNo front matter.\n"),
        "qa-engineer",
    ),
    "AGENTS.md with broken YAML": (
        lambda t, m: _roles(t, m, "qa-engineer", "---\nslug: [qa\n---\nbody\n"),
        "qa-engineer",
    ),
    "AGENTS.md that is binary": (lambda t, m: _roles(t, m, "qa-engineer", bytes(range(256))), "qa-engineer"),
    "AGENTS.md that is empty": (lambda t, m: _roles(t, m, "qa-engineer", ""), "qa-engineer"),
    "AGENTS.md heartbeat not a duration": (
        lambda t, m: _edit_role(t, m, "qa-engineer", "heartbeat: 15m", "heartbeat: often"),
        "heartbeat",
    ),
    "AGENTS.md chain of command cycle": (
        lambda t, m: _edit_role(t, m, "vp-product", "reports_to: ceo", "reports_to: researcher"),
        "cycle",
    ),
    "playbook with broken YAML": (lambda t, m: _playbook(t, m, "broken.yaml", "name: [broken\n"), "broken.yaml"),
    "playbook naming an unknown role": (
        lambda t, m: _playbook(
            t,
            m,
            "ghost.yaml",
            (
                "name: ghost\ndescription: A playbook for a role that does not exist.\n"
                "classification_keywords: [ghost]\n"
                "modules:\n  - id: haunt\n    title: Haunt\n    role: ghost-writer\n    output: Something.\n"
                "  - id: report\n    title: Report\n    role: editor\n    depends_on: [haunt]\n    output: A report.\n"
                "quality_checklist:\n  - It is spooky.\n"
            ),
        ),
        "ghost-writer",
    ),
    "models file with broken YAML": (lambda t, m: _models(t, m, "tiers: [\n"), "models"),
    "models file with an unknown tier": (
        lambda t, m: _models(t, m, VALID_MODELS.replace("  utility:", "  trivia:")),
        "trivia",
    ),
    "models file with a negative price": (
        lambda t, m: _models(
            t,
            m,
            VALID_MODELS.replace(
                "api_key_env: ANTHROPIC_API_KEY\n", "api_key_env: ANTHROPIC_API_KEY\n      input_usd_per_mtok: -3\n", 1
            ),
        ),
        "input_usd_per_mtok",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_files_are_named_and_nothing_is_synced(
    case: str, company: dict[str, int], raw: psycopg.Connection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup, fragment = BAD_FILES[case]
    setup(tmp_path, monkeypatch)
    before = fingerprint(raw)
    assert_clean_error(run_hq("config", "check"), fragment)
    result = run_hq("agents", "sync") if "AGENTS" in case else run_hq("run", "--once")
    assert_clean_error(result, fragment)
    assert fingerprint(raw) == before


# --- hostile text that is legitimate: stored verbatim, shown safely -----------------------------

STORED = {
    "SQL-looking title": ("Robert'); DROP TABLE issues; --", "Fine body"),
    "terminal escapes and a bell": ("Fix the \x1b[31mred\x1b[0m alert\x07", "\x1b]0;owned\x07 title change"),
    "rich markup": ("[bold red]boom[/bold red] [link=http://evil.example]click[/link]", "[blink]x[/blink]"),
    "bidi override and zero-width": ("Invoice \u202egnp.exe\u202c \u200bnow", "abc\u2066def\u2069"),
    "emoji and CJK": ("Ship 🚀 新功能 to everyone", "Ünïcödé body ✓"),
    "body at the size limit": ("Big body", "z" * 200_000),
}


@pytest.mark.parametrize("case", sorted(STORED))
def test_hostile_text_is_stored_verbatim_and_shown_safely(
    case: str, company: dict[str, int], raw: psycopg.Connection
) -> None:
    title, body = STORED[case]
    created = run_hq("issue", "create", title, "--body", body)
    assert created.exit_code == 0, created.stderr
    issue = int(created.stdout)
    assert raw.execute("SELECT title, body FROM issues WHERE id = %s", (issue,)).fetchone() == (title, body)
    assert raw.execute("SELECT to_regclass('issues') IS NOT NULL").fetchone() == (True,)
    for args in (["issue", "show", str(issue)], ["issues"]):
        shown = run_hq(*args)
        assert shown.exit_code == 0, shown.stderr
        hidden = [
            ch
            for ch in shown.stdout
            if (ord(ch) < 0x20 and ch not in "\n") or 0x7F <= ord(ch) <= 0x9F or ch in "\u202e\u202c\u200b\u2066\u2069"
        ]
        assert hidden == [], (case, hidden)
    shown_text = run_hq("issue", "show", str(issue)).stdout
    if "markup" in case:
        assert "[bold red]boom[/bold red]" in shown_text  # printed, not interpreted
    as_json = json.loads(run_hq("issue", "show", str(issue), "--json").stdout)
    assert (as_json["issue"]["title"], as_json["issue"]["body"]) == (
        title,
        body,
    )  # JSON carries the exact text, escaped


# --- tool calls from a hostile model: refused before any side effect, and audited ---------------

TOOL_CALLS: dict[str, tuple[str, str | dict[str, object]]] = {
    "nested .git config": ("write_file", {"path": "notes/.git/config", "content": "[core]\n\tfsmonitor = id\n"}),
    "nested .git HEAD": ("write_file", {"path": "notes/.git/HEAD", "content": "ref: refs/heads/main\n"}),
    "upper-case .GIT": ("write_file", {"path": ".GIT/config", "content": "[core]\n"}),
    "mixed-case .Git deep": ("write_file", {"path": "a/b/.Git/hooks/pre-commit", "content": "#!/bin/sh\nid\n"}),
    "alternates": ("write_file", {"path": "x/.git/objects/info/alternates", "content": "../../.git/objects\n"}),
    ".gitattributes": ("write_file", {"path": ".gitattributes", "content": "* filter=x\n"}),
    ".gitmodules": ("write_file", {"path": ".gitmodules", "content": '[submodule "x"]\n'}),
    ".gitignore": ("write_file", {"path": "docs/.gitignore", "content": "*\n"}),
    "workspace root": ("write_file", {"path": ".", "content": "x"}),
    "workspace root slash": ("write_file", {"path": "./", "content": "x"}),
    "directory target": ("write_file", {"path": "docs/", "content": "x"}),
    "NUL in content": ("write_file", {"path": "a.md", "content": "a\x00b"}),
    "NUL in path": ("write_file", {"path": "a\x00.md", "content": "x"}),
    "NUL in a key": ("write_file", '{"path": "a.md", "content": "x", "k\\u0000": 1}'),
    "NUL in a comment": ("comment", {"body": "a\x00b"}),
    "NUL in the tool name": ("write\x00file", {"path": "a.md", "content": "x"}),
    "NaN in arguments": ("write_file", '{"path": "a.md", "content": "x", "n": NaN}'),
    "Infinity in arguments": ("write_file", '{"path": "a.md", "content": "x", "n": -Infinity}'),
    "NaN as a float": ("write_file", {"path": "a.md", "content": "x", "n": float("nan")}),
    "lone surrogate in a path": ("write_file", '{"path": "lo\\udcff.md", "content": "x"}'),
    "lone surrogate in content": ("write_file", {"path": "a.md", "content": "x\ud800y"}),
    "nested 3000 deep": ("write_file", '{"path": "a.md", "content": "x", "k": ' + "[" * 3000 + "]" * 3000 + "}"),
    "nested 40 deep": (
        "list_files",
        {"k": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]},
    ),
    "absolute path": ("write_file", {"path": "/etc/cron.d/x", "content": "x"}),
    "parent path": ("write_file", {"path": "../../x", "content": "x"}),
}


@pytest.mark.parametrize("case", sorted(TOOL_CALLS))
def test_hostile_tool_calls_do_nothing_but_leave_an_audit_row(
    case: str, company: dict[str, int], raw: psycopg.Connection
) -> None:
    import uuid

    from agents.tools.context import ToolContext
    from agents.tools.dispatch import dispatch
    from config.settings import get_settings
    from db.engine import get_engine

    ctx = ToolContext(
        agent=agent_record("backend-engineer"),
        issue_id=company["todo"],
        run_id=uuid.uuid4(),
        workflow="execute",
        settings=get_settings(),
        engine=get_engine(),
    )
    workspace = ctx.workspace_root()
    (workspace / "docs").mkdir(parents=True)
    before = {t: v for t, v in fingerprint(raw).items() if t != "tool_calls"}
    name, arguments = TOOL_CALLS[case]
    result = dispatch(ctx, name, arguments, step=1)
    assert result.outcome in ("refused", "invalid", "error"), result
    assert {t: v for t, v in fingerprint(raw).items() if t != "tool_calls"} == before
    assert sorted(
        p.relative_to(workspace).as_posix()
        for p in workspace.rglob("*")
        if ".git" not in p.relative_to(workspace).parts
    ) == ["docs"]
    assert raw.execute("SELECT outcome FROM tool_calls WHERE run_id = %s", (ctx.run_id,)).fetchall() == [
        (result.outcome,)
    ]
