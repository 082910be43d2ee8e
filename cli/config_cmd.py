"""`hq config show` and `hq config check`: what is in effect; then, for check, validate everything the company needs."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from config.settings import Settings

config_app = typer.Typer(help="Configuration.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(config_app, name="config")


def effective_settings() -> dict[str, Any]:
    """Every setting with its value; secrets masked so the output can be pasted anywhere."""
    from pydantic import SecretStr

    from config.secrets import mask
    from config.settings import get_settings

    settings = get_settings()
    values: dict[str, Any] = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            value = "(set, hidden)" if name.endswith("database_url") else mask(value.get_secret_value())
        values[name] = value
    values["data_dir"] = f"{settings.data_path} ({settings.data_location.how()})"
    values["database"] = "external (DATABASE_URL)" if settings.database_url else f"embedded in {settings.data_path}"
    values["roles_path"] = settings.roles_path
    values["models_path"] = settings.models_path
    values["playbooks_path"] = settings.playbooks_path
    return values


def _print_settings() -> None:
    from cli.output import console, safe

    for name, value in effective_settings().items():
        console.print(f"{name:>28} = {safe(value)}")


@config_app.command("show")
def show() -> None:
    """Print the effective settings (secrets masked) and where the data dir is and why; checks nothing.

    Starts no database and creates nothing: safe to run from any directory to see which company
    `hq` would use there.
    """
    _print_settings()


@config_app.command("check")
def check() -> None:
    """Validate the settings, print the effective values (secrets masked), then check the database.

    Runs ``true`` in the project-command sandbox (HQ_SANDBOX), then connects (never
    migrates) and reports the server, schema, migration revision, hq_reporter and
    whether LISTEN works; exits 1 when a check fails (a sandbox that cannot run a
    command is one: project issues could not be checked).
    """
    from agents.roster import load_roster
    from cli.output import console
    from config.settings import get_settings

    _print_settings()
    console.print("settings: ok")
    from models.config import resolve_models

    roster = load_roster(get_settings().roles_path)
    console.print(f"roster: ok ({len(roster.roles)} agents)")
    from agents.playbooks import load_playbooks

    playbooks = load_playbooks(get_settings().playbooks_path, set(roster.roles))
    console.print(f"playbooks: ok ({len(playbooks.playbooks)})")
    model_map = resolve_models(get_settings())
    console.print(
        f"models: ok ({'offline model' if model_map.offline else 'online providers'}, "
        f"{sum(len(d) for d in model_map.tiers.values())} deployments)"
    )
    _say(telegram_line(get_settings()))
    from runtimes.install import runtime_line, runtime_problems

    _say(runtime_line(get_settings(), roster))
    runtimes = [] if model_map.offline else runtime_problems(get_settings(), roster)  # offline: the built-in loop
    sandbox = check_sandbox(get_settings())
    with _connect_timeout():
        failures = check_database(get_settings())
    if sandbox is not None:
        failures.insert(0, sandbox)
    failures[:0] = runtimes
    if failures:
        from config.errors import HQError

        raise HQError(f"config check failed: {'; '.join(failures)}")


LISTEN_CHANNEL = "hq_config_check"
LISTEN_WAIT_SECONDS = 5.0
CONNECT_TIMEOUT_SECONDS = "10"  # libpq waits forever for a host that drops packets (psycopg: 130 s)


@contextmanager
def _connect_timeout() -> Iterator[None]:
    """PGCONNECT_TIMEOUT for this check's connections, unless the user set one (or the URL has connect_timeout)."""
    if "PGCONNECT_TIMEOUT" in os.environ:
        yield
        return
    os.environ["PGCONNECT_TIMEOUT"] = CONNECT_TIMEOUT_SECONDS
    try:
        yield
    finally:
        os.environ.pop("PGCONNECT_TIMEOUT", None)


def _say(line: str) -> None:
    """A plain line on stdout, never wrapped (it may be SQL to paste), secrets masked, controls shown."""
    from cli.output import visible
    from config.secrets import redact

    typer.echo(visible(redact(line)))


def _first_line(error: BaseException) -> str:
    from config.secrets import redact

    original = getattr(error, "orig", None) or error
    message = str(original).strip()
    return redact(message.splitlines()[0] if message else type(original).__name__)


def telegram_line(settings: Settings) -> str:
    """Whether notifications go to Telegram, who may decide there, and how updates arrive."""
    if settings.telegram_bot_token is None or settings.telegram_chat_id is None:
        return "telegram: off (notifications go to the log; set TELEGRAM_BOT_TOKEN and TELEGRAM_CHAT_ID)"
    if not settings.telegram_approvers:
        return f"telegram: chat {settings.telegram_chat_id}; no buttons or decisions (HQ_TELEGRAM_APPROVERS is empty)"
    key = "HQ_TELEGRAM_CALLBACK_SECRET" if settings.telegram_callback_secret else "a key derived from the bot token"
    receive = f"webhook {settings.telegram_webhook_url}" if settings.telegram_webhook_url else "long polling"
    return (
        f"telegram: chat {settings.telegram_chat_id}; {len(settings.telegram_approvers)} approver(s) may decide; "
        f"buttons signed with {key}; updates by {receive}"
    )


