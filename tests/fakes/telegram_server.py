"""A fake Telegram Bot API on 127.0.0.1, for driving python-telegram-bot itself in tests.

It speaks the Bot API: POST /bot<token>/<method> with form or JSON bodies, and
``{"ok": ..., "result"|"error_code"/"description"/"parameters"}`` replies with
the matching HTTP status. Tests script failures (429 with retry_after, 5xx,
403 bot blocked, 400 chat not found), outages (502s, or the host refusing
connections), and a hang on a chosen message.

Incoming traffic goes the other way: tests ``push`` updates (built with
``callback_update``/``message_update`` below, shaped as Telegram sends them) and
the bot under test fetches them with ``getUpdates``, long-polling and
confirming by offset as with the real service, including the 409 Conflict a
second concurrent poller gets.
"""

from __future__ import annotations

import html
import itertools
import json
import re
import select
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar
from urllib.parse import parse_qs

BOT_ID = 777000111
BOT_USER: dict[str, Any] = {"id": BOT_ID, "is_bot": True, "first_name": "HQ", "username": "hq_test_bot"}
FIRST_UPDATE_ID = 1000
FIRST_INCOMING_MESSAGE_ID = 500000  # far above the bot's own message ids, so the two never collide
DEFAULT_UPDATE_LIMIT = 100
# The waits below guard progress, not speed: generous, so a slow machine never fails a correct test.
PROGRESS_TIMEOUT = 30.0
HANGUP_CHECK_SECONDS = 0.05  # how often a parked long poll looks whether its client has gone
POLL_CONFLICT = "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"
WEBHOOK_CONFLICT = (
    "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first"
)
NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are exactly the same "
    "as a content and reply markup of the current message"
)

T = TypeVar("T")
Reply = tuple[int, dict[str, Any]]

_callback_query_ids = itertools.count(4_000_000_000_000_001)
_incoming_message_ids = itertools.count(FIRST_INCOMING_MESSAGE_ID)


@dataclass
class Failure:
    status: int
    description: str
    retry_after: int | None = None


def _error(status: int, description: str) -> Reply:
    return status, {"ok": False, "error_code": status, "description": description}


def _ok(result: Any) -> Reply:
    return 200, {"ok": True, "result": result}


