"""Turn database exceptions into the one-line errors users should see."""

from __future__ import annotations

import psycopg
from sqlalchemy.exc import DBAPIError, OperationalError

from config.errors import DatabaseUnavailable, HQError, StateError


def translate_db_error(error: BaseException) -> HQError | None:
    """The user-facing form of a database error, or None if it is a bug, not a user's problem."""
    original = error.orig if isinstance(error, DBAPIError) else error
    if isinstance(
        original,
        (
            psycopg.errors.CheckViolation,
            psycopg.errors.RaiseException,
            psycopg.errors.ForeignKeyViolation,
            psycopg.errors.InsufficientPrivilege,
        ),
    ):
        diag = original.diag
        message = diag.message_primary or str(original).splitlines()[0]
        if diag.message_hint:
            message += f" ({diag.message_hint})"
        return StateError(message)
    if isinstance(original, psycopg.errors.LockNotAvailable):
        return StateError("the issue is busy (a worker holds it); try again in a moment")
    if isinstance(error, OperationalError) or isinstance(original, psycopg.OperationalError):
        first_line = str(original).strip().splitlines()[0] if str(original).strip() else type(original).__name__
        return DatabaseUnavailable(f"database unavailable: {first_line}")
    return None


def is_outage(error: BaseException) -> bool:
    """The database is unreachable or restarting (not a bug): the next attempt will do."""
    if isinstance(error, DatabaseUnavailable):
        return True
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return True
    original = error.orig if isinstance(error, DBAPIError) else error
    return isinstance(original, (psycopg.OperationalError, psycopg.InterfaceError)) and not isinstance(
        original, (psycopg.errors.LockNotAvailable, psycopg.errors.QueryCanceled)
    )
