"""A full `hq demo` run with canary secrets set — the bot token, a provider key pasted into an
issue by a person, the database password — and debug logging on: none of them appears in any
log line, any row of any table, or any file the run wrote.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import psycopg

from tests.fakes.telegram_server import FakeTelegram
from tests.support.cli import BIN, run_hq
from tests.support.rows import one

BOT_CANARY = "555555555:AAcanaryBOTcanaryBOTcanaryBOTcanary99"
KEY_CANARY = "sk-ant-api03-canaryKEYcanaryKEYcanaryKEY0000"  # pasted by a person into an issue body
DB_CANARY = "canaryDBpassword77"
FRAGMENTS = (BOT_CANARY, KEY_CANARY, DB_CANARY, "canaryBOTcanary", "canaryKEYcanary")


def everything_written(raw: psycopg.Connection, data_dir: Path, logs: str) -> str:
    tables = [r[0] for r in raw.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
    # Every column of every row, except the issue body the person typed (checked on its own below).
    rows = [
        str(
            one(
                raw.execute(
                    f"SELECT json_agg(to_jsonb(t) - %s)::text FROM {table} t", ("body" if table == "issues" else "",)
                ).fetchone()
            )[0]
        )
        for table in tables
    ]
    files = [
        path.read_text(errors="replace") for path in data_dir.rglob("*") if path.is_file() and ".git" not in path.parts
    ]
    return "\n".join([logs, *rows, *files])


def test_canaries_never_leak_from_a_full_demo(db_url: str, raw: psycopg.Connection) -> None:
    telegram = FakeTelegram(BOT_CANARY).start()
    try:
        assert run_hq("agents", "sync").exit_code == 0
        pasted = run_hq(
            "issue",
            "create",
            "Add a rate limit to the public API",
            "--assign",
            "backend-engineer",
            "--body",
            f"Use the key {KEY_CANARY} if you need the API.",
        )
        assert pasted.exit_code == 0
        env = {
            **os.environ,
            "TELEGRAM_BOT_TOKEN": BOT_CANARY,
            "TELEGRAM_CHAT_ID": "42",
            "TELEGRAM_API_BASE": telegram.url,
            "HQ_LOG_LEVEL": "debug",
            "HQ_LOG_FORMAT": "json",
            # trust auth ignores the password, but it is still a secret the process holds
            "DATABASE_URL": db_url.replace("postgres@", f"postgres:{DB_CANARY}@"),
        }
        demo = subprocess.run(
            [str(BIN / "hq"), "demo", "--timeout", "100"], env=env, capture_output=True, text=True, timeout=180
        )
        assert demo.returncode == 0, demo.stdout[-2000:] + demo.stderr[-2000:]
        assert telegram.messages, "notifications were delivered through the fake Bot API"
    finally:
        telegram.stop()
    # The demo's story on its output, its logs in the data dir (cli/demo_cmd.py): both are searched.
    logs = demo.stdout + demo.stderr + (Path(os.environ["HQ_DATA_DIR"]) / "logs" / "demo.log").read_text()
    assert '"level": "debug"' in logs  # the logs were as verbose as they get
    assert raw.execute("SELECT status FROM issues WHERE id = %s", (int(pasted.stdout),)).fetchone() == ("done",)
    blob = everything_written(raw, Path(os.environ["HQ_DATA_DIR"]), logs) + "\n".join(
        m["text"] for m in telegram.messages
    )
    assert one(raw.execute("SELECT count(*) FROM artifacts").fetchone())[0] > 0
    for canary in FRAGMENTS:
        assert canary not in blob, canary
    # The one place the pasted key is kept is the issue body the person typed; prompts never carried it.
    assert raw.execute("SELECT count(*) FROM issues WHERE body LIKE %s", (f"%{KEY_CANARY}%",)).fetchone() == (1,)
