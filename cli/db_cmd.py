"""`hq db`: the database behind the company (embedded by default)."""

from __future__ import annotations

import os
import shutil
from typing import Annotated

import typer

db_app = typer.Typer(help="The database: migrate it, connect to it, start or stop the embedded server.",
                     no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")


def _url(show_password: bool = False) -> str:
    from sqlalchemy.engine import make_url

    from config.settings import get_settings
    from db.engine import database_url
    from db.urls import libpq_url

    url = make_url(database_url(get_settings()))
    return libpq_url(url.render_as_string(hide_password=not show_password))


@db_app.command("upgrade")
def upgrade(revision: Annotated[str, typer.Argument(help="Target revision.")] = "head") -> None:
    """Apply pending migrations."""
    from db.engine import get_engine
    from db.migrate import upgrade as run_upgrade

    before, after = run_upgrade(get_engine(migrate=False), revision)
    typer.echo(f"database at revision {after}" + ("" if before == after else f" (was {before or 'empty'})"))


@db_app.command("url")
def url(show_password: Annotated[bool, typer.Option("--show-password")] = False) -> None:
    """Print the connection URL (libpq form, usable by psql and BI tools)."""
    typer.echo(_url(show_password))


@db_app.command("psql")
def psql(args: Annotated[list[str] | None, typer.Argument(help="Extra psql arguments.")] = None) -> None:
    """Open psql on the current database."""
    from db.embedded import bin_path

    url_text = _url(show_password=True)
    executable = shutil.which("psql") or str(bin_path("psql"))
    os.execv(executable, [executable, url_text, *(args or [])])


@db_app.command("status")
def status() -> None:
    """Say which database is in use and whether the embedded server runs."""
    from config.settings import get_settings
    from db.embedded import pgdata_dir, running_server

    settings = get_settings()
    if settings.database_url is not None:
        typer.echo(f"external database: {_url()}")
        return
    server = running_server(pgdata_dir(settings.data_path))
    if server is None:
        typer.echo(f"embedded PostgreSQL in {pgdata_dir(settings.data_path)}: not running")
    else:
        typer.echo(f"embedded PostgreSQL in {pgdata_dir(settings.data_path)}: running (pid {server.pid})")


@db_app.command("stop")
def stop() -> None:
    """Stop the embedded server (it starts again on the next command)."""
    from config.settings import get_settings
    from db.embedded import stop_server

    stopped = stop_server(get_settings().data_path)
    typer.echo("stopped" if stopped else "not running")


@db_app.command("reporter-url")
def reporter_url(
    set_password: Annotated[bool, typer.Option("--set-password", help="Give hq_reporter a new random password and "
                                                                       "include it (older URLs stop working).")] = False,
) -> None:
    """Print a connection string for the read-only hq_reporter role (report views only)."""
    import secrets

    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    from config.errors import StateError
    from config.settings import get_settings
    from db.engine import database_url, get_engine
    from db.urls import libpq_url

    engine = get_engine()
    with engine.begin() as connection:
        if connection.execute(text("SELECT 1 FROM pg_roles WHERE rolname = 'hq_reporter'")).first() is None:
            raise StateError("the hq_reporter role does not exist (the migrating user could not create it)")
        password = None
        if set_password:
            password = secrets.token_urlsafe(24)
            connection.exec_driver_sql(f"ALTER ROLE hq_reporter PASSWORD '{password}'")
    url = make_url(database_url(get_settings())).set(username="hq_reporter", password=password)
    typer.echo(libpq_url(url.render_as_string(hide_password=False)))
