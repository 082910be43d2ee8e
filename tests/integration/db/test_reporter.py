"""hq_reporter is locked down, tried as the reporter itself; no `hq db` command leaks another role's secret.

The TEMP revoke is a database-level ACL, which CREATE DATABASE ... TEMPLATE does
not copy, so these tests migrate a fresh database from scratch (half a second)
instead of cloning the session's template. Role settings are cluster-wide: every
test leaves hq_reporter as the migration set it.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import create_engine

from db.migrate import _LOCK_KEY, alembic_config, upgrade
from db.sqlfiles import read_sql
from tests.support.cli import run_hq
from tests.support.postgres import PgServer
from tests.support.rows import one

_counter = itertools.count()
DENIED = psycopg.errors.InsufficientPrivilege

# Every report view db/sql/views.sql defines: all of them must be security barriers.
REPORT_VIEWS = re.findall(r"CREATE OR REPLACE VIEW (report_\w+)", read_sql("views.sql"))


@dataclass
class Fresh:
    pg: PgServer
    name: str

    def connect(self, user: str = "postgres") -> psycopg.Connection:
        return psycopg.connect(self.pg.libpq(self.name).replace("postgres@", f"{user}@", 1), autocommit=True)

    def reporter(self) -> psycopg.Connection:
        return self.connect("hq_reporter")


def _migrate(pg: PgServer, name: str, user: str = "postgres", revision: str = "head") -> None:
    engine = create_engine(pg.url(name).replace("postgres@", f"{user}@", 1))
    try:
        upgrade(engine, revision)
    finally:
        engine.dispose()


def _downgrade(pg: PgServer, name: str, revision: str) -> None:
    from alembic import command

    engine = create_engine(pg.url(name))
    try:
        with engine.begin() as connection:
            command.downgrade(alembic_config(connection), revision)
    finally:
        engine.dispose()


@pytest.fixture()
def fresh(pg_server: PgServer) -> Iterator[Fresh]:
    """A database migrated from empty, exactly as `hq db upgrade` does on a new install."""
    name = f"hq_lockdown_{os.getpid()}_{next(_counter)}"
    with pg_server.admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        _migrate(pg_server, name)
        yield Fresh(pg_server, name)
    finally:
        with pg_server.admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


LEAK = """CREATE FUNCTION {schema}.leak(value text) RETURNS boolean LANGUAGE plpgsql COST 0.0000001 AS $$
BEGIN
    RAISE NOTICE 'leak: %', value;
    RETURN true;
END
$$"""


def _seed(db: Fresh) -> None:
    with db.connect() as app:
        app.execute("INSERT INTO issues (title, status, created_by) VALUES ('hidden todo title', 'todo', 'test')")
        blocked = one(
            app.execute(
                "INSERT INTO issues (title, status, created_by) VALUES ('visible blocked title', "
                "'todo', 'test') RETURNING id"
            ).fetchone()
        )[0]
        with app.transaction():
            app.execute("SET LOCAL session_replication_role = replica")
            app.execute("UPDATE issues SET status = 'blocked', blocked_reason = 'human' WHERE id = %s", (blocked,))
        app.execute(
            "INSERT INTO approvals (issue_id, kind, requested_by, deadline, reason) VALUES "
            "(%s, 'work', 'agent:editor', now() + interval '1 day', 'visible pending reason')",
            (blocked,),
        )
        app.execute(
            "INSERT INTO approvals (issue_id, kind, status, requested_by, deadline, reason, decided_by, "
            "decided_at) VALUES (%s, 'budget', 'approved', 'agent:editor', now(), 'hidden decided reason', "
            "'human:boss', now())",
            (blocked,),
        )
        app.execute("SELECT hq_rebuild_rollups()")


def test_the_temp_function_attack_is_refused(fresh: Fresh) -> None:
    """The red-team attack verbatim: read-write session, a leaky pg_temp function. TEMP is no longer PUBLIC's."""
    _seed(fresh)
    with fresh.reporter() as reporter:
        reporter.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE")
        with pytest.raises(DENIED, match="temporary"):
            reporter.execute(LEAK.format(schema="pg_temp"))
        with pytest.raises(DENIED, match="temporary"):
            reporter.execute("CREATE TEMP TABLE hoard (x text)")
        assert reporter.execute("SELECT has_database_privilege(current_database(), 'TEMP')").fetchone() == (False,)
    with fresh.connect() as app:  # the app role (the migrating user) keeps TEMP
        assert app.execute("SELECT has_database_privilege(current_database(), 'TEMP')").fetchone() == (True,)
        acl = one(app.execute("SELECT datacl::text FROM pg_database WHERE datname = current_database()").fetchone())[0]
        assert "=Tc/" not in acl and "=c/" in acl  # PUBLIC: CONNECT only


