"""Secrets never reach output or logs: the redactor masks registered values and key shapes, and log lines are
JSON with every secret masked.
"""

from __future__ import annotations

import io
import json

from config.log import configure_logging, get_logger
from config.secrets import MASK, Redactor, register_secrets
from tests.support.secrets import ANTHROPIC_CANARY, TELEGRAM_CANARY


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
