"""Connection URL spellings: SQLAlchemy wants a driver name, libpq tools do not."""

from __future__ import annotations


def sqlalchemy_url(url: str) -> str:
    """Force the psycopg 3 driver whatever scheme the user wrote (postgres://, postgresql://)."""
    _scheme, sep, rest = url.partition("://")
    return "postgresql+psycopg" + sep + rest


def libpq_url(url: str) -> str:
    """The same URL without SQLAlchemy's driver suffix, for psql, pgbench and raw psycopg."""
    _scheme, sep, rest = url.partition("://")
    return "postgresql" + sep + rest
