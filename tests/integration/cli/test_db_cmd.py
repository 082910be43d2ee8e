"""hq_reporter where hq's role may not create roles: the notice is shown, the admin SQL printed, and
`hq db grant-reporter` finishes the job once an admin has run it.

hq_reporter is cluster-wide, and in the session's shared cluster it already exists (the
superuser migration of the template created it); every other test relies on it, and DROP
ROLE would fail anyway while it holds privileges in the other test databases. So the path
where the role is missing runs in a cluster of this module's own (started once, ~2 s, thrown
away afterwards): there hq_reporter really does not exist until the test, acting as the
admin, runs the SQL hq printed, verbatim. Nothing shared is created, altered or dropped.
Cases where the role exists use the shared cluster and touch only their own database.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import create_engine

from db.migrate import head_revision
from tests.support.cli import run_hq
from tests.support.postgres import PgServer, own_database

APP_ROLE = "hq_app_nocreaterole"
DENIED = psycopg.errors.InsufficientPrivilege


@pytest.fixture(scope="module")
def bare_cluster() -> Iterator[PgServer]:
    """A PostgreSQL cluster without hq_reporter, for this module only."""
    from db.embedded import ensure_server, stop_server

    root = Path(tempfile.mkdtemp(prefix="hq-test-bare-pg-"))
    server = ensure_server(root)
    pg = PgServer(root=root, socket_dir=server.socket_dir, port=server.port)
    with pg.admin() as conn:
        conn.execute("ALTER SYSTEM SET fsync = off")
        conn.execute("SELECT pg_reload_conf()")
        assert conn.execute("SELECT 1 FROM pg_roles WHERE rolname = 'hq_reporter'").fetchone() is None
        conn.execute(f'CREATE ROLE "{APP_ROLE}" LOGIN')  # no CREATEROLE, not a superuser
    try:
        yield pg
    finally:
        stop_server(root)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture()
def app_database(bare_cluster: PgServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    """An empty database owned by the app role; DATABASE_URL connects as that role."""
    monkeypatch.setenv("HQ_DATA_DIR", str(tmp_path / "var"))
    with own_database(bare_cluster, monkeypatch, "hq_owned", owner=APP_ROLE, user=APP_ROLE) as name:
        yield name


def _admin_sql(stdout: str) -> list[str]:
    """The indented SQL lines hq printed for an admin."""
    return [line.strip() for line in stdout.splitlines() if line.startswith("    ")]


def test_without_createrole_the_admin_is_told_what_to_run_and_grant_reporter_finishes(
    bare_cluster: PgServer, app_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from config.settings import reset_settings
    from db.engine import dispose_engines

    # 1. The migration says it could not create the role (once, one line per notice) and what an admin must run.
    upgraded = run_hq("db", "upgrade")
    assert upgraded.exit_code == 0, upgraded.stderr
    assert upgraded.stdout.strip() == f"database at revision {head_revision()} (was empty)"
    notices = [line for line in upgraded.stderr.splitlines() if line.startswith("hq: notice: ")]
    assert (
        notices.count("hq: notice: cannot create role hq_reporter (no CREATEROLE); reporting access is not set up") == 1
    ), upgraded.stderr
    assert not [line for line in upgraded.stderr.splitlines() if "skipping" in line]  # PostgreSQL's chatter is not
    assert f"role {APP_ROLE} may not create roles (no CREATEROLE)" in upgraded.stderr
    assert 'CREATE ROLE "hq_reporter" LOGIN' in upgraded.stderr and "hq db grant-reporter" in upgraded.stderr

    # 2. config check reports it, with the same SQL; hq itself works, so it passes.
    checked = run_hq("config", "check")
    assert checked.exit_code == 0, checked.stderr
    assert "hq_reporter: not set up (the role does not exist)" in checked.stdout
    assert 'CREATE ROLE "hq_reporter" LOGIN' in checked.stdout

    # 3. grant-reporter cannot do it alone: it says so, prints the SQL, and fails.
    refused = run_hq("db", "grant-reporter")
    assert refused.exit_code == 1, refused.stdout
    assert "hq: notice: cannot create role hq_reporter (no CREATEROLE)" in refused.stderr
    assert refused.stderr.strip().splitlines()[-1] == (
        "hq: error: hq_reporter is not ready: role hq_reporter does not exist"
    )
    statements = _admin_sql(refused.stdout)
    assert statements[0] == (
        'CREATE ROLE "hq_reporter" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT CONNECTION LIMIT 10;'
    )
    assert "ALTER ROLE \"hq_reporter\" SET default_transaction_read_only = 'on';" in statements
    assert not [statement for statement in statements if "PASSWORD '" in statement.upper()]  # never one in output

    # 4. The admin runs exactly that; then grant-reporter, as the app role, finishes.
    with bare_cluster.admin() as admin:
        for statement in statements:
            admin.execute(statement)
    granted = run_hq("db", "grant-reporter")
    assert granted.exit_code == 0, granted.stderr
    assert "granted SELECT on 11 report views to hq_reporter" in granted.stdout
    assert (
        "hq_reporter: ready (login yes, read-only yes, SELECT on 11 of 11 report views, connection limit 10)"
        in granted.stdout
    )
    with psycopg.connect(
        bare_cluster.libpq(app_database).replace("postgres@", "hq_reporter@", 1), autocommit=True
    ) as reporter:
        assert reporter.execute("SELECT count(*) FROM report_issue_board").fetchone() is not None
        assert reporter.execute("SHOW default_transaction_read_only").fetchone() == ("on",)
        with pytest.raises(DENIED):
            reporter.execute("SELECT title FROM issues")
        reporter.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE")
        with pytest.raises(DENIED):
            reporter.execute("CREATE TEMP TABLE hoard (x int)")  # TEMP revoked in hq's database

    # 5. Twice is fine.
    again = run_hq("db", "grant-reporter")
    assert again.exit_code == 0, again.stderr
    assert "SELECT on all 11 report views: already granted" in again.stdout and "granted SELECT on" not in again.stdout
    assert "hq_reporter: ready" in run_hq("config", "check").stdout

    # 6. The admin's SQL leaves the role as a superuser's migration would (db/reporter.py mirrors
    #    reporter_lockdown.sql): migrating another database as the superuser changes nothing on it,
    #    and says nothing (none of PostgreSQL's "... skipping" notices either).
    with bare_cluster.admin() as admin:
        role = "SELECT rolcanlogin, rolinherit, rolconnlimit, rolconfig FROM pg_roles WHERE rolname = 'hq_reporter'"
        before = admin.execute(role).fetchone()
        admin.execute('CREATE DATABASE "hq_superuser"')
    try:
        dispose_engines()
        monkeypatch.setenv("DATABASE_URL", bare_cluster.url("hq_superuser"))
        reset_settings()
        by_superuser = run_hq("db", "upgrade")
        assert by_superuser.exit_code == 0 and by_superuser.stderr == "", by_superuser.stderr
        with bare_cluster.admin() as admin:
            assert admin.execute(role).fetchone() == before
    finally:
        dispose_engines()
        with bare_cluster.admin() as admin:
            admin.execute('DROP DATABASE IF EXISTS "hq_superuser" WITH (FORCE)')


def test_grant_reporter_refuses_a_database_that_is_not_migrated(app_database: str) -> None:
    result = run_hq("db", "grant-reporter")
    assert result.exit_code == 2, result.stdout
    assert result.stderr.strip().splitlines() == [
        f"hq: error: the database is at revision none (empty), not {head_revision()}: run hq db upgrade first"
    ]


# --- the shared cluster: hq_reporter exists -------------------------------------------------------------


def test_upgrade_points_at_grant_reporter_which_restores_the_views(
    db_url: str, raw: psycopg.Connection, pg_server: PgServer
) -> None:
    """The database was migrated before an admin created hq_reporter: here it has no grants, and
    `hq db upgrade` (nothing to migrate) used to say nothing about it."""
    raw.execute("REVOKE SELECT ON ALL TABLES IN SCHEMA public FROM hq_reporter")  # this database only
    upgraded = run_hq("db", "upgrade")
    assert upgraded.exit_code == 0, upgraded.stderr
    assert upgraded.stdout.strip() == f"database at revision {head_revision()}"
    assert "hq: hq_reporter: not ready: SELECT on 0 of 11 report views" in upgraded.stderr
    assert "run: hq db grant-reporter" in upgraded.stderr

    granted = run_hq("db", "grant-reporter")
    assert granted.exit_code == 0, granted.stderr
    assert granted.stdout.splitlines()[0] == "granted SELECT on 11 report views to hq_reporter"
    database = raw.info.dbname
    with psycopg.connect(pg_server.libpq(database).replace("postgres@", "hq_reporter@", 1)) as reporter:
        reporter.execute("SELECT * FROM report_issue_board").fetchall()
    again = run_hq("db", "grant-reporter")
    assert again.exit_code == 0 and "already granted" in again.stdout, again.stdout
    assert run_hq("db", "upgrade").stderr == ""  # nothing left to say


def test_notices_reach_the_user_one_line_each(db_url: str) -> None:
    """What the SQL raises is shown; PostgreSQL's own "... skipping" notices are not (61 on a fresh install)."""
    from db.notices import capture_notices

    lines: list[str] = []
    engine = create_engine(db_url)
    try:
        with engine.begin() as connection, capture_notices(connection, lines.append):
            driver = connection.connection.driver_connection
            assert driver is not None
            driver.execute("DO $$ BEGIN RAISE NOTICE 'first %', 'line' USING HINT = 'a hint'; END $$")
            driver.execute("DO $$ BEGIN RAISE NOTICE 'first %', 'line' USING HINT = 'a hint'; END $$")  # once
            driver.execute("DO $$ BEGIN RAISE WARNING 'two\nlines'; END $$")
            driver.execute("DROP TABLE IF EXISTS no_such_table")
            driver.execute("CREATE TABLE IF NOT EXISTS issues (x int)")
        assert lines == ["notice: first line (a hint)", "warning: two lines"]
    finally:
        engine.dispose()
