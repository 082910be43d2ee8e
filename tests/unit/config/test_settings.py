"""Settings fail fast with every problem listed, and never echo a password or a secret."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from config.errors import ConfigError
from config.settings import (
    COMMAND_PLACEHOLDERS,
    MAX_BUDGET_USD,
    MIN_AMOUNT_USD,
    load_settings,
)


def test_every_problem_is_listed_in_one_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "mysql://x")
    monkeypatch.setenv("HQ_MAX_ATTEMPTS", "0")
    monkeypatch.setenv("HQ_LOG_LEVEL", "loud")
    monkeypatch.setenv("TELEGRAM_CHAT_ID", "not a chat")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = caught.value.message
    assert "\n" not in message
    for name in ("DATABASE_URL", "HQ_MAX_ATTEMPTS", "HQ_LOG_LEVEL", "TELEGRAM_CHAT_ID"):
        assert name in message
    assert caught.value.exit_code == 2


def test_database_url_password_is_never_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "mysql://user:hunter2secret@host/db")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "hunter2secret" not in caught.value.message


# --- values that used to validate and then fail later (issue 11, item 14) -------------------------


def test_every_late_failure_is_caught_at_start_and_listed_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    bad = {
        "HQ_COMPANY_MONTHLY_BUDGET_USD": "inf",
        "HQ_DEFAULT_ISSUE_BUDGET_USD": "1e20",
        "HQ_STATEMENT_TIMEOUT_MS": "99999999999",
        "HQ_DEPLOY_COMMAND": '["cp", "-r", "{workspace}", "${HOME}/site"]',
        "HQ_VERIFY_COMMAND": "[]",
        "DATABASE_URL": "postgresql://hq:hunter2secret@localhost:notaport/hq",
        "HQ_DATA_DIR": "/proc/nope",
    }
    for name, value in bad.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = caught.value.message
    assert "\n" not in message and caught.value.exit_code == 2
    for name in bad:
        assert name in message, (name, message)
    assert "{HOME}" in message and "omit HQ_VERIFY_COMMAND" in message and "port" in message
    assert "hunter2secret" not in message


def test_the_issue_budget_bound_is_the_one_the_cli_enforces(monkeypatch: pytest.MonkeyPatch) -> None:
    from cli.arguments import parse_usd

    top, over = str(MAX_BUDGET_USD), str(MAX_BUDGET_USD + Decimal("0.01"))
    assert parse_usd(top) == MAX_BUDGET_USD and parse_usd(str(MIN_AMOUNT_USD)) == MIN_AMOUNT_USD
    assert load_settings(default_issue_budget_usd=top).default_issue_budget_usd == MAX_BUDGET_USD
    for value in (over, "0.009", "99999999"):
        with pytest.raises(ValueError):
            parse_usd(value)
        monkeypatch.setenv("HQ_DEFAULT_ISSUE_BUDGET_USD", value)
        with pytest.raises(ConfigError, match="HQ_DEFAULT_ISSUE_BUDGET_USD"):
            load_settings()


@pytest.mark.parametrize(
    "template",
    [
        ["deploy.sh", "{issue_id}", "--to={published}", "{{literal braces}}", "$HOME/site"],
        ["rsync", "-a", "{workspace}/", "{published}"],
    ],
)
def test_valid_command_templates_are_accepted_and_format(template: list[str]) -> None:
    settings = load_settings(deploy_command=template, verify_command=template)
    values = dict.fromkeys(COMMAND_PLACEHOLDERS, "x")
    assert [part.format(**values) for part in settings.deploy_command or []]  # exactly what deploy will do


@pytest.mark.parametrize(
    ("template", "fragment"),
    [
        ([], "omit HQ_DEPLOY_COMMAND"),
        (["", "{issue_id}"], "program"),
        (["echo", "${HOME}"], "unknown placeholder {HOME}"),
        (["echo", "{0}"], "positional"),
        (["echo", "{}"], "positional"),
        (["echo", "{issue_id"], "not a valid template"),
        (["echo", "issue_id}"], "not a valid template"),
        (["echo", "{workspace[0]}"], "unknown placeholder"),
        (["echo", "{issue_id!r}"], "no format spec"),
        (["echo", "{issue_id:{HOME}}"], "no format spec"),
        (["echo", "a\x00b"], "NUL"),
    ],
)
def test_command_templates_that_would_fail_at_deploy_are_refused(template: list[str], fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(deploy_command=template)
    assert "HQ_DEPLOY_COMMAND" in caught.value.message and fragment in caught.value.message, caught.value.message


def test_good_database_urls_still_pass() -> None:
    for url in (
        "postgresql://hq:p%40ss@db.example:5432/hq",
        "postgres://hq@[::1]:5433/hq",
        "postgresql+psycopg://postgres@/hq?host=/tmp/sock&port=5432",
        "postgresql://hq@/hq?port=5432,5433",
    ):
        assert load_settings(database_url=url).database_url is not None


def test_data_dir_is_checked_without_leaving_anything_behind(tmp_path: Path) -> None:
    assert load_settings(data_dir=tmp_path / "new" / "var").data_path == (tmp_path / "new" / "var").resolve()
    assert list(tmp_path.iterdir()) == []  # the probe directory is gone and nothing was created
    (tmp_path / "file").write_text("x")
    for bad in (tmp_path / "file", tmp_path / "file" / "var", Path("/proc/nope")):
        with pytest.raises(ConfigError, match="HQ_DATA_DIR"):
            load_settings(data_dir=bad)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("HQ_TELEGRAM_APPROVERS", "12,alice", "HQ_TELEGRAM_APPROVERS: not Telegram user ids: alice"),
        ("HQ_TELEGRAM_APPROVERS", "-5", "not Telegram user ids: -5"),
        ("HQ_TELEGRAM_CALLBACK_SECRET", "short", "HQ_TELEGRAM_CALLBACK_SECRET"),
        ("HQ_TELEGRAM_WEBHOOK_URL", "http://hq.example/telegram", "must be an https:// URL"),
        ("HQ_TELEGRAM_LEASE_SECONDS", "20", "must exceed HQ_TELEGRAM_POLL_SECONDS by at least 10"),
        ("HQ_TELEGRAM_POLL_SECONDS", "0", "HQ_TELEGRAM_POLL_SECONDS"),
    ],
)
def test_telegram_decision_settings_are_checked_at_start(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, fragment: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert fragment in caught.value.message and "\n" not in caught.value.message
    assert value not in caught.value.message or name != "HQ_TELEGRAM_CALLBACK_SECRET"  # a secret is not echoed


def test_telegram_approvers_are_comma_separated_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HQ_TELEGRAM_APPROVERS", " 12, 34 ,12,")
    assert load_settings().telegram_approvers == (12, 34)
