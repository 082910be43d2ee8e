"""Settings fail fast with every problem listed; secrets never reach output or logs."""

from __future__ import annotations

import io
import json
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from config.errors import ConfigError
from config.log import configure_logging, get_logger
from config.secrets import MASK, Redactor, register_secrets
from config.settings import (
    COMMAND_PLACEHOLDERS,
    MAX_BUDGET_USD,
    MAX_ID,
    MAX_PG_TIMEOUT_MS,
    MIN_AMOUNT_USD,
    load_settings,
)
from tests.conftest import run_hq, run_hq_process

ANTHROPIC_CANARY = "sk-ant-api03-CANARYcanaryCANARYcanary0123456789"
TELEGRAM_CANARY = "987654321:AAcanaryCANARYcanaryCANARYcanary12345"


def test_bad_database_url_exits_2_and_names_the_variable() -> None:
    result = run_hq_process("issues", env={"DATABASE_URL": "not-a-url"})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "hq: error: invalid settings: DATABASE_URL: must be a postgresql:// URL"
    ]
    assert "Traceback" not in result.stderr


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


def test_config_check_masks_every_secret(db_url: str) -> None:
    password_url = db_url.replace("postgres@", "postgres:Sup3rSecretPw@")
    result = run_hq_process(
        "config",
        "check",
        env={
            "ANTHROPIC_API_KEY": ANTHROPIC_CANARY,
            "TELEGRAM_BOT_TOKEN": TELEGRAM_CANARY,
            "DATABASE_URL": password_url,
            "TELEGRAM_CHAT_ID": "-100123",
        },
    )
    assert result.returncode == 0, result.stderr
    everything = result.stdout + result.stderr
    for secret in (ANTHROPIC_CANARY, TELEGRAM_CANARY, "Sup3rSecretPw", "CANARYcanary"):
        assert secret not in everything
    assert "anthropic_api_key" in result.stdout and "settings: ok" in result.stdout


def test_redactor_masks_registered_values_and_key_shapes() -> None:
    redactor = Redactor()
    redactor.register("my-own-secret-value", None, "short")
    text = (
        f"value my-own-secret-value, key {ANTHROPIC_CANARY}, bot {TELEGRAM_CANARY}, "
        "openai sk-proj-abcdefghijklmnopqrstuvwxyz012345, url postgresql://u:pw123456@h/db, short"
    )
    redacted = redactor.redact(text)
    for leaked in ("my-own-secret-value", ANTHROPIC_CANARY, TELEGRAM_CANARY, "sk-proj-abcdef", "pw123456"):
        assert leaked not in redacted
    assert redacted.count(MASK) >= 5
    assert redacted.endswith("short")  # too short to be treated as a secret
    nested = redactor.redact_obj({"args": ["my-own-secret-value"], "api_key": "anything", "n": 3})
    assert nested == {"args": [MASK], "api_key": MASK, "n": 3}


def test_log_lines_are_json_and_redacted() -> None:
    stream = io.StringIO()
    register_secrets("canary-logged-secret-42")
    configure_logging("info", "json", stream=stream, force=True)
    get_logger("test").info("calling", token="canary-logged-secret-42", agent="qa-lead", issue_id=7)
    line = json.loads(stream.getvalue().strip().splitlines()[-1])
    assert line["token"] == MASK and line["agent"] == "qa-lead" and line["issue_id"] == 7
    assert "canary-logged-secret-42" not in stream.getvalue()
    configure_logging("info", "json", force=True)


def test_config_check_in_process_lists_effective_settings(db_url: str) -> None:
    result = run_hq("config", "check")
    assert result.exit_code == 0, result.stderr
    assert "database_url = (set, hidden)" in result.stdout


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


def test_the_bounds_are_exactly_what_postgres_accepts(raw: psycopg.Connection) -> None:
    raw.execute(f"SET statement_timeout = {MAX_PG_TIMEOUT_MS}")
    raw.execute(f"SET idle_in_transaction_session_timeout = {MAX_PG_TIMEOUT_MS}")
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        raw.execute(f"SET statement_timeout = {MAX_PG_TIMEOUT_MS + 1}")
    assert raw.execute("SELECT %s::bigint", (MAX_ID,)).fetchone() == (MAX_ID,)
    with pytest.raises(psycopg.errors.NumericValueOutOfRange):
        raw.execute("SELECT %s::numeric::bigint", (MAX_ID + 1,))
    top = Decimal("99999999.9999")
    assert load_settings(company_monthly_budget_usd=str(top)).company_monthly_budget_usd == top
    assert raw.execute("SELECT %s::numeric(12, 4), %s::numeric(12, 4)", (top, MAX_BUDGET_USD)).fetchone() == (
        top,
        MAX_BUDGET_USD,
    )
    with pytest.raises(ConfigError, match="HQ_COMPANY_MONTHLY_BUDGET_USD"):
        load_settings(company_monthly_budget_usd=str(top + Decimal("0.0001")))


def test_largest_timeouts_still_connect(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HQ_STATEMENT_TIMEOUT_MS", str(MAX_PG_TIMEOUT_MS))
    monkeypatch.setenv("HQ_IDLE_IN_TRANSACTION_TIMEOUT_MS", str(MAX_PG_TIMEOUT_MS))
    result = run_hq("issues")
    assert result.exit_code == 0, result.stderr


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


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://hq:pw@localhost:notaport/hq",
        "postgresql://hq@localhost:0/hq",
        "postgresql://hq@host:65536/hq",
        "postgresql://hq@host:5432/hq?port=x",
        "postgresql://hq@h1:5432,h2:5433/hq",
    ],
)
def test_database_url_with_a_bad_port_is_a_usage_error(url: str) -> None:
    result = run_hq_process("config", "check", env={"DATABASE_URL": url})
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hq: error: invalid settings: DATABASE_URL: "), lines
    assert "port" in lines[0] and "pw@" not in lines[0] and "Traceback" not in result.stderr


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


def test_data_dir_problem_is_rc_2_in_a_real_process() -> None:
    result = run_hq_process("issues", env={"HQ_DATA_DIR": "/proc/nope"})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "hq: error: invalid settings: HQ_DATA_DIR: cannot create /proc/nope: No such file or directory"
    ]


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


def test_config_check_says_who_may_decide_from_telegram(monkeypatch: pytest.MonkeyPatch) -> None:
    from cli.config_cmd import telegram_line

    assert telegram_line(load_settings()).startswith("telegram: off")
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", TELEGRAM_CANARY)
    monkeypatch.setenv("TELEGRAM_CHAT_ID", "4242")
    assert "no buttons or decisions (HQ_TELEGRAM_APPROVERS is empty)" in telegram_line(load_settings())
    monkeypatch.setenv("HQ_TELEGRAM_APPROVERS", "1,2")
    line = telegram_line(load_settings())
    assert "2 approver(s) may decide" in line and "derived from the bot token" in line and "long polling" in line
    assert TELEGRAM_CANARY not in line
