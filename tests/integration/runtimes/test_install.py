"""The claude-code runtime's configuration: validated with the roster, reported by `hq config check`, required
at `hq run`'s start; and the CLI's result read from its output however much else the output holds.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.roster import load_roster
from config.errors import ConfigError
from config.settings import load_settings
from runtimes.install import runtime_line, runtime_problems
from scheduler.company import Company
from tests.fakes.anthropic_server import FakeAnthropic
from tests.support.claude_code import PROVIDER_KEY, coding_roles
from tests.support.cli import run_hq
from tests.support.models import write_models


def test_config_check_names_the_roles_and_the_cli(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HQ_ROLES_DIR", str(coding_roles(tmp_path, "backend-engineer")))
    monkeypatch.setenv("HQ_CLAUDE_BIN", str(tmp_path / "no-such-claude"))
    result = run_hq("config", "check")
    assert "coding agents: 1 role(s) on claude-code (backend-engineer); Claude Code not installed" in result.stdout
    assert result.exit_code == 0, result.stderr  # offline: the role works with HQ's own loop meanwhile
    settings = load_settings()
    assert runtime_problems(settings, load_roster(settings.roles_path)) == [
        f"runtime claude-code (backend-engineer): HQ_CLAUDE_BIN={tmp_path / 'no-such-claude'} is not found; "
        "run `make claude-code` or set HQ_CLAUDE_BIN"
    ]
    monkeypatch.setenv("HQ_SANDBOX", "none")
    settings = load_settings()
    assert runtime_problems(settings, load_roster(settings.roles_path))[1].endswith("set HQ_SANDBOX=bwrap")
    monkeypatch.delenv("HQ_ROLES_DIR")
    assert runtime_line(load_settings(), load_roster(load_settings().roles_path)).startswith("coding agents: none")


def test_run_refuses_to_start_when_a_coding_role_cannot_run(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeAnthropic().start()
    try:
        monkeypatch.setenv("HQ_ROLES_DIR", str(coding_roles(tmp_path, "backend-engineer")))
        monkeypatch.setenv("HQ_CLAUDE_BIN", str(tmp_path / "no-such-claude"))
        monkeypatch.setenv("ANTHROPIC_API_KEY", PROVIDER_KEY)
        tiers = {tier: ["anthropic/claude-sonnet-4-6"] for tier in ("reasoning", "execution", "utility")}
        monkeypatch.setenv("HQ_MODELS_FILE", str(write_models(tmp_path / "m.yaml", fake, tiers, price=(3, 15))))
        company = Company(load_settings(), threads=1)
        with pytest.raises(ConfigError, match=r"runtime claude-code \(backend-engineer\): HQ_CLAUDE_BIN="):
            company.start()
        assert company.scheduler is None  # refused before anything started
    finally:
        fake.stop()
