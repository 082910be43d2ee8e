"""The inline buttons on approval messages, and the signed data a press sends back.

A button's data names the action, the approval and the approval's version, with
an HMAC over all three (``HQ_TELEGRAM_CALLBACK_SECRET``, or a key derived from
the bot token). Telegram hands the data back verbatim from whoever pressed, so
it is parsed strictly and trusted only when the MAC matches; what the button
may still do is decided afterwards from the approval's row, never from the data.
Telegram allows 64 bytes of data: ``b20:<19 digits>:<9 digits>:<22>`` fits.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from config.settings import Settings

# code: (action in db.store.APPROVAL_ACTIONS, label, USD added, asks for a note)
ACTIONS: dict[str, tuple[str, str, Decimal | None, bool]] = {
    "ap": ("approve", "Approve", None, False),
    "rv": ("revise", "Revise", None, True),
    "rj": ("reject", "Reject", None, True),
    "b1": ("budget", "+$1", Decimal(1), False),
    "b5": ("budget", "+$5", Decimal(5), False),
    "b20": ("budget", "+$20", Decimal(20), False),
    "ub": ("unblock", "Unblock", None, True),
    "cx": ("cancel", "Cancel", None, True),  # cancelling cannot be undone: asking for the reason confirms it
}
KEYBOARDS = {"work": ("ap", "rv", "rj"), "budget": ("b1", "b5", "b20", "rj"), "escalation": ("ub", "cx")}
# Notifications about an approval that is still open; an expired one has nothing left to press.
OPEN_STAGES = {"half", "ninety", "passed", "escalate"}

_DATA = re.compile(r"(ap|rv|rj|b1|b5|b20|ub|cx):([1-9][0-9]{0,18}):(0|[1-9][0-9]{0,8}):([A-Za-z0-9_-]{22})")
_MAC_BYTES = 16


@dataclass(frozen=True)
class Button:
    code: str
    approval_id: int
    version: int

    @property
    def action(self) -> str:
        return ACTIONS[self.code][0]

    @property
    def label(self) -> str:
        return ACTIONS[self.code][1]

    @property
    def amount_usd(self) -> Decimal | None:
        return ACTIONS[self.code][2]

    @property
    def needs_note(self) -> bool:
        return ACTIONS[self.code][3]


def signing_key(settings: Settings) -> bytes:
    """The configured secret, or one derived from the bot token (a new token invalidates old buttons)."""
    if settings.telegram_callback_secret is not None:
        return settings.telegram_callback_secret.get_secret_value().encode()
    token = settings.telegram_bot_token.get_secret_value() if settings.telegram_bot_token else ""
    return hmac.new(token.encode(), b"heartbeat-hq telegram buttons v1", hashlib.sha256).digest()


def _mac(key: bytes, body: str) -> str:
    digest = hmac.new(key, body.encode(), hashlib.sha256).digest()[:_MAC_BYTES]
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def sign(key: bytes, button: Button) -> str:
    body = f"{button.code}:{button.approval_id}:{button.version}"
    return f"{body}:{_mac(key, body)}"


def verify(key: bytes, data: object) -> Button | None:
    """The button ``data`` names, if we signed it; None for anything forged, altered or malformed."""
    if not isinstance(data, str):
        return None
    match = _DATA.fullmatch(data)
    if match is None:
        return None
    code, approval_id, version, mac = match.groups()
    if not hmac.compare_digest(mac, _mac(key, f"{code}:{approval_id}:{version}")):
        return None
    return Button(code, int(approval_id), int(version))


def keyboard(key: bytes, event: str, payload: dict[str, Any]) -> list[list[tuple[str, str]]]:
    """Rows of (label, data) for a notification about an open approval; [] for any other."""
    approval_id, kind, version = (payload.get(f"approval_{name}") for name in ("id", "kind", "version"))
    if not (isinstance(approval_id, int) and isinstance(version, int) and isinstance(kind, str)):
        return []
    if event == "approval_deadline" and payload.get("stage") not in OPEN_STAGES:
        return []
    return approval_keyboard(key, approval_id, kind, version)


def approval_keyboard(key: bytes, approval_id: int, kind: str, version: int) -> list[list[tuple[str, str]]]:
    buttons = [Button(code, approval_id, version) for code in KEYBOARDS.get(kind, ())]
    return [[(button.label, sign(key, button)) for button in buttons]] if buttons else []


def inline_markup(rows: list[list[tuple[str, str]]]) -> Any:
    """python-telegram-bot's InlineKeyboardMarkup for ``rows`` of (label, data); None when there are none."""
    if not rows:
        return None
    from telegram import InlineKeyboardButton, InlineKeyboardMarkup  # loads only when there are buttons to send

    return InlineKeyboardMarkup(
        [[InlineKeyboardButton(label, callback_data=data) for label, data in row] for row in rows]
    )
