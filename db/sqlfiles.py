"""SQL files as first-class code: the state machine, claims and reports live in db/sql/."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

from sqlalchemy import Connection, TextClause, text

SQL_DIR = Path(__file__).resolve().parent / "sql"

_NAME = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)


def read_sql(name: str) -> str:
    return (SQL_DIR / name).read_text(encoding="utf-8")


def run_sql(connection: Connection, sql: str) -> None:
    """Execute raw SQL (several statements allowed) on the connection's current transaction.

    Goes to the driver directly: SQL files contain ``:=``, ``::``, ``%I`` and colons in
    comments that SQLAlchemy's bind-parameter parser must never see.
    """
    connection.connection.driver_connection.execute(sql)  # type: ignore[union-attr]


def run_sql_file(connection: Connection, name: str) -> None:
    run_sql(connection, read_sql(name))


@cache
def _named_queries(file: str) -> dict[str, str]:
    source = read_sql(f"queries/{file}.sql")
    names = list(_NAME.finditer(source))
    if not names:
        raise ValueError(f"db/sql/queries/{file}.sql defines no '-- name:' queries")
    queries = {}
    for index, match in enumerate(names):
        end = names[index + 1].start() if index + 1 < len(names) else len(source)
        queries[match.group(1)] = source[match.end() : end].strip().rstrip(";")
    return queries


@cache
def query(file: str, name: str) -> TextClause:
    """A named statement from db/sql/queries/<file>.sql (blocks start with ``-- name: x``)."""
    try:
        return text(_named_queries(file)[name])
    except KeyError:
        raise KeyError(f"no query {name!r} in db/sql/queries/{file}.sql") from None