def _decoded(value: Any) -> Any:
    """A structured parameter as sent: form bodies carry dicts and lists as JSON strings, JSON bodies as-is."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _int(value: Any) -> int | None:
    if value is None or value == "":
        return None
    return int(value)


def _flag(value: Any) -> bool:
    return value is True or str(value).lower() in ("true", "1")


def _chat_id(chat: str) -> int:
    """A numeric chat as Telegram reports it; ``@username`` chats get a stand-in id."""
    return int(chat) if chat.lstrip("-").isdigit() else 1


def _chat(chat_id: int) -> dict[str, Any]:
    return {"id": chat_id, "type": "private" if chat_id > 0 else "group"}


def _visible_text(text: str, parse_mode: Any) -> str:
    """What Telegram hands back as ``text``: HTML markup is parsed away (entities are not reproduced here)."""
    if str(parse_mode).upper() != "HTML":
        return text
    return html.unescape(re.sub(r"<[^>]*>", "", text))


def _hung_up(connection: socket.socket) -> bool:
    """Whether the client closed this connection (EOF waiting to be read), without consuming anything."""
    try:
        readable, _, _ = select.select([connection], [], [], 0)
        return bool(readable) and connection.recv(1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):
        return True


class FakeTelegram:
    def __init__(self, token: str) -> None:
        self.token = token
        self.messages: list[dict[str, Any]] = []  # every sendMessage the fake accepted
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.failures: deque[Failure] = deque()  # popped by sendMessage only
        self.outage_until = 0.0
        self.blocked_chats: set[str] = set()
        self.hang_on_text: str | None = None
        self.release = threading.Event()
        self.hung = threading.Event()
        # Re-entrant, so a ``wait_for`` check may call the helpers below while the condition holds it.
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)  # notified on every request the fake records
        self.edits: list[dict[str, Any]] = []
        self.answers: list[dict[str, Any]] = []
        self.webhooks: list[dict[str, Any]] = []  # setWebhook/deleteWebhook params, with "method"
        self.webhook_url = ""
        self.refuse_unmodified_edits = False  # Telegram's 400 for an edit that changes nothing; opt-in
        self.polls: list[dict[str, Any]] = []  # every getUpdates: offset, limit, timeout, at, update_ids
        self.conflicts = 0  # getUpdates answered 409
        self.confirmed = 0  # the highest offset confirmed: updates below it are gone
        self._updates: dict[int, dict[str, Any]] = {}
        self._redelivered: dict[int, bool] = {}  # re-pushed confirmed update -> handed out since
        self._next_update_id = FIRST_UPDATE_ID
        self._pollers: list[socket.socket] = []  # connections parked in a long poll
        self._closed = False
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        assert isinstance(host, str)  # an AF_INET server's; typeshed allows bytes for any address family
        return f"http://{host}:{port}"

    def start(self) -> FakeTelegram:
        self.thread.start()
        return self

    def stop(self) -> None:
        self._close()
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    def down(self) -> None:
        """The host goes away: connections are refused until ``up()``; a waiting long poll returns empty."""
        self._close()
        self.address = self.server.server_address[:2]
        self.server.shutdown()
        self.server.server_close()

    def up(self) -> None:
        """Back on the same address, with everything it had accepted before."""
        with self.changed:
            self._closed = False
        self.server = ThreadingHTTPServer(self.address, self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _close(self) -> None:
        with self.changed:
            self._closed = True
            self.changed.notify_all()

    def fail(self, *failures: Failure) -> None:
        with self.lock:
            self.failures.extend(failures)

    def outage(self, seconds: float) -> None:
        self.outage_until = time.monotonic() + seconds

    def texts(self) -> list[str]:
        return [m["text"] for m in self.messages]

    def message(self, message_id: int) -> dict[str, Any]:
        """The stored sendMessage entry, as it stands after any edits."""
        with self.lock:
            return dict(self._stored(message_id))

    def message_object(self, message_id: int) -> dict[str, Any]:
        """The stored message as a Bot API Message, as Telegram would include it in a reply or an update."""
        with self.lock:
            return self._message_json(self._stored(message_id))

    def _stored(self, message_id: int) -> dict[str, Any]:
        for entry in self.messages:
            if entry["message_id"] == message_id:
                return entry
        raise KeyError(f"the fake Telegram sent no message {message_id}")

    def _message_json(self, entry: dict[str, Any], *, nested: bool = False) -> dict[str, Any]:
        message: dict[str, Any] = {
            "message_id": entry["message_id"],
            "from": dict(BOT_USER),
            "date": entry["date"],
            "chat": _chat(_chat_id(entry["chat_id"])),
            "text": _visible_text(entry["text"], entry["parse_mode"]),
        }
        if entry.get("edit_date") is not None:
            message["edit_date"] = entry["edit_date"]
        markup = entry.get("reply_markup")
        if isinstance(markup, dict) and "inline_keyboard" in markup:  # other keyboards are not echoed back
            message["reply_markup"] = markup
        reply_to = entry.get("reply_to_message_id")
        if not nested and reply_to is not None:
            replied = next((m for m in self.messages if m["message_id"] == reply_to), None)
            if replied is not None:
                message["reply_to_message"] = self._message_json(replied, nested=True)
        return message

    # Incoming updates.

    def push(self, update: dict[str, Any]) -> int:
        """Queue an update for getUpdates; an already confirmed update_id is delivered again (a duplicate)."""
        with self.changed:
            update = dict(update)
            given = _int(update.get("update_id"))
            if given is None:
                update_id = self._next_update_id
            else:
                update_id = given
                if update_id < self.confirmed:
                    self._redelivered[update_id] = False
            self._next_update_id = max(self._next_update_id, update_id + 1)
            update["update_id"] = update_id
            self._updates[update_id] = update
            self.changed.notify_all()
            return update_id

    def pending_updates(self) -> list[int]:
        """Ids queued and not yet confirmed, in delivery order."""
        with self.lock:
            return sorted(self._updates)

    @property
    def waiting(self) -> int:
        """How many getUpdates are parked in a long poll right now."""
        with self.lock:
            return len(self._pollers)

    def wait_for(
        self, check: Callable[[], T | None], *, timeout: float = PROGRESS_TIMEOUT, what: str = "a change"
    ) -> T:
        """Block until ``check()`` is truthy (re-checked on every request the fake records) and return it."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                result = check()
                if result:
                    return result
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"fake Telegram: no {what} within {timeout:g} s")
                self.changed.wait(remaining)

    def wait_for_poll(
        self,
        predicate: Callable[[dict[str, Any]], bool] | None = None,
        *,
        since: int = 0,
        timeout: float = PROGRESS_TIMEOUT,
    ) -> dict[str, Any]:
        """The first getUpdates at ``polls[since:]`` matching ``predicate``: proof the poller is alive."""

        def found() -> dict[str, Any] | None:
            return next((p for p in self.polls[since:] if predicate is None or predicate(p)), None)

        return self.wait_for(found, timeout=timeout, what="matching getUpdates")

    def wait_until_polling(self, *, timeout: float = PROGRESS_TIMEOUT) -> None:
        """Until a getUpdates is parked in a long poll, so a push now reaches it without a new request."""
        self.wait_for(lambda: self._pollers, timeout=timeout, what="getUpdates waiting in a long poll")

    def wait_for_confirmed(self, update_id: int, *, timeout: float = PROGRESS_TIMEOUT) -> None:
        """Until the bot confirms ``update_id`` (polls with a higher offset), i.e. it has taken it for good."""
        self.wait_for(lambda: self.confirmed > update_id, timeout=timeout, what=f"confirmation of update {update_id}")

    def _confirm(self, offset: int | None) -> None:
        """Telegram's offset rule: updates below it are confirmed and forgotten; negative keeps the last -offset."""
        if not offset:
            return
        if offset < 0:
            queued = sorted(self._updates)
            offset = queued[offset] if len(queued) >= -offset else (queued[0] if queued else self.confirmed)
        self.confirmed = max(self.confirmed, offset)
        for update_id in [u for u in self._updates if u < offset]:
            if self._redelivered.get(update_id) is False:  # a duplicate not yet handed out
                continue
            del self._updates[update_id]
            self._redelivered.pop(update_id, None)

    def _ready(self, allowed: list[str] | None, limit: int) -> list[dict[str, Any]]:
        ready = [self._updates[u] for u in sorted(self._updates)]
        if allowed:
            ready = [u for u in ready if any(kind in u for kind in allowed)]
        return ready[:limit]

    # Bot API methods.

    def _get_updates(self, params: dict[str, Any], connection: socket.socket) -> Reply:
        """Long-poll; a second live poller is refused 409, but one whose client hung up no longer counts.

        python-telegram-bot cancels its parked poll on stop and then polls once more to confirm the
        last offset: that call must not meet a conflict with the abandoned one.
        """
        offset = _int(params.get("offset"))
        limit = min(max(_int(params.get("limit")) or DEFAULT_UPDATE_LIMIT, 1), DEFAULT_UPDATE_LIMIT)
        timeout = float(params.get("timeout") or 0)
        allowed = _decoded(params.get("allowed_updates"))
        with self.changed:
            poll: dict[str, Any] = {
                "offset": offset,
                "limit": limit,
                "timeout": timeout,
                "allowed_updates": allowed,
                "at": time.monotonic(),
                "update_ids": None,  # what it returned; stays None when refused
                "abandoned": False,  # the client hung up while it waited
            }
            self.polls.append(poll)
            self.changed.notify_all()
            if self.webhook_url:
                self.conflicts += 1
                return _error(409, WEBHOOK_CONFLICT)
            self._pollers = [c for c in self._pollers if not _hung_up(c)]
            if self._pollers:
                self.conflicts += 1
                return _error(409, POLL_CONFLICT)
            self._confirm(offset)
            deadline = time.monotonic() + timeout
            self._pollers.append(connection)
            try:
                while True:
                    ready = self._ready(allowed if isinstance(allowed, list) else None, limit)
                    remaining = deadline - time.monotonic()
                    if ready or self._closed or remaining <= 0:
                        break
                    self.changed.wait(min(remaining, HANGUP_CHECK_SECONDS))
                    if _hung_up(connection):
                        poll["abandoned"] = True
                        return _ok([])  # nobody reads it; nothing counts as handed out
            finally:
                if connection in self._pollers:
                    self._pollers.remove(connection)
            for update in ready:
                if update["update_id"] in self._redelivered:
                    self._redelivered[update["update_id"]] = True
            poll["update_ids"] = [u["update_id"] for u in ready]
            self.changed.notify_all()
            return _ok([dict(u) for u in ready])

    def _send_message(self, params: dict[str, Any]) -> Reply | None:
        """None when the reply is the stored message (sent by the handler after a possible hang)."""
        with self.lock:
            failure = self.failures.popleft() if self.failures else None
        if failure is not None:
            status, body = _error(failure.status, failure.description)
            if failure.retry_after is not None:
                body["parameters"] = {"retry_after": failure.retry_after}
            return status, body
        chat = str(params.get("chat_id"))
        if chat in self.blocked_chats:
            return _error(403, "Forbidden: bot was blocked by the user")
        if not chat.lstrip("-").isdigit() and not chat.startswith("@"):
            return _error(400, "Bad Request: chat not found")
        reply_to = _int(params.get("reply_to_message_id"))
        reply_parameters = _decoded(params.get("reply_parameters"))
        if reply_to is None and isinstance(reply_parameters, dict):
            reply_to = _int(reply_parameters.get("message_id"))
        markup = _decoded(params.get("reply_markup"))
        with self.changed:
            self.messages.append(
                {
                    "chat_id": chat,
                    "text": str(params.get("text", "")),
                    "parse_mode": params.get("parse_mode"),
                    "at": time.monotonic(),
                    "message_id": len(self.messages) + 1,  # unique: entries are only ever appended
                    "date": int(time.time()),
                    "reply_markup": markup if isinstance(markup, dict) else None,
                    "reply_to_message_id": reply_to,
                    "edit_date": None,
                }
            )
            self.changed.notify_all()
        return None

    def _edit_message_text(self, params: dict[str, Any]) -> Reply:
        chat = str(params.get("chat_id"))
        try:
            message_id = _int(params.get("message_id"))
        except ValueError:
            message_id = None
        markup = _decoded(params.get("reply_markup"))
        edit: dict[str, Any] = {
            "chat_id": chat,
            "message_id": message_id,
            "text": str(params.get("text", "")),
            "parse_mode": params.get("parse_mode"),
            "reply_markup": markup if isinstance(markup, dict) else None,
        }
        with self.changed:
            entry = next(
                (m for m in self.messages if m["message_id"] == message_id and m["chat_id"] == chat),
                None,
            )
            if entry is None:
                return _error(400, "Bad Request: message to edit not found")
            unchanged = (entry["text"], entry["reply_markup"]) == (edit["text"], edit["reply_markup"])
            if self.refuse_unmodified_edits and unchanged:
                return _error(400, NOT_MODIFIED)
            entry.update(
                text=edit["text"],
                parse_mode=edit["parse_mode"],
                reply_markup=edit["reply_markup"],  # absent: the buttons are removed
                edit_date=int(time.time()),
            )
            self.edits.append({**edit, "at": time.monotonic()})
            self.changed.notify_all()
            return _ok(self._message_json(entry))

    def _answer_callback_query(self, params: dict[str, Any]) -> Reply:
        with self.changed:
            self.answers.append(
                {
                    "callback_query_id": str(params.get("callback_query_id")),
                    "text": params.get("text"),
                    "show_alert": _flag(params.get("show_alert")),
                    "at": time.monotonic(),
                }
            )
            self.changed.notify_all()
        return _ok(True)

    def _set_webhook(self, params: dict[str, Any]) -> Reply:
        with self.changed:
            self.webhooks.append({"method": "setWebhook", **params})
            self.webhook_url = str(params.get("url") or "")
            self.changed.notify_all()
        return _ok(True)

    def _delete_webhook(self, params: dict[str, Any]) -> Reply:
        with self.changed:
            self.webhooks.append({"method": "deleteWebhook", **params})
            self.webhook_url = ""
            if _flag(params.get("drop_pending_updates")) and self._updates:
                self._redelivered.clear()
                self._confirm(max(self._updates) + 1)
            self.changed.notify_all()
        return _ok(True)

    def _get_webhook_info(self, params: dict[str, Any]) -> Reply:
        with self.lock:
            return _ok(
                {"url": self.webhook_url, "has_custom_certificate": False, "pending_update_count": len(self._updates)}
            )

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self
        methods: dict[str, Callable[[dict[str, Any]], Reply]] = {
            "getMe": lambda params: _ok(dict(BOT_USER)),
            "editMessageText": fake._edit_message_text,
            "answerCallbackQuery": fake._answer_callback_query,
            "setWebhook": fake._set_webhook,
            "deleteWebhook": fake._delete_webhook,
            "getWebhookInfo": fake._get_webhook_info,
        }

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                raw = self.rfile.read(length)
                if "json" in (self.headers.get("content-type") or ""):
                    params = json.loads(raw or b"{}")
                else:
                    params = {k: v[0] for k, v in parse_qs(raw.decode(), keep_blank_values=True).items()}
                prefix, _, method = self.path.lstrip("/").partition("/")
                with fake.lock:
                    fake.requests.append((method, params))
                if prefix != f"bot{fake.token}":
                    self._reply(*_error(401, "Unauthorized"))
                    return
                if time.monotonic() < fake.outage_until:
                    self._reply(*_error(502, "Bad Gateway"))
                    return
                if method == "getUpdates":
                    self._reply(*fake._get_updates(params, self.connection))
                    return
                if method in methods:
                    self._reply(*methods[method](params))
                    return
                if method != "sendMessage":
                    self._reply(*_error(404, "Not Found: method not found"))
                    return
                refused = fake._send_message(params)
                if refused is not None:
                    self._reply(*refused)
                    return
                with fake.lock:
                    entry = fake.messages[-1]
                    sent = fake._message_json(entry)
                if fake.hang_on_text is not None and fake.hang_on_text in entry["text"]:
                    fake.hung.set()
                    fake.release.wait(60)  # the sender is killed while waiting for this reply
                self._reply(*_ok(sent))

            def _reply(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        return Handler


# Update builders: dicts exactly as Telegram sends them, so python-telegram-bot parses them as its own.


def user(user_id: int, username: str | None = None) -> dict[str, Any]:
    """A human Telegram user."""
    person: dict[str, Any] = {"id": user_id, "is_bot": False, "first_name": username or f"user{user_id}"}
    if username is not None:
        person["username"] = username
    return person


def callback_update(
    fake: FakeTelegram,
    *,
    user_id: int,
    username: str | None = None,
    message_id: int,
    data: str,
    chat_id: int | None = None,
) -> dict[str, Any]:
    """A press of an inline button on the bot's stored message ``message_id``, as it stands now."""
    message = fake.message_object(message_id)
    if chat_id is not None:
        message["chat"] = _chat(chat_id)
    return {
        "callback_query": {
            "id": str(next(_callback_query_ids)),
            "from": user(user_id, username),
            "message": message,
            "chat_instance": str(-(abs(message["chat"]["id"]) * 1000 + 7)),  # stable per chat, as Telegram's
            "data": data,
        }
    }


def message_update(
    *,
    user_id: int,
    username: str | None = None,
    chat_id: int,
    text: str,
    reply_to: int | None = None,
    fake: FakeTelegram | None = None,
) -> dict[str, Any]:
    """A text someone sends the bot; a leading /command gets its bot_command entity, as CommandHandler needs."""
    chat = _chat(chat_id)
    sender = user(user_id, username)
    if chat["type"] == "private":
        chat.update({k: v for k, v in sender.items() if k in ("first_name", "username")})
    message: dict[str, Any] = {
        "message_id": next(_incoming_message_ids),
        "from": sender,
        "chat": chat,
        "date": int(time.time()),
        "text": text,
    }
    if text.startswith("/"):
        # As Telegram bounds it: letters, digits and _ after the slash, and an optional @botname.
        command = re.match(r"/[A-Za-z0-9_]*(?:@[A-Za-z0-9_]+)?", text)
        assert command is not None
        message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(command.group())}]
    if reply_to is not None:
        if fake is None:
            raise ValueError("message_update(reply_to=...) needs the fake that holds the replied-to message")
        message["reply_to_message"] = fake.message_object(reply_to)
    return {"message": message}
