"""`hq config check` says who may decide from Telegram, and never shows the bot token."""

from __future__ import annotations

from pathlib import Path

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


def test_config_show_and_db_status_say_where_the_data_dir_is_and_why_creating_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from tests.support import ROOT
    from tests.support.cli import run_hq

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("HQ_DATA_DIR", "company")  # relative: taken from the current directory
    data = tmp_path / "company"
    shown = run_hq("config", "show")
    assert shown.exit_code == 0, shown.stderr
    assert f"data_dir = {data} (set by HQ_DATA_DIR)" in shown.stdout and f"embedded in {data}" in shown.stdout
    status = run_hq("db", "status")
    assert status.exit_code == 0, status.stderr
    assert status.stdout.splitlines() == [
        f"embedded PostgreSQL in {data / 'pgdata'}: not created yet (the first command that needs it starts it)",
        f"data dir: {data} (set by HQ_DATA_DIR)",
    ]
    stopped = run_hq("db", "stop")
    assert stopped.stdout.splitlines()[0] == f"not running: the embedded PostgreSQL in {data / 'pgdata'}"
    assert not data.exists() and shown.stderr == status.stderr == stopped.stderr == ""  # nothing created or said
    monkeypatch.delenv("HQ_DATA_DIR")
    found = run_hq("config", "show").stdout
    assert f"data_dir = {(ROOT / 'var').resolve()} (the var/ of the checkout hq runs from, {ROOT};" in found
