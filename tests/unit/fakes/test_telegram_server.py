"""The fake Bot API itself, driven by python-telegram-bot's real Bot: other tests trust its shapes and semantics."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.request
from collections.abc import Iterator

import pytest
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, Message, ReplyParameters, Update
from telegram.error import BadRequest, Conflict
from telegram.ext import Application, CallbackQueryHandler, CommandHandler, ContextTypes

from tests.fakes.telegram_server import FakeTelegram, callback_update, message_update

TOKEN = "123456789:AAfakeTOKENfakeTOKENfakeTOKENfake12"
CHAT = 4242
KEYBOARD = InlineKeyboardMarkup([[InlineKeyboardButton("Approve", callback_data="approve:7")]])


@pytest.fixture()
def fake() -> Iterator[FakeTelegram]:
    server = FakeTelegram(TOKEN).start()
    yield server
    server.stop()


def bot(fake: FakeTelegram) -> Bot:
    return Bot(TOKEN, base_url=f"{fake.url}/bot")


async def _noop(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    pass


def test_send_stores_keyboard_and_reply_and_returns_a_full_message(fake: FakeTelegram) -> None:
    async def scenario() -> None:
        async with bot(fake) as b:
            first = await b.send_message(CHAT, "<b>Approve</b> #7?", parse_mode="HTML", reply_markup=KEYBOARD)
            second = await b.send_message(CHAT, "more", reply_parameters=ReplyParameters(first.message_id))
        assert first.text == "Approve #7?"  # Telegram parses the markup away
        assert first.reply_markup == KEYBOARD and first.chat.id == CHAT and first.from_user is not None
        assert first.from_user.username == "hq_test_bot"
        assert second.reply_to_message is not None and second.reply_to_message.message_id == first.message_id
        assert [first.message_id, second.message_id] == [1, 2] == [1, len(fake.messages)]

    asyncio.run(scenario())
    stored = fake.message(1)
    assert stored["text"] == "<b>Approve</b> #7?" and stored["parse_mode"] == "HTML"
    assert stored["reply_markup"] == {"inline_keyboard": [[{"text": "Approve", "callback_data": "approve:7"}]]}
    assert fake.message(2)["reply_to_message_id"] == 1 and stored["reply_to_message_id"] is None


def test_edit_removes_buttons_and_unknown_message_is_refused(fake: FakeTelegram) -> None:
    async def scenario() -> None:
        async with bot(fake) as b:
            sent = await b.send_message(CHAT, "Approve #7?", reply_markup=KEYBOARD)
            edited = await b.edit_message_text("Approved #7", chat_id=CHAT, message_id=sent.message_id)
            assert isinstance(edited, Message) and edited.text == "Approved #7" and edited.reply_markup is None
            with pytest.raises(BadRequest, match=r"(?i)message to edit not found"):
                await b.edit_message_text("x", chat_id=CHAT, message_id=999)

    asyncio.run(scenario())
    assert fake.message(1)["text"] == "Approved #7" and fake.message(1)["reply_markup"] is None
    assert [(e["message_id"], e["text"], e["reply_markup"]) for e in fake.edits] == [(1, "Approved #7", None)]


def test_answer_callback_query_and_webhooks(fake: FakeTelegram) -> None:
    async def scenario() -> None:
        async with bot(fake) as b:
            assert await b.answer_callback_query("q1", text="Approved", show_alert=True) is True
            assert await b.set_webhook("https://hq.example/telegram") is True
            assert (await b.get_webhook_info()).url == "https://hq.example/telegram"
            with pytest.raises(Conflict, match="webhook is active"):
                await b.get_updates(timeout=0)
            assert await b.delete_webhook() is True
            info = await b.get_webhook_info()
            assert info.url == "" and info.pending_update_count == 0 and not info.has_custom_certificate

    asyncio.run(scenario())
    assert [(a["callback_query_id"], a["text"], a["show_alert"]) for a in fake.answers] == [("q1", "Approved", True)]
    assert [w["method"] for w in fake.webhooks] == ["setWebhook", "deleteWebhook"]


def test_pushed_updates_parse_and_are_confirmed_by_offset(fake: FakeTelegram) -> None:
    async def scenario() -> None:
        async with bot(fake) as b:
            sent = await b.send_message(CHAT, "Approve #7?", reply_markup=KEYBOARD)
            press = fake.push(
                callback_update(fake, user_id=CHAT, username="boss", message_id=sent.message_id, data="approve:7")
            )
            command = fake.push(
                message_update(
                    user_id=CHAT, username="boss", chat_id=CHAT, text="/approve 7", reply_to=sent.message_id, fake=fake
                )
            )
            assert [press, command] == [1000, 1001] == fake.pending_updates()
            first, second = await b.get_updates(timeout=0)
            assert first.callback_query is not None and first.callback_query.data == "approve:7"
            assert isinstance(first.callback_query.message, Message)
            assert first.callback_query.message.text == "Approve #7?"
            assert first.callback_query.from_user.username == "boss"
            assert second.message is not None and second.message.text is not None
            assert second.message.text.startswith("/approve") and second.message.chat.type == "private"
            assert second.message.reply_to_message is not None
            assert second.message.reply_to_message.message_id == sent.message_id
            assert CommandHandler("approve", _noop).check_update(second)
            assert await b.get_updates(offset=command + 1, timeout=0) == ()
            assert fake.pending_updates() == [] and fake.confirmed == command + 1
            fake.push({**first.to_dict(), "update_id": press})  # Telegram delivers it twice
            (again,) = await b.get_updates(offset=command + 1, timeout=0)
            assert again.update_id == press
            assert await b.get_updates(offset=command + 1, timeout=0) == ()

    asyncio.run(scenario())
    assert [p["offset"] for p in fake.polls] == [None, 1002, 1002, 1002]
    assert fake.wait_for_poll(lambda p: p["update_ids"] == [1000], timeout=0)["offset"] == 1002


def test_long_poll_returns_when_an_update_is_pushed(fake: FakeTelegram) -> None:
    def push_when_polling() -> None:
        fake.wait_until_polling()
        fake.push(message_update(user_id=CHAT, chat_id=CHAT, text="hello"))

    async def scenario() -> None:
        async with bot(fake) as b:
            pusher = threading.Thread(target=push_when_polling)
            pusher.start()
            started = time.monotonic()
            (update,) = await b.get_updates(timeout=20)
            assert time.monotonic() - started < 10  # woken, not timed out
            assert update.message is not None and update.message.text == "hello"
            pusher.join()

    asyncio.run(scenario())


def test_a_second_concurrent_poll_gets_conflict(fake: FakeTelegram) -> None:
    async def scenario() -> None:
        async with bot(fake) as first, bot(fake) as second:
            waiting = asyncio.create_task(first.get_updates(timeout=20))
            await asyncio.to_thread(fake.wait_until_polling)
            with pytest.raises(Conflict, match="terminated by other getUpdates request"):
                await second.get_updates(timeout=0)
            fake.push(message_update(user_id=CHAT, chat_id=CHAT, text="/status"))
            (update,) = await waiting
            assert update.message is not None and update.message.text == "/status"

    asyncio.run(scenario())
    assert fake.conflicts == 1


def test_stopping_releases_a_waiting_poll() -> None:
    fake = FakeTelegram(TOKEN).start()
    replies: list[object] = []

    def poll() -> None:
        request = urllib.request.Request(f"{fake.url}/bot{TOKEN}/getUpdates", data=b"timeout=30&offset=5")
        with urllib.request.urlopen(request, timeout=60) as response:
            replies.append(json.load(response))

    poller = threading.Thread(target=poll)
    poller.start()
    fake.wait_until_polling()
    started = time.monotonic()
    fake.stop()
    poller.join(30)
    assert time.monotonic() - started < 10 and replies == [{"ok": True, "result": []}]
    assert fake.polls[0]["offset"] == 5 and fake.polls[0]["timeout"] == 30.0


def test_an_application_polls_handles_and_stops_cleanly(fake: FakeTelegram) -> None:
    """The whole python-telegram-bot loop: deleteWebhook, long polls, handlers, the confirming poll on stop."""
    seen: list[object] = []

    async def approve(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        seen.append(context.args)
        assert update.effective_message is not None
        await update.effective_message.reply_text("noted")

    async def press(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        assert query is not None
        seen.append(query.data)
        await query.answer("Approved")
        await query.edit_message_text("Approved #7")

    async def scenario() -> None:
        app = Application.builder().token(TOKEN).base_url(f"{fake.url}/bot").build()
        app.add_handler(CommandHandler("approve", approve))
        app.add_handler(CallbackQueryHandler(press))
        async with app:
            await app.start()
            assert app.updater is not None
            await app.updater.start_polling(poll_interval=0, timeout=10)
            await asyncio.to_thread(fake.wait_until_polling)
            sent = await app.bot.send_message(CHAT, "Approve #7?", reply_markup=KEYBOARD)
            fake.push(message_update(user_id=CHAT, username="boss", chat_id=CHAT, text="/approve 7"))
            last = fake.push(
                callback_update(fake, user_id=CHAT, username="boss", message_id=sent.message_id, data="approve:7")
            )
            await asyncio.to_thread(fake.wait_for, lambda: fake.edits, what="the button press handled")
            await app.updater.stop()
            await app.stop()
        assert fake.confirmed == last + 1  # the last poll on stop confirmed everything handled

    asyncio.run(scenario())
    assert seen == [["7"], "approve:7"] and fake.conflicts == 0
    assert [a["text"] for a in fake.answers] == ["Approved"] and fake.message(1)["reply_markup"] is None
    assert fake.texts() == ["Approved #7", "noted"] and [w["method"] for w in fake.webhooks] == ["deleteWebhook"]
