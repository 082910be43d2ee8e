"""Telegram goes away while the company works — first answering 502, then refusing connections,
then a burst of 500s once it is back — and every notification still arrives exactly once.

No process dies here, so the one documented duplicate (a row in flight when its sender is
killed, tests/integration/channels/test_notify.py) cannot happen: the count must be exact.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path

import psycopg
import pytest

from channels.messages import render, split
from tests.fakes.telegram_server import Failure, FakeTelegram
from tests.support.cli import run_hq
from tests.support.processes import EXECUTORS, settling, start, stop, wait_for_progress
from tests.support.rows import one

TOKEN = "123456789:AAoutageTOKENoutageTOKENoutageTOK"
CHAT = "4242"
# Every change to the outbox: rows not sent, rows, attempts made, the last send. After the outage the head
# row backs off 5 s, doubling, between attempts (tens of seconds with nothing to see), so the wait for
# delivery allows a longer stall than a wait for work.
OUTBOX = """SELECT count(*) FILTER (WHERE status <> 'sent'), count(*), coalesce(sum(attempts), 0), max(sent_at)
              FROM notifications"""
DELIVERY_STALL_SECONDS = 120

# A backstop against a hang only: the waits below fail on a stall, however long steady progress takes.
pytestmark = pytest.mark.timeout(3600)


def expected_messages(raw: psycopg.Connection) -> Counter[str]:
    """What Telegram should hold: every outbox row, rendered and split, once."""
    return Counter(
        part
        for event, payload in raw.execute("SELECT event, payload FROM notifications")
        for part in split(render(event, payload))
    )


def test_outage_then_recovery_delivers_every_notification_once(
    db_url: str, raw: psycopg.Connection, tmp_path: Path
) -> None:
    telegram = FakeTelegram(TOKEN).start()
    env = {"TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_CHAT_ID": CHAT, "TELEGRAM_API_BASE": telegram.url}
    os.environ.update(env)  # for the in-process CLI too (removed below)
    try:
        assert run_hq("agents", "sync").exit_code == 0
        for index in range(20):
            assert (
                run_hq(
                    "issue", "create", f"Outage task {index}", "--assign", EXECUTORS[index % len(EXECUTORS)]
                ).exit_code
                == 0
            )
        telegram.outage(8)  # 502 Bad Gateway for every request
        worker = start(tmp_path, "worker", **env)
        try:
            time.sleep(8)
            telegram.down()  # then nothing listens at all
            time.sleep(5)
            assert raw.execute("SELECT count(*) FROM notifications WHERE status = 'sent'").fetchone() == (0,)
            telegram.fail(*[Failure(500, "Internal Server Error")] * 6)  # back, but shaky
            telegram.up()
            settled = wait_for_progress(lambda: settling(raw), lambda value: value[0] == 0, step=1)
            assert settled, str(settled)
            delivered = wait_for_progress(
                lambda: one(raw.execute(OUTBOX).fetchone()), lambda value: value[0] == 0, DELIVERY_STALL_SECONDS, step=1
            )
            assert delivered, (
                str(delivered),
                raw.execute("SELECT status, count(*), max(attempts) FROM notifications GROUP BY 1").fetchall(),
            )
        finally:
            stop(worker)
    finally:
        telegram.stop()
        for name in env:
            os.environ.pop(name, None)
    received = Counter(message["text"] for message in telegram.messages)
    assert received == expected_messages(raw)
    assert raw.execute("SELECT count(*) FROM notifications WHERE event = 'done'").fetchone() == (20,)
    assert one(raw.execute("SELECT count(*) FROM notifications WHERE last_error IS NOT NULL").fetchone())[0] == 0
