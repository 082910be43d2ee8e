"""`hq demo` says which database it uses: the embedded server, or DATABASE_URL without its password.

It used to say "embedded PostgreSQL" whatever DATABASE_URL said (and seed its issues there).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cli.demo_cmd import banner, display_url
from config.settings import Settings

PASSWORD = "Sup3r-s3cret-pw"


def settings_with(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, url: str | None) -> Settings:
    from config.settings import load_settings

    if url is None:
        monkeypatch.delenv("DATABASE_URL", raising=False)
    else:
        monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("HQ_DATA_DIR", str(tmp_path / "var"))
    return load_settings()


def test_without_database_url_it_names_the_embedded_server_and_where(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    line = banner(settings_with(monkeypatch, tmp_path, None), offline=True)
    assert f"embedded PostgreSQL under {(tmp_path / 'var' / 'pgdata').resolve()}" in line
    assert "DATABASE_URL" not in line and "offline model" in line


def test_with_database_url_it_names_that_database_and_never_the_password(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    url = f"postgresql+psycopg://hq_app:{PASSWORD}@db.example.com:6432/hq_prod?sslmode=require"
    line = banner(settings_with(monkeypatch, tmp_path, url), offline=True)
    assert "embedded" not in line
    assert "DATABASE_URL" in line and "postgresql://hq_app@db.example.com:6432/hq_prod?sslmode=require" in line
    assert PASSWORD not in line and "Sup3r" not in line


def test_online_models_are_not_called_offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    line = banner(settings_with(monkeypatch, tmp_path, None), offline=False)
    assert "offline model" not in line and "online models" in line


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"postgresql://u:{PASSWORD}@h:5432/d", "postgresql://u@h:5432/d"),
        (f"postgresql://u@h/d?password={PASSWORD}&sslmode=require", "postgresql://u@h/d?sslmode=require"),
        (
            "postgresql+psycopg://postgres@/hq?host=/tmp/sock&port=5433",
            "postgresql://postgres@/hq?host=/tmp/sock&port=5433",
        ),
        (f"postgres://u:{PASSWORD}@[::1]:5432/d", "postgresql://u@[::1]:5432/d"),
    ],
)
def test_display_url_drops_every_password(url: str, shown: str) -> None:
    assert display_url(url) == shown
    assert PASSWORD not in display_url(url)


# --- the ticker tells the story; logs go to the demo's log ---------------------------------------------------
SKIPPED = (
    '{"event": "Execution of job \\"heartbeat backend-engineer (trigger: interval[0:00:01])\\" skipped: maximum '
    'number of running instances reached (1)", "logger": "apscheduler.scheduler", "level": "warning"}'
)
BUDGET_REFUSED = (
    '{"scope": "issue", "tier": "execution", "issue_id": 5, "event": "llm.budget_refused", "level": "warning"}'
)
BLOCKED_FOR_BUDGET = (
    '{"action": "block_for_budget", "error": "budget exhausted: issue 5", "issue_id": 5, "event": "model.failure", '
    '"level": "warning"}'
)
COMPANY_REFUSED = '{"scope": "company", "tier": "execution", "event": "llm.budget_refused", "level": "warning"}'
LISTEN_FAILED = (
    '{"error": "permission denied\\u001b[2J", "event": "listen.failed", "logger": "scheduler.listener", '
    '"level": "error", "timestamp": "2026-01-01T00:00:00Z"}'
)


def test_the_ticker_leaves_out_what_the_story_already_tells() -> None:
    from cli.demo_cmd import ticker_line

    for line in (SKIPPED, BUDGET_REFUSED, BLOCKED_FOR_BUDGET, '{"event": "claim.taken", "level": "info"}', ""):
        assert ticker_line(line) is None, line


def test_a_warning_a_person_must_see_is_one_line_of_text() -> None:
    from cli.demo_cmd import ticker_line

    shown = ticker_line(LISTEN_FAILED)
    assert shown == "hq: error: listen.failed (scheduler.listener) error=permission denied\\x1b[2J"
    company = ticker_line(COMPANY_REFUSED)  # the company's month running out is not part of the story
    assert company is not None and company.startswith("hq: warning: llm.budget_refused") and "scope=company" in company
    traceback = '{"event": "notify.crashed", "level": "error", "exception": "Traceback:\\n  File x\\nKeyError: 1"}'
    assert ticker_line(traceback) == "hq: error: notify.crashed exception=KeyError: 1"
    assert ticker_line("not json\x07") == "hq: log: not json\\x07"


def test_the_demo_log_keeps_every_line_and_shows_only_the_ticker_lines(tmp_path: Path) -> None:
    import threading

    from cli.demo_cmd import DemoLog

    shown: list[str] = []
    path = tmp_path / "demo.log"
    with open(path, "w", encoding="utf-8") as file:
        log = DemoLog(file, shown.append)

        def write(lines: list[str]) -> None:
            for line in lines:  # as print() does: the text, then its newline
                log.write(line)
                log.write("\n")

        threads = [threading.Thread(target=write, args=([line] * 50,)) for line in (SKIPPED, LISTEN_FAILED)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        log.write(BUDGET_REFUSED + "\n" + COMPANY_REFUSED + "\n")
        log.flush()
    lines = path.read_text().splitlines()
    assert sorted(set(lines)) == sorted({SKIPPED, LISTEN_FAILED, BUDGET_REFUSED, COMPANY_REFUSED})
    assert len(lines) == 102 and not log.isatty()
    assert len(shown) == 51 and not any(line.startswith("{") for line in shown)


def test_every_command_the_demo_shows_runs_the_same_hq(tmp_path: Path) -> None:
    from cli.demo_cmd import explore_hint, hq_invocation

    bin_dir = tmp_path / "checkout" / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    python = bin_dir / "python"
    assert hq_invocation(python, tmp_path / "checkout") == [str(python), "-m", "cli.app"]  # no hq script beside it
    (bin_dir / "hq").touch()
    assert hq_invocation(python, tmp_path / "checkout") == [".venv/bin/hq"]  # `make demo` from the checkout
    assert hq_invocation(python, tmp_path / "elsewhere") == [str(bin_dir / "hq")]
    assert hq_invocation(python, bin_dir) == ["./hq"]  # never a bare `hq`, looked up on PATH
    hint = explore_hint([".venv/bin/hq"], tmp_path / "var" / "logs" / "demo.log")
    commands = hint.splitlines()[0].removeprefix("Explore: ").split(" · ")
    assert len(commands) >= 5 and all(command.startswith(".venv/bin/hq ") for command in commands), hint
    assert hint.splitlines()[1] == f"The demo's log: {tmp_path / 'var' / 'logs' / 'demo.log'}"
