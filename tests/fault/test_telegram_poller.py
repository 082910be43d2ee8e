"""Deciding from Telegram across real `hq run` processes: one poller at a time, and a kill -9 between
receiving a button press and committing its decision loses nothing and decides once."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.fakes.telegram_server import FakeTelegram, callback_update
from tests.support.processes import start, stop, wait_for_progress, wait_until
from tests.support.rows import force_status, new_issue, notify_approval, one

TOKEN = "123456789:AApollerTOKENpollerTOKENpollerTOK"
CHAT = 4242
ALICE = 1001
LEASE_SECONDS = 11

pytestmark = pytest.mark.timeout(600)  # a backstop against a hang: the waits fail on a stall


@pytest.fixture()
def telegram(db_url: str) -> Iterator[tuple[FakeTelegram, dict[str, str]]]:
    fake = FakeTelegram(TOKEN).start()
    env = {
        "TELEGRAM_BOT_TOKEN": TOKEN,
        "TELEGRAM_CHAT_ID": str(CHAT),
        "TELEGRAM_API_BASE": fake.url,
        "HQ_TELEGRAM_APPROVERS": str(ALICE),
        "HQ_TELEGRAM_LEASE_SECONDS": str(LEASE_SECONDS),
        "HQ_TELEGRAM_POLL_SECONDS": "1",
        "HQ_HEARTBEAT_SCALE": "1000",  # agents stay out of the way: only the desk acts
    }
    yield fake, env
    fake.stop()


def holder(raw: psycopg.Connection) -> str | None:
    """The lease owner while the lease is live (``host:pid:…``), else None."""
    row = one(raw.execute("SELECT lease_owner, lease_until > now() FROM telegram_poller").fetchone())
    return row[0] if row[1] else None


def held_by(raw: psycopg.Connection, process: subprocess.Popen[bytes]) -> bool:
    return f":{process.pid}:" in (holder(raw) or "")


def pending_approval(raw: psycopg.Connection, fake: FakeTelegram) -> tuple[int, int]:
    """An issue waiting for approval, its notification delivered by a running `hq run`: (issue, message id)."""
    issue = new_issue(raw, "Ship it", status="todo")
    force_status(raw, issue, "pending_approval")
    notify_approval(issue, "work")
    fake.wait_for(lambda: [m for m in fake.messages if m.get("reply_markup")], what="the approval message")
    return issue, int(fake.messages[-1]["message_id"])


def approve_press(fake: FakeTelegram, message_id: int) -> dict[str, object]:
    markup = fake.message(message_id)["reply_markup"]
    data = next(b["callback_data"] for row in markup["inline_keyboard"] for b in row if b["text"] == "Approve")
    return callback_update(fake, user_id=ALICE, username="alice", message_id=message_id, data=data)


def decided(raw: psycopg.Connection, issue: int) -> int:
    return one(
        raw.execute(
            "SELECT count(*) FROM issue_events WHERE issue_id = %s AND to_status = 'approved'", (issue,)
        ).fetchone()
    )[0]


def test_one_process_polls_and_the_lease_moves_when_it_dies(
    telegram: tuple[FakeTelegram, dict[str, str]], raw: psycopg.Connection, tmp_path: Path
) -> None:
    fake, env = telegram
    first = start(tmp_path, "first", **env)
    second = None
    try:
        assert wait_until(lambda: held_by(raw, first), 60), holder(raw)
        second = start(tmp_path, "second", **env)
        # The second process is up and waiting for the lease while the first keeps polling.
        assert wait_until(
            lambda: (
                raw.execute(
                    "SELECT count(DISTINCT pid) FROM pg_stat_activity WHERE application_name = 'hq-listener'"
                ).fetchone()
                == (2,)
            ),
            60,
        )
        polls = len(fake.polls)
        fake.wait_for(lambda: len(fake.polls) >= polls + 3, what="three more polls")
        assert held_by(raw, first) and fake.conflicts == 0
        first.send_signal(signal.SIGKILL)
        first.wait(30)
        taken = wait_for_progress(lambda: holder(raw), lambda owner: f":{second.pid}:" in (owner or ""))
        assert taken, str(taken)
        issue, message = pending_approval(raw, fake)
        fake.wait_for_confirmed(fake.push(approve_press(fake, message)))
        assert decided(raw, issue) == 1
        assert fake.conflicts == 0  # never two getUpdates at once
    finally:
        if first.poll() is None:
            first.kill()
        if second is not None:
            stop(second)


def test_kill_9_between_receiving_and_committing_loses_nothing_and_decides_once(
    telegram: tuple[FakeTelegram, dict[str, str]], raw: psycopg.Connection, tmp_path: Path, db_url: str
) -> None:
    fake, env = telegram
    first = start(tmp_path, "first", **env)
    second = None
    try:
        assert wait_until(lambda: held_by(raw, first), 60), holder(raw)
        issue, message = pending_approval(raw, fake)
        with psycopg.connect(raw.info.dsn) as blocker:
            # Hold the issue: the desk receives the press and waits on this lock, mid-transaction.
            blocker.execute("SELECT id FROM issues WHERE id = %s FOR UPDATE", (issue,))
            update_id = fake.push(approve_press(fake, message))
            assert wait_until(
                lambda: (
                    raw.execute(
                        "SELECT count(*) FROM pg_stat_activity"
                        " WHERE wait_event_type = 'Lock' AND query LIKE '%%FROM issues%%'"
                    ).fetchone()
                    == (1,)
                ),
                30,
                step=0.05,
            ), "the desk never reached the decision"
            first.send_signal(signal.SIGKILL)
            first.wait(30)
            blocker.rollback()
        assert decided(raw, issue) == 0
        assert update_id in fake.pending_updates()  # received, never confirmed: Telegram still has it
        second = start(tmp_path, "second", **env)
        done = wait_for_progress(lambda: decided(raw, issue), lambda count: count >= 1)
        assert done, str(done)
        fake.wait_for_confirmed(update_id)
        polls = len(fake.polls)
        fake.wait_for(lambda: len(fake.polls) >= polls + 2, what="two more polls")  # and nothing comes again
        assert decided(raw, issue) == 1
        assert raw.execute(
            "SELECT outcome, user_id FROM telegram_updates WHERE update_id = %s", (update_id,)
        ).fetchall() == [("decided", ALICE)]
        assert one(raw.execute("SELECT decided_by FROM approvals WHERE issue_id = %s", (issue,)).fetchone())[0] == (
            f"telegram:{ALICE}"
        )
    finally:
        if first.poll() is None:
            first.kill()
        if second is not None:
            stop(second)
