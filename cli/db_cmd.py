"""`hq db`: the database behind the company (embedded by default)."""

from __future__ import annotations

import os
import shutil
import sys
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:  # `hq db` must start without loading SQLAlchemy
    from sqlalchemy import Connection
    from sqlalchemy.engine import URL

db_app = typer.Typer(
    help="The database: migrate it, connect to it, start or stop the embedded server.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")


# Query parameters libpq reads as secrets (?password=... is as valid as user:password@).
_SECRET_PARAMETERS = ("password", "sslpassword")


def _configured_url() -> URL:
    from sqlalchemy.engine import make_url

    from config.settings import get_settings
    from db.engine import database_url

    return make_url(database_url(get_settings()))


def _without_secrets(url: URL, *, username: str | None = None) -> tuple[URL, str | None]:
    """(the URL with no password anywhere in it, the password it had or None)."""
    from sqlalchemy.engine import URL

    password = url.query.get("password", url.password)
    if isinstance(password, tuple):  # repeated: libpq takes the last
        password = password[-1]
    # For another role, the app's own credentials (its passfile, its client certificate) go too.
    dropped = _SECRET_PARAMETERS + (("user", "passfile", "sslkey", "sslcert") if username is not None else ())
    query = {key: value for key, value in url.query.items() if key not in dropped}
    clean = URL.create(
        url.drivername,
        username=url.username if username is None else username,
        password=None,
        host=url.host,
        port=url.port,
        database=url.database,
        query=query,
    )
    return clean, (None if password is None else str(password))


def _render(url: URL) -> str:
    from config.urls import libpq_url

    return libpq_url(url.render_as_string(hide_password=False))


def _url(show_password: bool = False) -> str:
    url = _configured_url()
    if show_password:
        return _render(url)
    clean, password = _without_secrets(url)
    if password is not None:
        clean = clean.set(password="***")
    return _render(clean)


def _show_notice(line: str) -> None:
    """A NOTICE or WARNING from the database, on stderr: ``hq: notice: cannot create role hq_reporter ...``."""
    from cli.output import visible
    from config.secrets import redact

    sys.stderr.write(f"hq: {visible(redact(line))}\n")
    sys.stderr.flush()


def _echo_lines(lines: list[str], *, err: bool = False) -> None:
    """Plain lines, never wrapped (they may be SQL to paste), control characters shown."""
    from cli.output import visible

    for line in lines:
        typer.echo(visible(line), err=err)


@db_app.command("upgrade")
def upgrade(revision: Annotated[str, typer.Argument(help="Target revision.")] = "head") -> None:
    """Apply pending migrations; say what they could not do (and what an admin must run)."""
    from config.settings import get_settings
    from db.engine import get_engine
    from db.migrate import head_revision
    from db.migrate import upgrade as run_upgrade
    from db.reporter import next_steps, reporter_state

    engine = get_engine(migrate=False)
    before, after = run_upgrade(engine, revision, on_notice=_show_notice)
    typer.echo(f"database at revision {after}" + ("" if before == after else f" (was {before or 'empty'})"))
    if after == head_revision():
        with engine.connect() as connection:
            state = reporter_state(connection)
        steps = next_steps(state, get_settings().reporter_connection_limit)
        if steps:
            _echo_lines([f"hq: {state.summary()}", *steps], err=True)


@db_app.command("grant-reporter")
def grant_reporter() -> None:
    """Grant hq_reporter the report views, its read-only default and its bounds (again: idempotent).

    Run it after an admin has created hq_reporter, when hq's role may not create roles
    (it prints the exact SQL the admin must run). It applies what hq's role may and says
    what it could not do; it exits 1 while the reporter is not ready.
    """
    from config.errors import HQError
    from config.settings import get_settings
    from db.engine import get_engine
    from db.reporter import ROLE, next_steps
    from db.reporter import grant_reporter as run_grant

    settings = get_settings()
    result = run_grant(get_engine(migrate=False), settings, on_notice=_show_notice)
    _echo_lines(result.done())
    _echo_lines([f"could not: {line}" for line in result.refused])
    _echo_lines([result.after.summary(), *next_steps(result.after, settings.reporter_connection_limit)])
    if not result.after.ready:
        raise HQError(f"{ROLE} is not ready: {'; '.join(result.after.problems)}")


@db_app.command("url")
def url(show_password: Annotated[bool, typer.Option("--show-password")] = False) -> None:
    """Print the connection URL (libpq form, usable by psql and BI tools)."""
    typer.echo(_url(show_password))


