"""Connection URL spellings: SQLAlchemy wants a driver name, libpq tools do not."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl

# SQLAlchemy's own URL grammar (sqlalchemy.engine.url._parse_url), so a URL that passes here is one
# create_engine can parse; importing SQLAlchemy just to check a setting would cost every command.
_URL = re.compile(
    r"""
    (?P<name>[\w+]+)://
    (?:(?P<username>[^:/]*)(?::(?P<password>[^@]*))?@)?
    (?:(?:\[(?P<ipv6host>[^/?]+)\]|(?P<ipv4host>[^/:?]+))?(?::(?P<port>[^/?]*))?)?
    (?:/(?P<database>[^?]*))?
    (?:\?(?P<query>.*))?
    """,
    re.X,
)
_PORT = re.compile(r"[0-9]{1,5}")


def sqlalchemy_url(url: str) -> str:
    """Force the psycopg 3 driver whatever scheme the user wrote (postgres://, postgresql://)."""
    _scheme, sep, rest = url.partition("://")
    return "postgresql+psycopg" + sep + rest


def libpq_url(url: str) -> str:
    """The same URL without SQLAlchemy's driver suffix, for psql, pgbench and raw psycopg."""
    _scheme, sep, rest = url.partition("://")
    return "postgresql" + sep + rest


def _valid_port(text: str) -> bool:
    return bool(_PORT.fullmatch(text)) and 1 <= int(text) <= 65535


def url_problem(url: str) -> str | None:
    """Why the URL would fail at the first connection instead of at start, if it would.

    The message never quotes the URL: it may hold a password.
    """
    match = _URL.fullmatch(url)
    if match is None:
        return "is not a URL SQLAlchemy can parse (postgresql://user:password@host:port/database)"
    if match["port"] and not _valid_port(match["port"]):
        return "the port must be a number from 1 to 65535"
    for key, value in parse_qsl(match["query"] or "", keep_blank_values=True):
        # libpq takes one port per host here: ?host=a,b&port=5432,5433.
        if key == "port" and not all(_valid_port(part) for part in value.split(",")):
            return "the port query parameter must be numbers from 1 to 65535, comma-separated"
    return None
