"""PostgreSQL's NOTICE and WARNING messages: the ones hq's SQL raises reach the user, the chatter does not.

hq's SQL says what it could not do with ``RAISE NOTICE`` (for example "cannot
create role hq_reporter (no CREATEROLE)"); without a handler psycopg drops those
messages on the floor. PostgreSQL itself also reports dozens of harmless
"... does not exist, skipping" notices on a fresh install, which would bury the
few that matter: of the NOTICE level, only messages raised by hq's own PL/pgSQL
(``RAISE``) are shown; every WARNING (and anything above) is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from sqlalchemy import Connection

from config.log import get_logger

if TYPE_CHECKING:
    from psycopg.errors import Diagnostic

NoticeHandler = Callable[[str], None]
"""Receives one line per message worth showing, e.g. ``notice: cannot create role hq_reporter ...``."""

log = get_logger(__name__)

_RAISED_BY_PLPGSQL = "exec_stmt_raise"  # the server function behind RAISE (not localised, unlike the text)


def worth_showing(diagnostic: Diagnostic) -> bool:
    severity = (diagnostic.severity_nonlocalized or diagnostic.severity or "").upper()
    if severity in ("NOTICE", "INFO", "LOG", "DEBUG"):
        return diagnostic.source_function == _RAISED_BY_PLPGSQL
    return True  # WARNING (or an unexpected level): always


def notice_line(diagnostic: Diagnostic) -> str:
    """``warning: message (hint)`` on one line."""
    severity = (diagnostic.severity_nonlocalized or diagnostic.severity or "notice").lower()
    message = diagnostic.message_primary or ""
    if diagnostic.message_hint:
        message += f" ({diagnostic.message_hint})"
    return f"{severity}: {' '.join(message.split())}"


def _log_line(line: str) -> None:
    severity, _, message = line.partition(": ")
    (log.info if severity == "notice" else log.warning)("db.notice", severity=severity, message=message)


@contextmanager
def capture_notices(connection: Connection, handler: NoticeHandler | None = None) -> Iterator[None]:
    """Pass the messages worth showing that ``connection`` receives meanwhile to ``handler`` (default: the log),
    each distinct line once.

    The handler is removed afterwards: the connection goes back to a pool.
    """
    target = handler or _log_line
    seen: set[str] = set()  # several migrations re-apply one file: its message is said once

    def on_notice(diagnostic: Diagnostic) -> None:
        if worth_showing(diagnostic):
            line = notice_line(diagnostic)
            if line not in seen:
                seen.add(line)
                target(line)
        else:
            log.debug("db.notice", message=diagnostic.message_primary)

    driver = connection.connection.driver_connection
    driver.add_notice_handler(on_notice)  # type: ignore[union-attr]
    try:
        yield
    finally:
        driver.remove_notice_handler(on_notice)  # type: ignore[union-attr]
