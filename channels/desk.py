"""The decision desk: what each Telegram update does, as python-telegram-bot handlers.

Every update is handled in one transaction (``_handle``): the offset moves past
it and it is recorded (db/store/telegram.py), then, in a savepoint, it decides
through the CLI's own functions (db/store/approvals.py) as ``telegram:<user
id>``; whatever the outcome, the audit row says it. Only after the commit does
the desk talk back (answer the button, edit the message, send the note prompt
or the reply): a crash in between loses a courtesy, never a decision, and
pressing a decided approval's button again edits its message then.

Who may do what: updates from chats other than ``TELEGRAM_CHAT_ID`` are
ignored; anyone in that chat may read (/status, /approvals, /blocked, /issue,
/help); only ``HQ_TELEGRAM_APPROVERS`` may decide. Button data is trusted only
when its MAC verifies (channels/buttons.py), and what it may still decide
comes from the approval's row.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from html import escape, unescape
from typing import TYPE_CHECKING, Any

from psycopg.errors import LockNotAvailable, QueryCanceled
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from channels import replies
from channels.buttons import Button, approval_keyboard, inline_markup, signing_key, verify
from channels.messages import TELEGRAM_LIMIT
from config.errors import UsageError, describe
from config.inputs import parse_id, parse_usd
from config.log import get_logger
from config.settings import Settings
from db import store
from db.engine import connection
from db.store import StaleApproval
from db.store import telegram as desk_rows

if TYPE_CHECKING:
    from telegram import Chat, Update, User
    from telegram.ext import BaseHandler, ContextTypes

WORKFLOW = "telegram"
READS = ("help", "start", "status", "approvals", "blocked", "issue")
DECIDES = ("approve", "reject", "budget")
USAGE = {
    "issue": "usage: /issue N",
    "approve": "usage: /approve N [note]",
    "reject": "usage: /reject N reason",
    "budget": "usage: /budget N USD",
}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
PROMPT_MARK = "reply to this message with your note"

log = get_logger(__name__)


class NotAllowed(Exception):
    """The sender is not an approver: nothing is decided, the attempt is audited."""


@dataclass
class Verdict:
    """What one update came to: the audit row's fields and what to say back."""

    actor: str
    who: str
    outcome: str = "ignored"
    action: str | None = None
    approval_id: int | None = None
    issue_id: int | None = None
    detail: str = ""
    answer: str = ""  # the one line said back, plain text (a button's toast, a refusal)
    html: str = ""  # a command's reply, when it is more than one plain line
    edit: str | None = None  # the approval message's new last line (decided: no buttons left)
    ask: store.ApprovalRecord | None = None  # a note is needed: send the prompt for this approval
    buttons: list[list[tuple[str, str]]] = field(default_factory=list)

    @property
    def signature(self) -> str:
        return f"{self.who} via Telegram"


def display_name(user: User | None) -> str:
    """``@alice`` (or the name shown), without control characters; what the notes and edits name."""
    if user is None:
        return "someone"
    name = f"@{user.username}" if user.username else user.full_name or str(user.id)
    return _CONTROL.sub("", clean(name))[:64]


