"""Deciding from Telegram: the real python-telegram-bot, polling the fake Bot API on 127.0.0.1.

A poller runs as in `hq run`; updates are pushed into the fake as Telegram
would deliver them. Each test waits for progress (an answer, an edit, a
confirmed offset), never for a fixed time.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest

from agents.tools.context import workspace_path
from channels import notify
from channels.buttons import Button, sign
from channels.poller import TelegramPoller
from config.settings import Settings, get_settings, load_settings, reset_settings
from db.engine import get_engine
from projects.workspace import Workspace
from scheduler.company import Company
from tests.fakes.telegram_server import FakeTelegram, callback_update, message_update
from tests.support.cli import run_hq
from tests.support.processes import wait_for_progress, wait_until
from tests.support.rows import execute_run, force_status, new_issue, notify_approval, one, status_of
from workflows import sweep

TOKEN = "123456789:AAtestTOKENtestTOKENtestTOKENtest12"
CHAT = 4242
ALICE, BOB, MALLORY = 1001, 1003, 6666


@dataclass
class Desk:
    fake: FakeTelegram
    settings: Settings
    poller: TelegramPoller

    def press(self, message_id: int, label: str, *, user_id: int = ALICE, username: str = "alice") -> dict[str, Any]:
        """Press the button ``label`` on the bot's message; the answer the presser got."""
        data = button_data(self.fake, message_id, label)
        return self.answer_to(
            callback_update(self.fake, user_id=user_id, username=username, message_id=message_id, data=data)
        )

    def answer_to(self, update: dict[str, Any]) -> dict[str, Any]:
        seen = len(self.fake.answers)
        update_id = self.fake.push(update)
        self.fake.wait_for_confirmed(update_id)
        return self.fake.wait_for(lambda: _at(self.fake.answers, seen), what="an answer")

    def say(self, text: str, *, user_id: int = ALICE, username: str = "alice", reply_to: int | None = None) -> str:
        """Send ``text`` in the company chat; the bot's reply."""
        seen = len(self.fake.messages)
        update_id = self.fake.push(
            message_update(
                user_id=user_id, username=username, chat_id=CHAT, text=text, reply_to=reply_to, fake=self.fake
            )
        )
        self.fake.wait_for_confirmed(update_id)
        reply = self.fake.wait_for(lambda: _at(self.fake.messages, seen), what="a reply")
        return str(reply["text"])


def _at(items: list[dict[str, Any]], index: int) -> dict[str, Any] | None:
    return items[index] if len(items) > index else None