def check_sandbox(settings: Settings) -> str | None:
    """Say which sandbox project commands run in and whether it can run one; the failure, or None when it works."""
    from config.errors import HQError
    from projects.sandbox import ProcessCap, Unconfined, cap_for, probe, sandbox_for

    try:
        # HQ_SANDBOX=none directly: sandbox_for would log the warning this check prints anyway
        works, line = probe(Unconfined() if settings.sandbox == "none" else sandbox_for(settings))
    except HQError as error:
        works, line = False, error.message
    if not works:
        _say(f"sandbox: FAILED: HQ_SANDBOX={settings.sandbox}: {line}")
        return f"sandbox (HQ_SANDBOX={settings.sandbox}): {line}"
    if settings.sandbox == "none":
        _say("sandbox: none (HQ_SANDBOX=none) can run commands")
        _say("sandbox: WARNING: project commands run unconfined: no filesystem, network or process isolation")
    else:
        _say(f"sandbox: ok (HQ_SANDBOX={settings.sandbox}: {line})")
    cap = cap_for(settings)
    if settings.sandbox == "none" and cap.uids is not None:  # unconfined, a uid of its own cannot reach the tree
        cap = ProcessCap("none", why="HQ_SANDBOX=none cannot run a command as a uid of its own")
    choice = f"HQ_SANDBOX_PROCESS_CAP={settings.sandbox_process_cap}"
    if cap.mechanism == "unavailable":
        _say(f"sandbox processes: FAILED: {choice}: {cap.why}")
        return f"sandbox processes ({choice}): {cap.why}"
    _say(f"sandbox processes: at most {settings.sandbox_max_processes} per command, capped by {cap.describe()}")
    if cap.mechanism == "none":
        _say("sandbox: WARNING: a command's process count is not capped: a fork bomb can exhaust the host's PIDs")
    return None


def check_database(settings: Settings) -> list[str]:
    """Connect and report: server, schema, migration revision, hq_reporter, LISTEN. Returns the failures.

    Never migrates. A database that cannot be reached raises DatabaseUnavailable (nothing
    else can be checked); a pending upgrade or an unready reporter is reported, not a failure:
    hq migrates on first use and runs without the reporter.
    """
    from sqlalchemy import text
    from sqlalchemy.exc import SQLAlchemyError

    from config.errors import DatabaseUnavailable
    from db.engine import get_engine
    from db.migrate import MIGRATIONS_DIR, current_revision, head_revision
    from db.reporter import next_steps, reporter_state

    failures: list[str] = []
    engine = get_engine(settings, migrate=False)
    try:
        with engine.connect() as connection:
            version, schema, user, database = connection.execute(
                text("SELECT current_setting('server_version'), current_schema(), current_user, current_database()")
            ).one()
            revision = current_revision(connection)
            reporter = reporter_state(connection)
            connection.rollback()
    except SQLAlchemyError as error:
        from sqlalchemy.exc import OperationalError

        if isinstance(error, OperationalError):
            raise DatabaseUnavailable(f"database unavailable: {_first_line(error)}") from None
        raise DatabaseUnavailable(f"database check failed: {_first_line(error)}") from None
    _say(f"database: ok (PostgreSQL {version}, database {database} as role {user})")

    head = head_revision()
    if schema == settings.db_schema:
        _say(f"schema: {schema} (HQ_DB_SCHEMA={settings.db_schema})")
    elif revision is None:
        _say(f"schema: {schema or '(none)'}; HQ_DB_SCHEMA={settings.db_schema} is created by hq db upgrade")
    else:
        _say(f"schema: FAILED: the connection uses {schema or '(none)'}, HQ_DB_SCHEMA is {settings.db_schema}")
        failures.append(f"schema {schema or '(none)'} is not HQ_DB_SCHEMA={settings.db_schema}")

    known = {path.name.split("_", 1)[0] for path in (MIGRATIONS_DIR / "versions").glob("[0-9]*_*.py")}
    if revision == head:
        _say(f"revision: {revision} (head)")
    elif revision is None or revision in known:
        _say(f"revision: {revision or 'none (empty database)'}, head {head}: upgrade pending: run hq db upgrade")
    else:
        _say(f"revision: {revision}: FAILED: not a revision this hq knows (head {head}); upgrade hq")
        failures.append(f"database revision {revision} is newer than this hq (head {head})")

    _say(reporter.summary())
    if revision == head:
        for line in next_steps(reporter, settings.reporter_connection_limit):
            _say(f"  {line}")

    listen = _check_listen(settings, engine)
    if listen is not None:
        failures.append(listen)
    return failures


def _check_listen(settings: Settings, engine: Engine) -> str | None:
    """LISTEN on the wake-up connection's URL, NOTIFY from another connection, wait for it. None: it works."""
    import secrets
    import time

    import psycopg
    from sqlalchemy import text
    from sqlalchemy.exc import SQLAlchemyError

    from db.engine import listen_url

    via = "HQ_LISTEN_DATABASE_URL" if settings.listen_database_url is not None else "DATABASE_URL"
    token = secrets.token_hex(8)
    try:
        with psycopg.connect(
            listen_url(settings, engine), autocommit=True, application_name="hq-config-check"
        ) as listener:
            listener.execute(f"LISTEN {LISTEN_CHANNEL}")
            started = time.monotonic()
            with engine.begin() as connection:
                connection.execute(
                    text("SELECT pg_notify(:channel, :payload)"), {"channel": LISTEN_CHANNEL, "payload": token}
                )
            for notification in listener.notifies(timeout=LISTEN_WAIT_SECONDS):
                if notification.channel == LISTEN_CHANNEL and notification.payload == token:
                    _say(
                        f"listen: ok (via {via}; the notification arrived in "
                        f"{(time.monotonic() - started) * 1000:.0f} ms)"
                    )
                    return None
    except (psycopg.Error, SQLAlchemyError) as error:
        problem = f"LISTEN failed (via {via}): {_first_line(error)}"
    else:
        problem = f"LISTEN got no notification within {LISTEN_WAIT_SECONDS:g} s (via {via})"
        if settings.db_pooler != "none" and settings.listen_database_url is None:
            problem += "; behind a pooler, set HQ_LISTEN_DATABASE_URL to a direct URL"
    _say(f"listen: FAILED: {problem}")
    return problem
