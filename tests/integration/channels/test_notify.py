"""Telegram notifications through python-telegram-bot against a fake Bot API on 127.0.0.1."""

from __future__ import annotations

import os
import subprocess
import time
from collections import Counter
from collections.abc import Iterator

import psycopg
import pytest

from channels import notify
from config.settings import get_settings, load_settings
from db import outbox
from db.engine import get_engine, transaction
from tests.fakes.telegram_server import Failure, FakeTelegram
from tests.support.cli import BIN, run_hq
from tests.support.rows import one

TOKEN = "123456789:AAtestTOKENtestTOKENtestTOKENtest12"
CHAT = "4242"


@pytest.fixture()
def telegram(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeTelegram]:
    fake = FakeTelegram(TOKEN).start()
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", TOKEN)
    monkeypatch.setenv("TELEGRAM_CHAT_ID", CHAT)
    monkeypatch.setenv("TELEGRAM_API_BASE", fake.url)
    monkeypatch.setenv("HQ_NOTIFY_SEND_RETRIES", "2")
    yield fake
    fake.stop()


def enqueue(count: int, event: str = "done", **payload: object) -> list[str]:
    keys = []
    with transaction("test", engine=get_engine()) as session:
        for index in range(count):
            key = f"test:{event}:{index}:{time.monotonic_ns()}"
            outbox.enqueue(session, event, key, {"issue": {"id": index, "title": f"issue {index}"}, **payload})
            keys.append(key)
    return keys


def deliver() -> notify.NotifyReport:
    return notify.run(load_settings(), get_engine())


def statuses(raw: psycopg.Connection) -> dict[str, int]:
    return dict(raw.execute("SELECT status, count(*) FROM notifications GROUP BY 1").fetchall())


def test_normal_delivery_in_order_html_escaped(telegram: FakeTelegram, raw: psycopg.Connection) -> None:
    with transaction("test", engine=get_engine()) as session:
        outbox.enqueue(
            session,
            "pending_approval",
            "k1",
            {
                "issue": {"id": 7, "title": "Ship <b>it</b> & more"},
                "quality_score": "0.9",
                "deadline": "tomorrow",
                "commands": ["hq approve 7", "hq reject 7 --reason '...'"],
            },
        )
        outbox.enqueue(
            session,
            "done",
            "k2",
            {
                "issue": {"id": 8, "title": "second"},
                "cost": {"total_usd": "0.12", "calls": 3, "by_tier": {"execution": "0.12"}},
            },
        )
    report = deliver()
    assert len(report.sent) == 2
    first, second = telegram.messages
    assert first["chat_id"] == CHAT and first["parse_mode"] == "HTML"
    assert "Ship &lt;b&gt;it&lt;/b&gt; &amp; more" in first["text"]
    assert "<code>hq approve 7</code>" in first["text"]
    assert second["text"].startswith("<b>Done</b> #8 second")
    assert statuses(raw) == {"sent": 2}
    assert deliver().sent == []  # sent rows are never sent again
    assert len(telegram.messages) == 2


def test_rate_limit_retry_after_is_waited_out(telegram: FakeTelegram, raw: psycopg.Connection) -> None:
    enqueue(1)
    telegram.fail(Failure(429, "Too Many Requests: retry after 2", retry_after=2))
    started = time.monotonic()
    report = deliver()
    assert len(report.sent) == 1 and time.monotonic() - started >= 2.0
    assert len(telegram.messages) == 1


def test_burst_of_5xx_then_recovery_delivers_each_message_once(telegram: FakeTelegram, raw: psycopg.Connection) -> None:
    enqueue(5)
    telegram.fail(*[Failure(502, "Bad Gateway")] * 3)
    first = deliver()
    assert first.sent == [] and len(first.deferred) == 5  # the first row waits; nothing overtakes it
    raw.execute("UPDATE notifications SET next_attempt_at = now()")
    second = deliver()
    assert len(second.sent) == 5
    assert Counter(telegram.texts()) == Counter(
        {f"<b>Done</b> #{i} issue {i}\nCost $0 over 0 model calls.": 1 for i in range(5)}
    )
    assert [m["text"].split()[1] for m in telegram.messages] == ["#0", "#1", "#2", "#3", "#4"]


def test_blocked_bot_dead_letters_with_a_clear_reason(telegram: FakeTelegram, raw: psycopg.Connection) -> None:
    telegram.blocked_chats.add(CHAT)
    enqueue(2)
    report = deliver()
    assert len(report.dead) == 2
    reasons = [r[0] for r in raw.execute("SELECT last_error FROM notifications ORDER BY id")]
    assert all("bot was blocked by the user" in r and CHAT in r for r in reasons)
    telegram.blocked_chats.clear()
    assert run_hq("notifications", "retry", "--dead").exit_code == 0
    assert len(deliver().sent) == 2


