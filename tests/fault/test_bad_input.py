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
from tests.conftest import Result, run_hq

Setup = Callable[[Path, pytest.MonkeyPatch], list[str]]


def fingerprint(raw: psycopg.Connection) -> dict[str, str]:
    """Every table's full contents, hashed: equal fingerprints mean nothing was written."""
    tables = [r[0] for r in raw.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'")]
    return {t: raw.execute(f"SELECT md5(coalesce(string_agg(x::text, ',' ORDER BY x::text), '')) FROM {t} x")
            .fetchone()[0] for t in tables}


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
    "approve non-number": (["approve", "abc"], "integer"),
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
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_refused_cleanly_and_nothing_written(case: str, company: dict[str, int], raw: psycopg.Connection,
                                            tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec, fragment = REFUSED[case]
    args = spec(tmp_path, monkeypatch) if callable(spec) else [a.format(**company) for a in spec]
    before = fingerprint(raw)
    assert_clean_error(run_hq(*args), fragment)
    assert fingerprint(raw) == before


# --- settings -------------------------------------------------------------------------------

BAD_SETTINGS = {
    "HQ_MAX_ATTEMPTS": ("0", "max_attempts"),
    "HQ_HEARTBEAT_SCALE": ("fast", "heartbeat_scale"),
    "HQ_LOG_LEVEL": ("loud", "log_level"),
    "HQ_AGENT_LEASE_TTL_SECONDS": ("20", "HQ_AGENT_LEASE_TTL_SECONDS"),
    "TELEGRAM_API_BASE": ("ftp://bots.example", "http"),
    "HQ_DEPLOY_COMMAND": ("rm -rf /", "deploy_command"),
    "DATABASE_URL": ("not a database url", "DATABASE_URL"),
}


@pytest.mark.parametrize("variable", sorted(BAD_SETTINGS))
def test_bad_settings_stop_every_command(variable: str, company: dict[str, int], raw: psycopg.Connection,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    value, fragment = BAD_SETTINGS[variable]
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
    "AGENTS.md without front matter": (lambda t, m: _roles(t, m, "qa-engineer", "# QA\n\nNo front matter.\n"),
                                       "qa-engineer"),
    "AGENTS.md with broken YAML": (lambda t, m: _roles(t, m, "qa-engineer", "---\nslug: [qa\n---\nbody\n"),
                                   "qa-engineer"),
    "AGENTS.md that is binary": (lambda t, m: _roles(t, m, "qa-engineer", bytes(range(256))), "qa-engineer"),
    "AGENTS.md that is empty": (lambda t, m: _roles(t, m, "qa-engineer", ""), "qa-engineer"),
    "AGENTS.md heartbeat not a duration": (
        lambda t, m: _edit_role(t, m, "qa-engineer", "heartbeat: 15m", "heartbeat: often"), "heartbeat"),
    "AGENTS.md chain of command cycle": (
        lambda t, m: _edit_role(t, m, "vp-product", "reports_to: ceo", "reports_to: researcher"), "cycle"),
    "playbook with broken YAML": (lambda t, m: _playbook(t, m, "broken.yaml", "name: [broken\n"), "broken.yaml"),
    "playbook naming an unknown role": (lambda t, m: _playbook(t, m, "ghost.yaml", (
        "name: ghost\ndescription: A playbook for a role that does not exist.\nclassification_keywords: [ghost]\n"
        "modules:\n  - id: haunt\n    title: Haunt\n    role: ghost-writer\n    output: Something.\n"
        "  - id: report\n    title: Report\n    role: editor\n    depends_on: [haunt]\n    output: A report.\n"
        "quality_checklist:\n  - It is spooky.\n")),
        "ghost-writer"),
    "models file with broken YAML": (lambda t, m: _models(t, m, "tiers: [\n"), "models"),
    "models file with an unknown tier": (lambda t, m: _models(t, m, VALID_MODELS.replace("  utility:", "  trivia:")),
                                         "trivia"),
    "models file with a negative price": (lambda t, m: _models(t, m, VALID_MODELS.replace(
        "api_key_env: ANTHROPIC_API_KEY\n", "api_key_env: ANTHROPIC_API_KEY\n      input_usd_per_mtok: -3\n", 1)),
        "input_usd_per_mtok"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_files_are_named_and_nothing_is_synced(case: str, company: dict[str, int], raw: psycopg.Connection,
                                                   tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
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
def test_hostile_text_is_stored_verbatim_and_shown_safely(case: str, company: dict[str, int],
                                                          raw: psycopg.Connection) -> None:
    title, body = STORED[case]
    created = run_hq("issue", "create", title, "--body", body)
    assert created.exit_code == 0, created.stderr
    issue = int(created.stdout)
    assert raw.execute("SELECT title, body FROM issues WHERE id = %s", (issue,)).fetchone() == (title, body)
    assert raw.execute("SELECT to_regclass('issues') IS NOT NULL").fetchone() == (True,)
    for args in (["issue", "show", str(issue)], ["issues"]):
        shown = run_hq(*args)
        assert shown.exit_code == 0, shown.stderr
        hidden = [ch for ch in shown.stdout if ord(ch) < 0x20 and ch not in "\n" or 0x7F <= ord(ch) <= 0x9F
                  or ch in "\u202e\u202c\u200b\u2066\u2069"]
        assert hidden == [], (case, hidden)
    shown = run_hq("issue", "show", str(issue)).stdout
    if "markup" in case:
        assert "[bold red]boom[/bold red]" in shown  # printed, not interpreted
    as_json = json.loads(run_hq("issue", "show", str(issue), "--json").stdout)
    assert (as_json["issue"]["title"], as_json["issue"]["body"]) == (title, body)  # JSON carries the exact text, escaped