def test_views_are_security_barriers_a_leaky_function_sees_only_visible_rows(fresh: Fresh) -> None:
    """Even a leaky function the reporter may call (granted here by a superuser) sees only rows the view shows."""
    _seed(fresh)
    with fresh.connect() as app:
        views = app.execute(
            "SELECT c.relname, coalesce(c.reloptions, '{}') FROM pg_class c WHERE c.relkind = 'v' "
            "AND c.relnamespace = 'public'::regnamespace AND c.relname LIKE 'report\\_%'"
        ).fetchall()
        assert len(views) == len(REPORT_VIEWS) and all(
            "security_barrier=true" in options for _name, options in views
        ), views
        app.execute("CREATE SCHEMA leaky")
        app.execute(LEAK.format(schema="leaky"))
        app.execute("GRANT USAGE ON SCHEMA leaky TO hq_reporter")
        app.execute("GRANT EXECUTE ON FUNCTION leaky.leak(text) TO hq_reporter")
    notices: list[str] = []
    with fresh.reporter() as reporter:
        reporter.add_notice_handler(lambda diagnostic: notices.append(diagnostic.message_primary or ""))
        reporter.execute("SET enable_indexscan = off")  # as the attacker did: no partial index hides the rows
        reporter.execute("SET enable_bitmapscan = off")
        blocked = reporter.execute("SELECT title FROM report_blocked_chain WHERE leaky.leak(title)").fetchall()
        queue = reporter.execute("SELECT reason FROM report_approval_queue WHERE leaky.leak(reason)").fetchall()
        costs = reporter.execute("SELECT title FROM report_cost_by_issue WHERE leaky.leak(title)").fetchall()
    assert blocked == [("visible blocked title",)] and queue == [("visible pending reason",)] and costs == []
    assert "leak: visible blocked title" in notices and "leak: visible pending reason" in notices  # it did run
    assert not [n for n in notices if "hidden" in n], notices


def test_reporter_session_defaults_and_pinned_temp_file_limit(fresh: Fresh) -> None:
    with fresh.reporter() as reporter:
        assert reporter.execute("SHOW statement_timeout").fetchone() == ("1min",)
        assert reporter.execute("SHOW idle_in_transaction_session_timeout").fetchone() == ("1min",)
        assert reporter.execute("SHOW default_transaction_read_only").fetchone() == ("on",)
        assert reporter.execute("SHOW temp_file_limit").fetchone() == ("1GB",)
        reporter.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE")  # as an attacker would
        for statement in (
            "SET temp_file_limit = -1",
            "SET SESSION temp_file_limit = '100GB'",
            "ALTER ROLE hq_reporter SET temp_file_limit = -1",
            "ALTER ROLE hq_reporter RESET temp_file_limit",
            "ALTER ROLE hq_reporter CONNECTION LIMIT -1",
            "ALTER ROLE hq_reporter SUPERUSER",
        ):
            with pytest.raises(DENIED):
                reporter.execute(statement)
        with reporter.transaction(force_rollback=True):  # the role is cluster-wide: look, then undo
            reporter.execute("ALTER ROLE hq_reporter RESET ALL")  # drops only what it may: its USERSET defaults
            assert reporter.execute("SELECT rolconfig FROM pg_roles WHERE rolname = current_user").fetchone() == (
                ["temp_file_limit=1GB"],
            )
        assert reporter.execute("SHOW temp_file_limit").fetchone() == ("1GB",)
        # statement_timeout and idle_in_transaction_session_timeout are defaults, not pins: PostgreSQL lets any
        # role change them for its session, even its own role defaults (ALTER ROLE hq_reporter RESET ...).
        # The connection limit and temp_file_limit bound what that can cost.


