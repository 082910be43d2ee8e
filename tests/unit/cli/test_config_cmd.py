"""`hq config check` says who may decide from Telegram, and never shows the bot token."""

from __future__ import annotations

import pytest

from config.settings import (
    load_settings,
)
from tests.support.secrets import TELEGRAM_CANARY


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