def test_dead_letter_after_max_attempts(
    telegram: FakeTelegram, raw: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HQ_NOTIFY_MAX_ATTEMPTS", "2")
    enqueue(1)
    telegram.outage(3600)
    deliver()
    raw.execute("UPDATE notifications SET next_attempt_at = now()")
    report = deliver()
    assert report.error is not None and "unreachable" in report.error  # getMe fails: nothing attempted
    assert statuses(raw) == {"pending": 1}
    telegram.outage_until = 0
    telegram.fail(*[Failure(500, "Internal Server Error")] * 10)
    raw.execute("UPDATE notifications SET next_attempt_at = now()")
    deliver()
    raw.execute("UPDATE notifications SET next_attempt_at = now()")
    assert len(deliver().dead) == 1
    assert statuses(raw) == {"dead": 1}


def test_rejected_token_keeps_everything_pending(
    telegram: FakeTelegram, raw: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "123456789:AAwrongwrongwrongwrongwrongwrongwro")
    enqueue(3)
    report = deliver()
    assert report.error is not None and "rejected the bot token" in report.error
    assert "wrongwrong" not in report.error
    assert raw.execute("SELECT status, attempts FROM notifications").fetchall() == [("pending", 0)] * 3


def test_console_channel_without_a_token(db_url: str, raw: psycopg.Connection) -> None:
    enqueue(2)
    report = notify.run(get_settings(), get_engine())
    assert len(report.sent) == 2
    assert raw.execute("SELECT DISTINCT status, channel FROM notifications").fetchall() == [("sent", "console")]


def test_crash_between_send_and_mark_duplicates_only_the_message_in_flight(
    telegram: FakeTelegram, raw: psycopg.Connection
) -> None:
    enqueue(4)
    telegram.hang_on_text = "#2 issue 2"
    env = {**os.environ, "HQ_NOTIFY_INFLIGHT_SECONDS": "1", "HQ_LOG_FORMAT": "json"}
    sender = subprocess.Popen(
        [str(BIN / "hq"), "notifications", "send"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        assert telegram.hung.wait(30)
        sender.kill()  # Telegram has message #2; the sender never records that it was sent
        sender.wait()
    finally:
        if sender.poll() is None:
            sender.kill()
    telegram.hang_on_text = None
    telegram.release.set()
    assert dict(raw.execute("SELECT payload->'issue'->>'id', status FROM notifications").fetchall()) == {
        "0": "sent",
        "1": "sent",
        "2": "sending",
        "3": "sending",
    }
    time.sleep(1.2)  # the in-flight window passes
    result = subprocess.run(
        [str(BIN / "hq"), "notifications", "send"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    counts = Counter(m["text"].split()[1] for m in telegram.messages)
    assert counts == {"#0": 1, "#1": 1, "#2": 2, "#3": 1}
    assert statuses(raw) == {"sent": 4}


def test_telegram_test_command(telegram: FakeTelegram, monkeypatch: pytest.MonkeyPatch) -> None:
    ok = run_hq("telegram", "test")
    assert ok.exit_code == 0, ok.stderr
    assert telegram.texts() == ["Heartbeat HQ test message"]
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "123456789:AAwrongwrongwrongwrongwrongwrongwro")
    wrong = run_hq("telegram", "test")
    assert wrong.exit_code == 2 and "rejected TELEGRAM_BOT_TOKEN" in wrong.stderr
    assert "wrongwrong" not in wrong.stderr
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", TOKEN)
    monkeypatch.setenv("TELEGRAM_CHAT_ID", "@nowhere")
    telegram.blocked_chats.add("@nowhere")
    blocked = run_hq("telegram", "test")
    assert blocked.exit_code == 2 and "bot was blocked by the user" in blocked.stderr


def test_events_from_real_flows_reach_the_outbox_once(db_url: str, raw: psycopg.Connection) -> None:
    """Replaying the sweeper over the same state enqueues nothing new: keys come from events, not clocks."""
    from workflows import sweep

    run_hq("agents", "sync")
    writer = one(raw.execute("SELECT id FROM agents WHERE slug = 'content-writer'").fetchone())[0]
    issue = one(
        raw.execute(
            "INSERT INTO issues (title, status, created_by, assignee_id) VALUES ('x', 'todo', 't', %s) RETURNING id",
            (writer,),
        ).fetchone()
    )[0]
    raw.execute(
        "INSERT INTO approvals (issue_id, kind, requested_by, deadline) VALUES (%s, 'budget', 'a', now())", (issue,)
    )
    for _ in range(3):
        sweep.run(get_settings(), get_engine())
    assert raw.execute("SELECT event, count(*) FROM notifications GROUP BY 1").fetchall() == [("approval_deadline", 1)]