def use_telegram(monkeypatch: pytest.MonkeyPatch, fake: FakeTelegram, **settings: str) -> None:
    """Point this process's bot at the fake, with ALICE as an approver (and ``settings`` on top)."""
    values = {
        "TELEGRAM_BOT_TOKEN": TOKEN,
        "TELEGRAM_CHAT_ID": str(CHAT),
        "TELEGRAM_API_BASE": fake.url,
        "HQ_TELEGRAM_APPROVERS": str(ALICE),
        **settings,
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    reset_settings()


@pytest.fixture()
def desk(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Desk]:
    fake = FakeTelegram(TOKEN).start()
    use_telegram(
        monkeypatch,
        fake,
        HQ_TELEGRAM_APPROVERS=f"{ALICE},{BOB}",
        HQ_TELEGRAM_LEASE_SECONDS="15",
        HQ_TELEGRAM_POLL_SECONDS="5",
    )
    settings = load_settings()
    poller = TelegramPoller(settings, get_engine(settings), "test")
    poller.start()
    fake.wait_until_polling()
    yield Desk(fake, settings, poller)
    poller.stop()
    fake.stop()


def button_data(fake: FakeTelegram, message_id: int, label: str) -> str:
    markup = fake.message(message_id)["reply_markup"]
    assert markup is not None, "the message has no buttons"
    for row in markup["inline_keyboard"]:
        for button in row:
            if button["text"] == label:
                return str(button["callback_data"])
    raise AssertionError(f"no {label} button on message {message_id}")


def labels(fake: FakeTelegram, message_id: int) -> list[str]:
    markup: dict[str, Any] = fake.message(message_id).get("reply_markup") or {"inline_keyboard": []}
    return [button["text"] for row in markup["inline_keyboard"] for button in row]


def approval_row(raw: psycopg.Connection, issue: int) -> tuple[Any, ...]:
    return one(
        raw.execute(
            "SELECT id, status, decided_by, decision_note FROM approvals WHERE issue_id = %s ORDER BY id DESC LIMIT 1",
            (issue,),
        ).fetchone()
    )


def audit(raw: psycopg.Connection) -> list[tuple[Any, ...]]:
    return raw.execute("SELECT user_id, kind, action, outcome FROM telegram_updates ORDER BY update_id").fetchall()


def open_approval(
    desk: Desk, raw: psycopg.Connection, kind: str, *, title: str = "Ship <the> thing"
) -> tuple[int, int]:
    """An issue waiting for a ``kind`` decision, its notification delivered: (issue id, bot message id)."""
    issue = new_issue(raw, title, status="todo")
    if kind == "work":
        force_status(raw, issue, "pending_approval")
    else:
        force_status(raw, issue, "blocked", blocked_reason="budget" if kind == "budget" else "human")
    notify_approval(issue, kind)
    report = notify.run(desk.settings, get_engine())
    assert len(report.sent) == 1, report
    return issue, int(desk.fake.messages[-1]["message_id"])


# --- buttons ---------------------------------------------------------------------------------------


def test_approve_button_decides_once_and_edits_the_message(desk: Desk, raw: psycopg.Connection) -> None:
    issue, message = open_approval(desk, raw, "work")
    assert labels(desk.fake, message) == ["Approve", "Revise", "Reject"]
    answer = desk.press(message, "Approve")
    assert "Approved by @alice" in answer["text"]
    assert status_of(raw, issue) == "approved"
    _id, status, decided_by, note = approval_row(raw, issue)
    assert (status, decided_by) == ("approved", f"telegram:{ALICE}")
    assert "@alice via Telegram" in note
    # The same events as the CLI: one status event, by the person, from the Telegram desk.
    assert raw.execute(
        "SELECT actor, workflow FROM issue_events WHERE issue_id = %s AND to_status = 'approved'", (issue,)
    ).fetchall() == [(f"telegram:{ALICE}", "telegram")]
    edited = desk.fake.edits[-1]
    assert edited["message_id"] == message and edited["reply_markup"] is None
    assert "Approved</b> by @alice" in edited["text"] and "Ship &lt;the&gt; thing" in edited["text"]
    assert audit(raw) == [(ALICE, "button", "approve", "decided")]
    assert one(raw.execute("SELECT update_offset FROM telegram_poller").fetchone())[0] == desk.fake.confirmed


def test_revise_asks_for_the_note_and_the_reply_decides(desk: Desk, raw: psycopg.Connection) -> None:
    issue, message = open_approval(desk, raw, "work")
    answer = desk.press(message, "Revise")
    assert "reply to the next message" in answer["text"].lower()
    assert status_of(raw, issue) == "pending_approval"  # nothing decided without the note
    prompt = desk.fake.messages[-1]
    assert prompt["reply_markup"]["force_reply"] is True and prompt["reply_to_message_id"] == message
    reply = desk.say("Tighten the intro & cite the source", reply_to=int(prompt["message_id"]))
    assert "Sent back for revision" in reply
    assert status_of(raw, issue) == "todo"
    comment = one(
        raw.execute(
            "SELECT author, kind, body FROM comments WHERE issue_id = %s ORDER BY id DESC LIMIT 1", (issue,)
        ).fetchone()
    )
    assert comment[:2] == (f"telegram:{ALICE}", "revision")
    assert comment[2].startswith("Tighten the intro & cite the source") and "@alice via Telegram" in comment[2]
    assert desk.fake.message(message)["reply_markup"] is None  # the approval message shows the outcome
    assert "Sent back for revision" in desk.fake.message(message)["text"]
    # The prompt answers once: a second reply to it decides nothing (and is told so).
    desk.fake.push(
        message_update(user_id=ALICE, chat_id=CHAT, text="again", reply_to=int(prompt["message_id"]), fake=desk.fake)
    )
    desk.fake.wait_for_confirmed(max(desk.fake.pending_updates() or [desk.fake.confirmed]))
    assert [row[3] for row in audit(raw)] == ["asked", "decided", "refused"]


def test_reject_with_a_reply(desk: Desk, raw: psycopg.Connection) -> None:
    issue, message = open_approval(desk, raw, "work")
    desk.press(message, "Reject")
    prompt = desk.fake.messages[-1]
    assert "Rejected" in desk.say("Out of scope", reply_to=int(prompt["message_id"]))
    assert status_of(raw, issue) == "rejected"
    assert approval_row(raw, issue)[1:3] == ("rejected", f"telegram:{ALICE}")


def test_budget_plus_five(desk: Desk, raw: psycopg.Connection) -> None:
    issue, message = open_approval(desk, raw, "budget")
    assert labels(desk.fake, message) == ["+$1", "+$5", "+$20", "Reject"]
    before = one(raw.execute("SELECT budget_usd FROM issues WHERE id = %s", (issue,)).fetchone())[0]
    answer = desk.press(message, "+$5")
    assert "Budget +$5" in answer["text"]
    after, status = one(raw.execute("SELECT budget_usd, status FROM issues WHERE id = %s", (issue,)).fetchone())
    assert (after - before, status) == (5, "todo")
    assert approval_row(raw, issue)[1:3] == ("approved", f"telegram:{ALICE}")


def test_unblock_and_cancel_an_escalation(desk: Desk, raw: psycopg.Connection) -> None:
    issue, message = open_approval(desk, raw, "escalation")
    assert labels(desk.fake, message) == ["Unblock", "Cancel"]
    desk.press(message, "Unblock")
    desk.say("Use the staging data", reply_to=int(desk.fake.messages[-1]["message_id"]))
    assert status_of(raw, issue) in ("todo", "backlog")
    other, second = open_approval(desk, raw, "escalation", title="another")
    desk.press(second, "Cancel")  # cannot be undone: the reason confirms it
    assert status_of(raw, other) == "blocked"
    desk.say("Not needed any more", reply_to=int(desk.fake.messages[-1]["message_id"]))
    assert status_of(raw, other) == "cancelled"


def test_someone_not_allow_listed_changes_nothing(desk: Desk, raw: psycopg.Connection) -> None:
    issue, message = open_approval(desk, raw, "work")
    answer = desk.press(message, "Approve", user_id=MALLORY, username="mallory")
    assert answer["text"].startswith("Not allowed") and answer["show_alert"] in (True, "true")
    assert status_of(raw, issue) == "pending_approval"
    assert approval_row(raw, issue)[1] == "pending"
    assert audit(raw) == [(MALLORY, "button", "approve", "not_allowed")]
    assert desk.fake.edits == []


def test_forged_and_altered_buttons_are_not_valid(desk: Desk, raw: psycopg.Connection) -> None:
    issue, message = open_approval(desk, raw, "work")
    approval_id = approval_row(raw, issue)[0]
    real = button_data(desk.fake, message, "Approve")
    altered = real.replace(f":{approval_id}:", f":{approval_id + 1}:")
    wrong_key = sign(b"not the key", Button("ap", approval_id, 0))
    for data in (f"ap:{approval_id}:0:AAAAAAAAAAAAAAAAAAAAAA", altered, wrong_key, "ap:1", "x" * 64, ""):
        answer = desk.answer_to(
            callback_update(desk.fake, user_id=ALICE, username="alice", message_id=message, data=data)
        )
        assert answer["text"].startswith("Not valid"), data
    assert status_of(raw, issue) == "pending_approval"
    assert {row[3] for row in audit(raw)} == {"invalid"}


def test_a_stale_button_says_who_decided(desk: Desk, raw: psycopg.Connection) -> None:
    issue, message = open_approval(desk, raw, "work")
    assert run_hq("approve", str(issue), "--as", "carol").exit_code == 0
    answer = desk.press(message, "Reject")
    assert answer["text"].startswith("Already decided by human:carol (approved)")
    assert desk.fake.message(message)["reply_markup"] is None  # the message catches up with the decision
    assert status_of(raw, issue) == "approved"
    # A deadline that re-issued the approval makes its old buttons out of date.
    other, old_message = open_approval(desk, raw, "work", title="other")
    old = button_data(desk.fake, old_message, "Approve")
    raw.execute("UPDATE approvals SET escalations = escalations + 1 WHERE issue_id = %s", (other,))
    answer = desk.answer_to(
        callback_update(desk.fake, user_id=ALICE, username="alice", message_id=old_message, data=old)
    )
    assert answer["text"].startswith("Not valid: approval")
    assert status_of(raw, other) == "pending_approval"


def test_the_same_update_twice_decides_once(desk: Desk, raw: psycopg.Connection) -> None:
    issue, message = open_approval(desk, raw, "budget")
    update = callback_update(
        desk.fake, user_id=ALICE, username="alice", message_id=message, data=button_data(desk.fake, message, "+$5")
    )
    first = desk.fake.push(update)
    desk.fake.wait_for_confirmed(first)
    again = desk.fake.push({**update, "update_id": first})  # Telegram delivers it once more
    assert again == first
    desk.fake.wait_for_confirmed(first)
    desk.fake.wait_for_poll(lambda poll: (poll["offset"] or 0) > first and poll["update_ids"] == [], since=0)
    assert (
        one(
            raw.execute(
                "SELECT count(*) FROM comments WHERE issue_id = %s AND body LIKE 'Budget raised%%'", (issue,)
            ).fetchone()
        )[0]
        == 1
    )
    assert len(audit(raw)) == 1


def test_two_approvers_at_once_decide_once(desk: Desk, raw: psycopg.Connection) -> None:
    issue, message = open_approval(desk, raw, "work")
    approve = button_data(desk.fake, message, "Approve")
    presses = [
        callback_update(desk.fake, user_id=ALICE, username="alice", message_id=message, data=approve),
        callback_update(desk.fake, user_id=BOB, username="bob", message_id=message, data=approve),
    ]
    ids = [desk.fake.push(press) for press in presses]
    desk.fake.wait_for_confirmed(ids[-1])
    desk.fake.wait_for(lambda: len(desk.fake.answers) >= 2, what="both answers")
    texts = sorted(answer["text"] for answer in desk.fake.answers)
    assert texts[0].startswith("Already decided by telegram:1001") and "Approved by @alice" in texts[1]
    assert raw.execute(
        "SELECT count(*) FROM issue_events WHERE issue_id = %s AND to_status = 'approved'", (issue,)
    ).fetchone() == (1,)
    assert [row[3] for row in audit(raw)] == ["decided", "stale"]


# --- commands --------------------------------------------------------------------------------------


def test_commands_read_and_decide(desk: Desk, raw: psycopg.Connection) -> None:
    issue, _message = open_approval(desk, raw, "work")
    blocked = new_issue(raw, "Stuck on <data>", status="todo")
    force_status(raw, blocked, "blocked", blocked_reason="human")
    assert "/approve N [note]" in desk.say("/help")
    assert "Waiting for a decision: 1 · blocked: 1" in desk.say("/status")
    assert f"#{issue} Ship &lt;the&gt; thing: work" in desk.say("/approvals")
    assert f"#{blocked} Stuck on" in desk.say("/blocked")
    shown = desk.say(f"/issue {issue}")
    assert "pending_approval" in shown and labels(desk.fake, int(desk.fake.messages[-1]["message_id"])) == [
        "Approve",
        "Revise",
        "Reject",
    ]
    assert "Approved" in desk.say(f"/approve {issue} looks right")
    assert status_of(raw, issue) == "approved"
    note = approval_row(raw, issue)[3]
    assert note.startswith("looks right") and "@alice via Telegram" in note
    budgeted = new_issue(raw, "needs money", status="todo")
    assert "Budget +$2.50" in desk.say(f"/budget {budgeted} 2.50")
    other, _ = open_approval(desk, raw, "work", title="to reject")
    assert "Rejected" in desk.say(f"/reject {other} not needed")
    assert status_of(raw, other) == "rejected"


@pytest.mark.parametrize(
    ("text", "reply"),
    [
        ("/approve", "usage: /approve N [note]"),
        ("/approve abc", "is not an issue id"),
        ("/approve 999999", "issue 999999 does not exist"),
        ("/reject 1", "usage: /reject N reason"),
        ("/budget 1", "usage: /budget N USD"),
        ("/budget 1 lots", "is not an amount of USD"),
        ("/budget 1 -5", "is not an amount of USD"),
        ("/issue", "usage: /issue N"),
        ("/approve <b>", "is not an issue id"),
    ],
)
def test_bad_commands_get_one_line(desk: Desk, raw: psycopg.Connection, text: str, reply: str) -> None:
    answer = desk.say(text)
    assert reply in answer and "\n" not in answer
    assert audit(raw)[-1][3] == "refused"


def test_commands_that_decide_need_an_approver_and_other_chats_are_ignored(desk: Desk, raw: psycopg.Connection) -> None:
    issue, _message = open_approval(desk, raw, "work")
    assert desk.say(f"/approve {issue}", user_id=MALLORY, username="mallory").startswith("Not allowed")
    assert "Board" in desk.say("/status", user_id=MALLORY, username="mallory")  # reading is for the whole chat
    sent = len(desk.fake.messages)
    elsewhere = desk.fake.push(message_update(user_id=ALICE, username="alice", chat_id=999, text=f"/approve {issue}"))
    desk.fake.wait_for_confirmed(elsewhere)
    assert len(desk.fake.messages) == sent  # no answer at all
    assert status_of(raw, issue) == "pending_approval"
    assert [row[3] for row in audit(raw)] == ["not_allowed", "answered", "ignored"]


def test_an_update_that_keeps_failing_is_passed_over_and_later_ones_decide(desk: Desk, raw: psycopg.Connection) -> None:
    issue, message = open_approval(desk, raw, "work")
    raw.execute(  # every command now fails to record its outcome: a bug, not an outage
        """CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF NEW.kind = 'command' AND NEW.outcome <> 'failed' THEN RAISE EXCEPTION 'poisoned'; END IF;
                RETURN NEW;
            END $$;
            CREATE TRIGGER poison BEFORE UPDATE ON telegram_updates FOR EACH ROW EXECUTE FUNCTION poison();"""
    )
    desk.fake.push(message_update(user_id=ALICE, username="alice", chat_id=CHAT, text="/status"))
    answer = desk.press(message, "Approve")
    assert "Approved by @alice" in answer["text"]
    assert status_of(raw, issue) == "approved"
    assert audit(raw) == [(ALICE, "other", None, "failed"), (ALICE, "button", "approve", "decided")]


def test_approve_from_telegram_reaches_deploying_with_hour_long_heartbeats(
    db_url: str, raw: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeTelegram(TOKEN).start()
    use_telegram(monkeypatch, fake)
    company = Company(get_settings(), threads=4)
    raw.execute("UPDATE agents SET heartbeat_seconds = 3600, jitter_seconds = 0")
    company.start()
    try:
        fake.wait_until_polling()
        wait_for_first_beats(raw)
        writer = one(raw.execute("SELECT id FROM agents WHERE slug = 'content-writer'").fetchone())[0]
        issue = new_issue(raw, "Ship the newsletter", status="todo", assignee_id=writer, needs_approval=True)
        force_status(raw, issue, "in_progress")
        execute_run(
            issue, writer, "content-writer", Workspace(workspace_path(get_settings(), issue)), {"news.md": "# News\n"}
        )  # a real submission: deploy ships what it recorded
        force_status(raw, issue, "pending_approval")
        notify_approval(issue, "work")
        fake.wait_for(lambda: [m for m in fake.messages if m.get("reply_markup")], what="the approval message")
        message = int(fake.messages[-1]["message_id"])
        pressed = time.monotonic()
        fake.push(
            callback_update(
                fake, user_id=ALICE, username="alice", message_id=message, data=button_data(fake, message, "Approve")
            )
        )
        # Only a wake-up can move it: every agent's next heartbeat is an hour away.
        reached = wait_for_progress(
            lambda: [row[0] for row in raw.execute("SELECT to_status FROM issue_events WHERE issue_id = %s", (issue,))],
            lambda seen: "deploying" in seen,
        )
        assert reached, f"{reached}; {time.monotonic() - pressed:.1f}s after the press"
    finally:
        company.shutdown()
        fake.stop()


def wait_for_first_beats(raw: psycopg.Connection) -> None:
    """Every agent's first beat (within two seconds of the start) is over; the next are an hour away."""
    agents = one(raw.execute("SELECT count(*) FROM agents WHERE status = 'active'").fetchone())[0]
    done = wait_for_progress(
        lambda: one(
            raw.execute("SELECT count(DISTINCT agent_id) FROM heartbeat_runs WHERE finished_at IS NOT NULL").fetchone()
        )[0],
        lambda count: count >= agents,
    )
    assert done, str(done)


def test_a_webhook_receives_updates_and_answers_only_after_the_commit(
    db_url: str, raw: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeTelegram(TOKEN).start()
    use_telegram(
        monkeypatch,
        fake,
        HQ_TELEGRAM_WEBHOOK_URL="https://hq.example.invalid/telegram/updates",
        HQ_TELEGRAM_WEBHOOK_LISTEN="127.0.0.1:0",
    )
    settings = load_settings()
    poller = TelegramPoller(settings, get_engine(settings), "test")
    poller.start()
    try:
        registered = fake.wait_for(lambda: [w for w in fake.webhooks if w["method"] == "setWebhook"], what="setWebhook")
        assert registered[0]["url"] == "https://hq.example.invalid/telegram/updates"
        secret = registered[0]["secret_token"]
        assert wait_until(lambda: poller.webhook is not None, 30, step=0.02), "the listener never started"
        host, port = poller.webhook.address  # type: ignore[union-attr]
        desk = Desk(fake, settings, poller)
        issue, message = open_approval(desk, raw, "work")
        press = callback_update(
            fake, user_id=ALICE, username="alice", message_id=message, data=button_data(fake, message, "Approve")
        )

        def post(update: dict[str, Any], token: str) -> int:
            request = urllib.request.Request(
                f"http://{host}:{port}/telegram/updates",
                data=json.dumps(update).encode(),
                headers={"content-type": "application/json", "X-Telegram-Bot-Api-Secret-Token": token},
            )
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    return int(response.status)
            except urllib.error.HTTPError as error:
                return int(error.code)

        assert post({**press, "update_id": 7}, "forged") == 403
        assert status_of(raw, issue) == "pending_approval" and audit(raw) == []
        assert post({**press, "update_id": 8}, secret) == 200
        assert status_of(raw, issue) == "approved"  # committed before the 200
        assert post({**press, "update_id": 8}, secret) == 200  # delivered again: recognised, nothing decided
        assert audit(raw) == [(ALICE, "button", "approve", "decided")]
        assert fake.polls == []  # a webhook and polling exclude each other
    finally:
        poller.stop()
        fake.stop()


def test_a_reminder_carries_the_buttons_and_they_decide(desk: Desk, raw: psycopg.Connection) -> None:
    issue, _first = open_approval(desk, raw, "work", title="Remind me")
    raw.execute(
        "UPDATE approvals SET created_at = now() - interval '13 hours', deadline = now() + interval '11 hours' "
        "WHERE issue_id = %s",
        (issue,),
    )
    sweep.run(desk.settings, get_engine())
    assert notify.run(desk.settings, get_engine()).sent
    reminder = int(desk.fake.messages[-1]["message_id"])
    assert "half its time has gone" in desk.fake.messages[-1]["text"]
    assert labels(desk.fake, reminder) == ["Approve", "Revise", "Reject"]
    assert "Approved by @alice" in desk.press(reminder, "Approve")["text"]
    assert status_of(raw, issue) == "approved"


@pytest.mark.parametrize("text", ["/status. {issue} 5000", "/status\u200f {issue} 5000", "/approve, {issue} 3"])
def test_a_command_is_what_telegram_says_it_is(desk: Desk, raw: psycopg.Connection, text: str) -> None:
    """`/status.` runs /status, as Telegram's entity says: it once fell through to /budget, for anyone."""
    issue, _message = open_approval(desk, raw, "budget")
    before = one(raw.execute("SELECT budget_usd, status FROM issues WHERE id = %s", (issue,)).fetchone())
    desk.say(text.format(issue=issue), user_id=MALLORY, username="mallory")
    desk.say(text.format(issue=issue))  # an approver's typo decides nothing either
    assert one(raw.execute("SELECT budget_usd, status FROM issues WHERE id = %s", (issue,)).fetchone()) == before
    assert approval_row(raw, issue)[1] == "pending"


def test_a_press_on_a_busy_issue_is_told_so_and_can_be_pressed_again(desk: Desk, raw: psycopg.Connection) -> None:
    issue, message = open_approval(desk, raw, "work")
    with psycopg.connect(raw.info.dsn) as worker:
        worker.execute("SELECT id FROM issues WHERE id = %s FOR UPDATE", (issue,))  # held longer than lock_timeout
        answer = desk.press(message, "Approve")
    assert answer["text"].startswith("The issue is busy")
    assert status_of(raw, issue) == "pending_approval"
    assert "Approved by @alice" in desk.press(message, "Approve")["text"]
    assert [row[3] for row in audit(raw)] == ["refused", "decided"]


def test_a_reply_to_an_answered_prompt_says_so(desk: Desk, raw: psycopg.Connection) -> None:
    issue, message = open_approval(desk, raw, "work")
    desk.press(message, "Revise")
    prompt = int(desk.fake.messages[-1]["message_id"])
    desk.say("First note", reply_to=prompt)
    assert "no longer open" in desk.say("Second note", user_id=BOB, username="bob", reply_to=prompt)
    assert (
        one(
            raw.execute("SELECT count(*) FROM comments WHERE issue_id = %s AND kind = 'revision'", (issue,)).fetchone()
        )[0]
        == 1
    )


def test_names_and_notes_that_postgres_cannot_store_are_cleaned(desk: Desk, raw: psycopg.Connection) -> None:
    issue, message = open_approval(desk, raw, "work")
    desk.press(message, "Revise", username="ali\ud800ce")
    desk.say("fix\x00 it \udfff", username="ali\ud800ce", reply_to=int(desk.fake.messages[-1]["message_id"]))
    assert status_of(raw, issue) == "todo"
    body = one(raw.execute("SELECT body FROM comments WHERE issue_id = %s AND kind = 'revision'", (issue,)).fetchone())[
        0
    ]
    assert body.startswith("fix it ?") and "@ali?ce via Telegram" in body


def test_a_webhook_set_behind_the_pollers_back_is_removed_and_polling_resumes(
    desk: Desk, raw: psycopg.Connection
) -> None:
    issue, message = open_approval(desk, raw, "work")
    request = urllib.request.Request(
        f"{desk.fake.url}/bot{TOKEN}/setWebhook",
        data=json.dumps({"url": "https://elsewhere.invalid/hook"}).encode(),
        headers={"content-type": "application/json"},
    )
    urllib.request.urlopen(request, timeout=30).close()  # another deployment with the same token, say
    desk.fake.wait_for(lambda: desk.fake.conflicts, what="a refused poll")
    assert "Approved by @alice" in desk.press(message, "Approve")["text"]  # the poller deleted it
    assert status_of(raw, issue) == "approved"


def test_stopping_a_poller_whose_token_was_refused_is_quiet(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeTelegram("987654321:AAanotherTOKENanotherTOKENanother1").start()  # our token is not its bot's
    use_telegram(monkeypatch, fake)
    poller = TelegramPoller(load_settings(), get_engine(), "test")
    poller.start()
    try:
        poller.join(30)
        assert not poller.is_alive()  # getMe was refused: it stopped, and said why
    finally:
        poller.stop()  # used to raise "Event loop is closed" here, and hq run's shutdown stopped half-way
        fake.stop()


@pytest.mark.parametrize(
    "unreadable",
    [
        {"message": {"message_id": 1, "chat": {"id": CHAT, "type": "group"}}},  # no date
        {"callback_query": {"id": "x", "from": {"id": ALICE, "is_bot": False, "first_name": "a"}}},  # no chat_instance
        {"message": {"message_id": 1, "date": "soon", "chat": {"id": CHAT, "type": "group"}}},  # a date that is text
    ],
)
def test_a_batch_the_library_cannot_read_does_not_stall_polling(
    desk: Desk, raw: psycopg.Connection, unreadable: dict[str, Any]
) -> None:
    """python-telegram-bot refuses a whole getUpdates batch when one update has a shape it cannot read: that
    update is recorded and passed over, as the webhook does, and the ones after it are still handled."""
    bad = desk.fake.push(unreadable)
    assert "Waiting for a decision: 0" in desk.say("/status")
    recorded = raw.execute("SELECT update_id, kind FROM telegram_updates ORDER BY update_id").fetchall()
    assert recorded == [(bad, "other"), (bad + 1, "command")]
