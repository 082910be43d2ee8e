"""A canary secret in the settings (and one pasted into an issue) never shows up anywhere a run writes."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import psycopg

from tests.conftest import BIN, run_hq
from tests.fakes.telegram_server import FakeTelegram

BOT_CANARY = "555555555:AAcanaryBOTcanaryBOTcanaryBOTcanary99"
KEY_CANARY = "sk-ant-api03-canaryKEYcanaryKEYcanaryKEY0000"  # pasted by a person into an issue body
DB_CANARY = "canaryDBpassword77"
TABLES = ("llm_calls", "tool_calls", "comments", "artifacts", "notifications", "issue_events", "heartbeat_runs",
          "approvals")


def test_canaries_never_leak(db_url: str, raw: psycopg.Connection, tmp_path: Path) -> None:
    telegram = FakeTelegram(BOT_CANARY).start()
    try:
        env = {**os.environ, "TELEGRAM_BOT_TOKEN": BOT_CANARY, "TELEGRAM_CHAT_ID": "42",
               "TELEGRAM_API_BASE": telegram.url, "HQ_LOG_LEVEL": "debug", "HQ_LOG_FORMAT": "json",
               "HQ_HEARTBEAT_SCALE": str(1 / 900),
               # trust auth ignores the password, but it is still a secret the process holds
               "DATABASE_URL": db_url.replace("postgres@", f"postgres:{DB_CANARY}@")}
        assert run_hq("agents", "sync").exit_code == 0
        for title in ("Add a health endpoint to the API", "Write the launch blog post [offline:fail-review]",
                      "Renew the finance vendor invoice contract [offline:block] [offline:escalate]"):
            body = f"Use the key {KEY_CANARY} if you need the API."
            assert run_hq("issue", "create", title, "--body", body).exit_code == 0
        output = []
        for _ in range(6):
            result = subprocess.run([str(BIN / "hq"), "run", "--once"], env=env, capture_output=True, text=True,
                                    timeout=120)
            assert result.returncode == 0, result.stderr[-2000:]
            output.append(result.stdout + result.stderr)
        assert telegram.messages, "notifications were delivered through the fake Bot API"
    finally:
        telegram.stop()
    logs = "\n".join(output)
    assert '"level": "debug"' in logs  # the logs were as verbose as they get
    everything = [logs]
    for table in TABLES:
        everything.append(str(raw.execute(f"SELECT json_agg(t)::text FROM {table} t").fetchone()[0]))
    data_dir = Path(os.environ["HQ_DATA_DIR"])
    for path in data_dir.rglob("*"):
        if path.is_file() and ".git" not in path.parts:
            everything.append(path.read_text(errors="replace"))
    blob = "\n".join(everything)
    assert raw.execute("SELECT count(*) FROM artifacts").fetchone()[0] > 0
    for canary in (BOT_CANARY, KEY_CANARY, DB_CANARY, "canaryBOTcanary", "canaryKEYcanary"):
        assert canary not in blob, canary
    # The one place the pasted key is kept is the issue body a person typed; prompts never carried it.
    assert raw.execute("SELECT count(*) FROM issues WHERE body LIKE %s", (f"%{KEY_CANARY}%",)).fetchone() == (3,)