class Desk:
    def __init__(self, settings: Settings, engine: Engine, owner: str) -> None:
        self.settings = settings
        self.engine = engine
        self.owner = owner
        self.key = signing_key(settings)
        self.approvers = frozenset(settings.telegram_approvers)
        self.handled: int | None = None  # the last update committed; the poller checks it after each
        self.last_error: BaseException | None = None  # why the last update that failed did

    def handlers(self) -> list[BaseHandler[Any, Any, Any]]:
        from telegram import Update
        from telegram.ext import CallbackQueryHandler, CommandHandler, MessageHandler, TypeHandler, filters

        return [
            CallbackQueryHandler(self.on_button),
            CommandHandler((*READS, *DECIDES), self.on_command, filters=~filters.FORWARDED),
            MessageHandler(filters.REPLY & filters.TEXT, self.on_reply),
            TypeHandler(Update, self.on_other),
        ]

    # --- one transaction per update -----------------------------------------------------
    def _in_chat(self, chat: Chat | None) -> bool:
        wanted = self.settings.telegram_chat_id or ""
        if chat is None:
            return False
        if wanted.startswith("@"):
            return (chat.username or "").lower() == wanted[1:].lower()
        return str(chat.id) == wanted

    def require_approver(self, user: User | None) -> None:
        if user is None or user.id not in self.approvers:
            raise NotAllowed

    def _handle(self, update: Update, kind: str, decide: Callable[[Connection, Verdict], None]) -> Verdict | None:
        """Claim, decide, audit, commit; None when this update was handled before."""
        user, chat = update.effective_user, update.effective_chat
        verdict = Verdict(actor=f"telegram:{user.id}" if user else "system:telegram", who=display_name(user))
        with connection(verdict.actor, workflow=WORKFLOW, engine=self.engine) as db:
            # A worker may hold the issue for a moment; the person should hear back soon all the same.
            db.execute(text("SELECT set_config('lock_timeout', '5000ms', true)"))
            if not self._claim(db, update, kind, username=verdict.who if user else None):
                self.handled = update.update_id
                return None
            if self._in_chat(chat):
                self._decide(db, verdict, decide)
            else:
                verdict.detail = "another chat"
            desk_rows.settle_update(
                db,
                update.update_id,
                verdict.outcome,
                action=verdict.action,
                approval_id=verdict.approval_id,
                issue_id=verdict.issue_id,
                detail=verdict.detail or verdict.answer or (verdict.action or ""),
            )
        self.handled = update.update_id
        log.info(
            "telegram.update",
            update=update.update_id,
            kind=kind,
            outcome=verdict.outcome,
            action=verdict.action,
            issue_id=verdict.issue_id,
            actor=verdict.actor,
            workflow=WORKFLOW,
        )
        return verdict

    def _claim(self, db: Connection, update: Update, kind: str, *, username: str | None) -> bool:
        """Move the offset past ``update`` and record it (db/store/telegram.py); False if it was handled before."""
        user, chat = update.effective_user, update.effective_chat
        return desk_rows.claim_update(
            db,
            update.update_id,
            owner=self.owner,
            kind=kind,
            chat_id=chat.id if chat else None,
            user_id=user.id if user else None,
            username=username,
        )

    @staticmethod
    def _decide(db: Connection, verdict: Verdict, decide: Callable[[Connection, Verdict], None]) -> None:
        """Run ``decide`` in a savepoint: a refused decision leaves no half of itself behind."""
        try:
            with db.begin_nested():
                decide(db, verdict)
        except NotAllowed:
            verdict.outcome, verdict.answer = "not_allowed", "Not allowed: you are not an approver."
        except StaleApproval as stale:
            verdict.outcome, verdict.answer = "stale", replies.already(stale.approval)
            if stale.approval.status != "pending":
                verdict.edit = verdict.answer
        except UsageError as error:  # not found, wrong status, bad note: the CLI's own refusals
            verdict.outcome, verdict.answer = "refused", str(error).splitlines()[0][:300]
        except DBAPIError as error:  # the savepoint is rolled back; a busy issue is worth saying so
            if not isinstance(error.orig, LockNotAvailable | QueryCanceled):
                raise
            verdict.outcome, verdict.answer = "refused", "The issue is busy (a worker holds it); try again in a moment."

    def _decided(self, verdict: Verdict, action: str, decision: store.Decision, amount: Decimal | None = None) -> None:
        verdict.outcome = "decided"
        verdict.issue_id = decision.issue_id
        verdict.edit = replies.outcome(action, decision, verdict.who, amount)
        verdict.answer = unescape(re.sub(r"<[^>]+>", "", verdict.edit))

    def _note(self, note: str | None, verdict: Verdict, default: str) -> str:
        """The person's words (or ``default``), signed with who said them from where."""
        words = clean(note).strip() or default
        return f"{words}\n— {verdict.signature}"

    # --- buttons ----------------------------------------------------------------------
    async def on_button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        assert query is not None
        button = verify(self.key, query.data)

        def decide(db: Connection, verdict: Verdict) -> None:
            if button is None:
                verdict.outcome, verdict.answer = "invalid", "Not valid: this button was not made by HQ."
                return
            verdict.action, verdict.approval_id = button.action, button.approval_id
            self.require_approver(update.effective_user)
            if button.needs_note:
                self._ask(db, verdict, button)
                return
            decision = store.decide_approval(
                db,
                button.approval_id,
                version=button.version,
                action=button.action,
                actor=verdict.actor,
                note=self._note(None, verdict, "Approved") if button.action == "approve" else verdict.signature,
                amount_usd=button.amount_usd,
            )
            self._decided(verdict, button.action, decision, button.amount_usd)

        verdict = self._handle(update, "button", decide)
        if verdict is None:
            await _quietly(query.answer())
            return
        if verdict.outcome == "ignored":
            return
        await _quietly(query.answer(verdict.answer[:200], show_alert=verdict.outcome == "not_allowed"))
        message = query.message
        if verdict.edit is not None and message is not None and hasattr(message, "text_html"):
            await _quietly(query.edit_message_text(with_outcome(message.text_html, verdict.edit), parse_mode="HTML"))
        if verdict.ask is not None and button is not None and message is not None:
            await self._send_prompt(context, update, verdict.ask, button, message)

    def _ask(self, db: Connection, verdict: Verdict, button: Button) -> None:
        """Revise, Reject, Unblock and Cancel need words: check the approval can still take them, then ask."""
        approval = store.current_approval(db, button.approval_id, version=button.version)
        verdict.outcome, verdict.issue_id, verdict.ask = "asked", approval.issue_id, approval
        verdict.answer = f"Reply to the next message with your note to {button.label.lower()} #{approval.issue_id}."

    async def _send_prompt(
        self,
        context: ContextTypes.DEFAULT_TYPE,
        update: Update,
        approval: store.ApprovalRecord,
        button: Button,
        origin: Any,
    ) -> None:
        from telegram import ForceReply, ReplyParameters
        from telegram.error import TelegramError

        user = update.effective_user
        # A mention by id reaches a person without a username too: selective ForceReply asks only them.
        mention = f'<a href="tg://user?id={user.id}">{escape(display_name(user))}</a>, ' if user else ""
        try:
            prompt = await context.bot.send_message(
                chat_id=origin.chat.id,
                text=f"{mention}{PROMPT_MARK} to <b>{escape(button.label.lower())}</b> #{approval.issue_id}.",
                parse_mode="HTML",
                reply_markup=ForceReply(selective=True, input_field_placeholder="your note"),
                reply_parameters=ReplyParameters(origin.message_id, allow_sending_without_reply=True),
            )
        except TelegramError as error:
            log.warning("telegram.prompt_failed", error=str(error), issue_id=approval.issue_id, workflow=WORKFLOW)
            return
        with connection(f"telegram:{user.id if user else 0}", workflow=WORKFLOW, engine=self.engine) as db:
            desk_rows.add_prompt(
                db,
                chat_id=prompt.chat.id,
                message_id=prompt.message_id,
                approval=approval,
                action=button.action,
                asked_by=user.id if user else 0,
                origin_message_id=origin.message_id,
                origin_text=getattr(origin, "text_html", None),
            )

    # --- the note, as a reply to the prompt ----------------------------------------------
    async def on_reply(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.message
        assert message is not None and message.reply_to_message is not None
        replied = message.reply_to_message
        taken: list[desk_rows.Prompt] = []

        def decide(db: Connection, verdict: Verdict) -> None:
            prompt = desk_rows.use_prompt(db, chat_id=message.chat.id, message_id=replied.message_id)
            if prompt is None:
                ours = replied.from_user is not None and replied.from_user.id == context.bot.id
                if ours and PROMPT_MARK in (replied.text or ""):
                    self.require_approver(update.effective_user)
                    raise UsageError(
                        "that question is no longer open (answered already, or lost); press the button again"
                    )
                return  # people talking to each other: not ours
            verdict.action, verdict.approval_id = prompt.action, prompt.approval_id
            self.require_approver(update.effective_user)
            if not clean(message.text).strip():
                raise UsageError("the note must not be empty")
            decision = store.decide_approval(
                db,
                prompt.approval_id,
                version=prompt.version,
                action=prompt.action,
                actor=verdict.actor,
                note=self._note(message.text, verdict, ""),
            )
            self._decided(verdict, prompt.action, decision)
            taken.append(prompt)

        verdict = self._handle(update, "reply", decide)
        if verdict is None or verdict.outcome == "ignored":
            return
        await _quietly(message.reply_text(verdict.edit or escape(verdict.answer), parse_mode="HTML"))
        if taken and taken[0].origin_message_id is not None and verdict.edit is not None:
            await _quietly(
                context.bot.edit_message_text(
                    with_outcome(taken[0].origin_text or "", verdict.edit),
                    chat_id=message.chat.id,
                    message_id=taken[0].origin_message_id,
                    parse_mode="HTML",
                )
            )

    # --- commands -----------------------------------------------------------------------
    async def on_command(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        assert message is not None and message.text is not None and message.entities
        name = command_name(message.text, message.entities[0].length)
        args = list(context.args or [])

        def decide(db: Connection, verdict: Verdict) -> None:
            verdict.action = name
            if name not in READS:  # deny by default: only what reads is open to the chat
                self.require_approver(update.effective_user)
            self._command(db, verdict, name, args)

        verdict = self._handle(update, "command", decide)
        if verdict is None or verdict.outcome == "ignored":
            return
        markup = inline_markup(verdict.buttons)
        body = (verdict.edit if verdict.outcome == "decided" else verdict.html) or escape(verdict.answer)
        await _quietly(message.reply_text(body, parse_mode="HTML", reply_markup=markup))

    def _command(self, db: Connection, verdict: Verdict, name: str, args: list[str]) -> None:
        verdict.outcome = "answered"
        if name in ("help", "start"):
            verdict.html = replies.HELP
            return
        if name == "status":
            verdict.html = replies.status(db)
            return
        if name == "approvals":
            verdict.html = replies.approvals(db)
            return
        if name == "blocked":
            verdict.html = replies.blocked(db)
            return
        issue_id = _issue_argument(args, name)
        verdict.issue_id = issue_id
        if name == "issue":
            approval = desk_rows.approval_of_issue(db, issue_id)
            verdict.html = replies.issue(db, issue_id, approval)
            if approval is not None and self.approvers:
                verdict.buttons = approval_keyboard(self.key, approval.id, approval.kind, approval.version)
            return
        rest = clean(" ".join(args[1:])).strip()
        if name == "approve":
            decision = store.approve(db, issue_id, actor=verdict.actor, note=self._note(rest, verdict, "Approved"))
            self._decided(verdict, name, decision)
        elif name == "reject":
            if not rest:
                raise UsageError(USAGE["reject"])
            decision = store.reject(db, issue_id, actor=verdict.actor, reason=self._note(rest, verdict, ""))
            self._decided(verdict, name, decision)
        elif name == "budget":
            if len(args) != 2:
                raise UsageError(USAGE["budget"])
            try:
                amount = parse_usd(args[1].removeprefix("$"))
            except ValueError as error:
                raise UsageError(str(error)) from None
            decision = store.add_budget(db, issue_id, actor=verdict.actor, amount_usd=amount, note=verdict.signature)
            self._decided(verdict, "budget", decision, amount)
        else:  # pragma: no cover - CommandHandler only passes the commands it was given
            raise UsageError(f"unknown command /{name}; /help lists them")

    # --- everything else ------------------------------------------------------------------
    async def on_other(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Advance past anything no other handler took, so the offset never sticks on it."""
        self._handle(update, "other", lambda db, verdict: None)

    def give_up(self, update: Update, why: str) -> None:
        """Record an update that kept failing for a reason other than an outage as ``failed`` and pass it:
        one update the desk cannot handle must not stop every decision after it."""
        user = update.effective_user
        with connection(
            f"telegram:{user.id}" if user else "system:telegram", workflow=WORKFLOW, engine=self.engine
        ) as db:
            # No username: nothing the update chose, since that may be what made it fail.
            if self._claim(db, update, "other", username=None):
                desk_rows.settle_update(db, update.update_id, "failed", detail=why)
        self.handled = update.update_id
        log.error("telegram.update_skipped", update=update.update_id, error=why, workflow=WORKFLOW)

    async def on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        self.last_error = context.error
        log.error("telegram.update_failed", error=describe(context.error) if context.error else "?", workflow=WORKFLOW)


def command_name(text: str, length: int) -> str:
    """The command as Telegram's bot_command entity bounds it (``/status@hq_bot`` → ``status``): the
    first word can differ (``/status.``), and only the entity says which handler matched."""
    return text[1:length].split("@")[0].lower()


def clean(text: str | None) -> str:
    """Text PostgreSQL can store: no NUL, no lone surrogates (JSON can carry both)."""
    return (text or "").replace("\x00", "").encode("utf-8", "replace").decode("utf-8")


def with_outcome(original: str, outcome: str) -> str:
    """The message as it was, with the outcome as its last line, within Telegram's length (whole lines kept)."""
    lines = original.split("\n") if original else []
    while lines and len("\n".join(lines)) + len(outcome) + 2 > TELEGRAM_LIMIT:
        lines.pop()
    return "\n".join([*lines, "", outcome]) if lines else outcome


def _issue_argument(args: list[str], name: str) -> int:
    if not args:
        raise UsageError(USAGE[name])
    try:
        return parse_id(args[0].removeprefix("#"), "an issue id")
    except ValueError as error:
        raise UsageError(f"{error}; {USAGE[name]}") from None


async def _quietly(call: Any) -> None:
    """A reply that Telegram refuses is logged, never raised: the decision is already committed."""
    from telegram.error import TelegramError

    try:
        await call
    except TelegramError as error:
        log.warning("telegram.reply_failed", error=str(error), workflow=WORKFLOW)