def test_reporter_connection_limit(fresh: Fresh) -> None:
    with fresh.connect() as app:
        assert app.execute("SELECT rolconnlimit FROM pg_roles WHERE rolname = 'hq_reporter'").fetchone() == (10,)
    opened = [fresh.reporter() for _ in range(10)]
    try:
        with pytest.raises(psycopg.OperationalError, match="too many connections for role"):
            fresh.reporter()
    finally:
        for conn in opened:
            conn.close()


def test_reporter_connection_limit_comes_from_the_setting(
    pg_server: PgServer, monkeypatch: pytest.MonkeyPatch, fresh: Fresh
) -> None:
    from config.settings import reset_settings

    name = f"{fresh.name}_limit"
    monkeypatch.setenv("HQ_REPORTER_CONNECTION_LIMIT", "3")
    reset_settings()
    with pg_server.admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        _migrate(pg_server, name)
        with pg_server.admin() as conn:
            assert conn.execute("SELECT rolconnlimit FROM pg_roles WHERE rolname = 'hq_reporter'").fetchone() == (3,)
    finally:
        monkeypatch.delenv("HQ_REPORTER_CONNECTION_LIMIT")
        reset_settings()
        with pg_server.admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute("ALTER ROLE hq_reporter CONNECTION LIMIT 10")  # the role is cluster-wide: as it was


def test_reporter_cannot_take_advisory_locks(fresh: Fresh) -> None:
    with fresh.reporter() as reporter:
        for statement in (
            f"SELECT pg_advisory_lock({_LOCK_KEY})",
            f"SELECT pg_try_advisory_lock({_LOCK_KEY})",
            f"SELECT pg_advisory_xact_lock({_LOCK_KEY})",
            "SELECT pg_advisory_lock_shared(1, 2)",
            "SELECT pg_try_advisory_xact_lock_shared(1)",
            "SELECT pg_advisory_unlock_all()",
        ):
            with pytest.raises(DENIED):
                reporter.execute(statement)
    _migrate(fresh.pg, fresh.name)  # the app role still takes the migration lock


def test_reporter_cannot_create_large_objects(fresh: Fresh) -> None:
    """Large objects live outside every table: a read-only session could still fill the disk with them."""
    with fresh.reporter() as reporter:
        for statement in ("SELECT lo_from_bytea(0, 'x')", "SELECT lo_creat(-1)", "SELECT lo_create(0)"):
            with pytest.raises(DENIED):
                reporter.execute(statement)
    with fresh.connect() as app:  # the app role keeps them
        oid = one(app.execute("SELECT lo_from_bytea(0, 'x')").fetchone())[0]
        app.execute("SELECT lo_unlink(%s)", (oid,))


