"""Settings fail fast with every problem listed; secrets never reach output or logs."""

from __future__ import annotations

import io
import json

import pytest

from config.log import configure_logging, get_logger
from config.secrets import MASK, Redactor, register_secrets
from config.settings import load_settings
from config.errors import ConfigError
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
    result = run_hq_process("config", "check", env={
        "ANTHROPIC_API_KEY": ANTHROPIC_CANARY, "TELEGRAM_BOT_TOKEN": TELEGRAM_CANARY,
        "DATABASE_URL": password_url, "TELEGRAM_CHAT_ID": "-100123",
    })
    assert result.returncode == 0, result.stderr
    everything = result.stdout + result.stderr
    for secret in (ANTHROPIC_CANARY, TELEGRAM_CANARY, "Sup3rSecretPw", "CANARYcanary"):
        assert secret not in everything
    assert "anthropic_api_key" in result.stdout and "settings: ok" in result.stdout


def test_redactor_masks_registered_values_and_key_shapes() -> None:
    redactor = Redactor()
    redactor.register("my-own-secret-value", None, "short")
    text = (f"value my-own-secret-value, key {ANTHROPIC_CANARY}, bot {TELEGRAM_CANARY}, "
            "openai sk-proj-abcdefghijklmnopqrstuvwxyz012345, url postgresql://u:pw123456@h/db, short")
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