@db_app.command("psql")
def psql(args: Annotated[list[str] | None, typer.Argument(help="Extra psql arguments.")] = None) -> None:
    """Open psql on the current database (the password goes in PGPASSWORD, never in argv)."""
    from db.embedded import bin_path

    url, password = _without_secrets(_configured_url())
    environment = dict(os.environ)
    if password is not None:
        environment["PGPASSWORD"] = password  # /proc/PID/environ is private to the user; cmdline is not
    executable = shutil.which("psql") or str(bin_path("psql"))
    os.execve(executable, [executable, _render(url), *(args or [])], environment)


def _data_dir_line() -> str:
    from config.settings import get_settings

    settings = get_settings()
    return f"data dir: {settings.data_path} ({settings.data_location.how()})"


@db_app.command("status")
def status() -> None:
    """Say which database is in use, whether the embedded server runs, and the data dir (and why that one).

    Starts nothing: the embedded server is started by the first command that needs the database
    and keeps running after it, until `hq db stop`.
    """
    from config.settings import get_settings
    from db.embedded import pgdata_dir, running_server

    settings = get_settings()
    if settings.database_url is not None:
        _echo_lines([f"external database: {_url()}", _data_dir_line()])
        return
    pgdata = pgdata_dir(settings.data_path)
    server = running_server(pgdata)
    if server is None:
        state = "not running" if pgdata.exists() else "not created yet (the first command that needs it starts it)"
    else:
        state = f"running (pid {server.pid}, socket {server.socket_dir}, port {server.port})"
    _echo_lines([f"embedded PostgreSQL in {pgdata}: {state}", _data_dir_line()])


@db_app.command("stop")
def stop() -> None:
    """Stop the embedded server of this data dir (the next command that needs it starts it again)."""
    from config.settings import get_settings
    from db.embedded import pgdata_dir, stop_server

    settings = get_settings()
    stopped = stop_server(settings.data_path)
    where = f"embedded PostgreSQL in {pgdata_dir(settings.data_path)}"
    _echo_lines([f"stopped the {where}" if stopped else f"not running: the {where}", _data_dir_line()])


@db_app.command("reporter-url")
def reporter_url(
    set_password: Annotated[
        bool,
        typer.Option(
            "--set-password", help="Give hq_reporter a new random password and include it (older URLs stop working)."
        ),
    ] = False,
) -> None:
    """Print a connection string for the read-only hq_reporter role (report views only).

    It never carries the app's password: without --set-password it has none (use a
    passfile, or a password you set yourself); with it, only the new one.
    """
    import secrets

    from sqlalchemy import text

    from config.errors import StateError
    from config.secrets import register_secrets
    from db.engine import get_engine

    engine = get_engine()
    password = None
    with engine.begin() as connection:
        if connection.execute(text("SELECT 1 FROM pg_roles WHERE rolname = 'hq_reporter'")).first() is None:
            raise StateError(
                "the hq_reporter role does not exist (the migrating user could not create it): "
                "hq db grant-reporter prints the SQL an admin must run"
            )
        if set_password:
            password = secrets.token_urlsafe(24)
            register_secrets(password)
            _set_reporter_password(connection, password)
    url, _app_password = _without_secrets(_configured_url(), username="hq_reporter")
    if password is not None:
        url = url.set(password=password)
    typer.echo(_render(url))


# Where hq's role may (a superuser, or SET granted on the parameter), keep the statement out of the server
# log entirely. Either way the statement carries only a verifier (SCRAM by default), never the password.
_QUIET_LOGGING = (("log_statement", "none"), ("log_min_duration_statement", "-1"), ("log_min_error_statement", "panic"))


def _set_reporter_password(connection: Connection, password: str) -> None:
    """ALTER ROLE hq_reporter PASSWORD '<verifier>': hashed here, like psql's \\password, quoted by psycopg."""
    from psycopg import sql
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    for name, value in _QUIET_LOGGING:
        try:
            with connection.begin_nested():
                connection.execute(text("SELECT set_config(:name, :value, true)"), {"name": name, "value": value})
        except DBAPIError:
            pass  # not permitted for this role: the log sees a verifier at most
    algorithm = str(connection.execute(text("SHOW password_encryption")).scalar())
    driver = connection.connection.driver_connection
    assert driver is not None
    verifier = driver.pgconn.encrypt_password(password.encode(), b"hq_reporter", algorithm.encode()).decode()
    driver.execute(sql.SQL("ALTER ROLE hq_reporter PASSWORD {}").format(sql.Literal(verifier)))