def test_a_database_from_an_older_postgres_loses_public_create(pg_server: PgServer) -> None:
    """PostgreSQL 14 and older let PUBLIC create in schema public: a planted overload of a function hq's
    triggers call would run as the app role. The migration takes that away."""
    name = f"hq_lockdown_pg14_{os.getpid()}_{next(_counter)}"
    with pg_server.admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    db = Fresh(pg_server, name)
    try:
        with db.connect() as app:
            app.execute("GRANT CREATE ON SCHEMA public TO PUBLIC")  # as a database made by PostgreSQL 14 has it
        _migrate(pg_server, name)
        with db.reporter() as reporter:
            assert reporter.execute("SELECT has_schema_privilege('public', 'CREATE')").fetchone() == (False,)
            reporter.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE")
            with pytest.raises(DENIED):
                reporter.execute(
                    "CREATE FUNCTION public.hq_bucket(integer, numeric[]) RETURNS integer LANGUAGE sql AS 'SELECT 1'"
                )
        with db.connect() as app:
            app.execute("CREATE TABLE still_mine (x int)")  # the app role keeps CREATE
    finally:
        with pg_server.admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_a_non_superuser_migration_locks_down_what_it_may(pg_server: PgServer) -> None:
    """An owner with CREATEROLE only: TEMP revoked in its database, the rest skipped with a notice, no failure."""
    app_role = f"hq_test_app_{os.getpid()}"
    name = f"hq_lockdown_owned_{os.getpid()}"
    with pg_server.admin() as conn:
        conn.execute(f'CREATE ROLE "{app_role}" LOGIN CREATEROLE')
        conn.execute(f'CREATE DATABASE "{name}" OWNER "{app_role}"')
    db = Fresh(pg_server, name)
    try:
        with pg_server.admin() as conn:
            before = conn.execute(
                "SELECT rolconnlimit, rolconfig FROM pg_roles WHERE rolname = 'hq_reporter'"
            ).fetchone()
        _migrate(pg_server, name, user=app_role)
        with db.connect(app_role) as app:
            app.execute("CREATE TEMP TABLE mine (x int)")  # the app keeps TEMP
            assert app.execute("SELECT pg_try_advisory_lock(1)").fetchone() == (True,)
            views = app.execute(
                "SELECT count(*) FROM pg_class WHERE relname LIKE 'report\\_%' AND relkind = 'v' "
                "AND 'security_barrier=true' = ANY (reloptions)"
            ).fetchone()
            assert views == (len(REPORT_VIEWS),)
        with db.reporter() as reporter:
            reporter.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE")
            with pytest.raises(DENIED):
                reporter.execute("CREATE TEMP TABLE hoard (x int)")
            # pg_advisory_lock belongs to the bootstrap superuser: only a superuser migration can revoke it.
            assert reporter.execute("SELECT pg_try_advisory_lock(1)").fetchone() == (True,)
        with pg_server.admin() as conn:  # the cluster-wide role was not touched (nor could be)
            assert (
                conn.execute("SELECT rolconnlimit, rolconfig FROM pg_roles WHERE rolname = 'hq_reporter'").fetchone()
                == before
            )
    finally:
        with pg_server.admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'DROP ROLE IF EXISTS "{app_role}"')


def test_downgrade_undoes_the_lockdown(fresh: Fresh) -> None:
    _downgrade(fresh.pg, fresh.name, "0005")
    try:
        with fresh.reporter() as reporter:
            reporter.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE")
            reporter.execute("CREATE TEMP TABLE t (x int)")
            assert reporter.execute("SELECT pg_try_advisory_lock(1)").fetchone() == (True,)
            assert reporter.execute("SHOW temp_file_limit").fetchone() == ("-1",)
        with fresh.connect() as app:
            assert app.execute("SELECT rolconnlimit FROM pg_roles WHERE rolname = 'hq_reporter'").fetchone() == (-1,)
    finally:
        _migrate(fresh.pg, fresh.name)
    with fresh.reporter() as reporter:
        reporter.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE")
        with pytest.raises(DENIED):
            reporter.execute("CREATE TEMP TABLE t (x int)")
        assert reporter.execute("SHOW temp_file_limit").fetchone() == ("1GB",)


# --- `hq db`: never another role's secret, never a password in argv ----------------------------------------

APP_SECRET = "app-secret-Pw0rd"


@pytest.fixture()
def secret_url(db_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The test database's URL with a password for the app role (trust auth ignores it)."""
    from config.settings import reset_settings

    url = db_url.replace("postgres@", f"postgres:{APP_SECRET}@", 1)
    monkeypatch.setenv("DATABASE_URL", url)
    reset_settings()
    return url


@pytest.mark.parametrize("where", ["userinfo", "query", "credential files"])
def test_reporter_url_never_prints_the_app_password(db_url: str, monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    from config.settings import reset_settings

    if where == "userinfo":
        url = db_url.replace("postgres@", f"postgres:{APP_SECRET}@", 1)
    elif where == "query":
        url = f"{db_url}&password={APP_SECRET}&sslpassword={APP_SECRET}"
    else:  # the app's passfile and client key belong to the app, not the reporter (paths that name the secret)
        url = f"{db_url}&passfile=/run/{APP_SECRET}/pgpass"
    monkeypatch.setenv("DATABASE_URL", url)
    reset_settings()
    result = run_hq("db", "reporter-url")
    assert result.exit_code == 0, result.stderr
    printed = result.stdout.strip()
    assert APP_SECRET not in printed + result.stderr
    assert printed.startswith("postgresql://hq_reporter@/")
    with psycopg.connect(printed, autocommit=True) as reporter:
        assert reporter.execute("SELECT current_user").fetchone() == ("hq_reporter",)


def test_reporter_url_set_password_prints_only_the_new_one(
    secret_url: str, pg_server: PgServer, raw: psycopg.Connection
) -> None:
    from sqlalchemy.engine import make_url

    database = make_url(secret_url).database
    with pg_server.admin() as conn:  # log every statement in this database (not the others)
        conn.execute(f"ALTER DATABASE \"{database}\" SET log_statement = 'all'")
    log = pg_server.root / "pgdata" / "log"
    start = log.stat().st_size if log.exists() else 0
    result = run_hq("db", "reporter-url", "--set-password")
    assert result.exit_code == 0, result.stderr
    printed = make_url(result.stdout.strip())
    assert printed.username == "hq_reporter" and printed.password and printed.password != APP_SECRET
    assert APP_SECRET not in result.stdout + result.stderr
    verifier = one(raw.execute("SELECT rolpassword FROM pg_authid WHERE rolname = 'hq_reporter'").fetchone())[0]
    assert verifier.startswith("SCRAM-SHA-256$")  # hashed by the client: the server never saw the password
    logged = _read_from(log, start)
    assert printed.password not in logged and "PASSWORD" not in logged.upper().replace("PASSWORD_ENCRYPTION", "")
    with pg_server.admin() as conn:
        conn.execute(f'ALTER DATABASE "{database}" RESET log_statement')
        conn.execute("ALTER ROLE hq_reporter PASSWORD NULL")


def _read_from(path: Path, offset: int) -> str:
    if not path.exists():
        return ""
    with open(path, "rb") as handle:
        handle.seek(offset)
        return handle.read().decode("utf-8", "replace")


@pytest.mark.parametrize("where", ["userinfo", "query"])
def test_psql_gets_the_password_from_the_environment_not_argv(
    db_url: str, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    from config.settings import reset_settings

    url = (
        db_url.replace("postgres@", f"postgres:{APP_SECRET}@", 1)
        if where == "userinfo"
        else f"{db_url}&password={APP_SECRET}"
    )
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.delenv("PGPASSWORD", raising=False)
    reset_settings()
    calls: list[tuple[list[str], dict[str, str] | None]] = []

    def fake_exec(path: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        calls.append((list(argv), env))
        raise SystemExit(0)

    monkeypatch.setattr(os, "execv", lambda path, argv: fake_exec(path, argv))
    monkeypatch.setattr(os, "execve", fake_exec)
    result = run_hq("db", "psql", "--", "-c", "SELECT 1")
    assert result.exit_code == 0, result.stderr
    [(argv, env)] = calls
    assert not [arg for arg in argv if APP_SECRET in arg], argv
    assert argv[-2:] == ["-c", "SELECT 1"] and argv[1].startswith("postgresql://postgres@/")
    assert env is not None and env["PGPASSWORD"] == APP_SECRET
    assert APP_SECRET not in result.stdout + result.stderr
