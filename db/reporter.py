"""hq_reporter: what state it is in, granting it the report views, and what an admin must run when hq may not.

The role is cluster-wide and creating or altering it needs CREATEROLE (some of its
bounds a superuser), which a managed database rarely gives the app role. The
migrations do what the migrating role may and skip the rest with a NOTICE; an admin
then creates the role, and `hq db grant-reporter` (this module) applies the current
db/sql/reporter.sql and db/sql/reporter_lockdown.sql again, as the app role, in one
transaction: the grants, the TEMP revoke for the new role, its role defaults where
the app role may set them. ``admin_sql`` is the exact SQL for whatever is left.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from psycopg import sql
from psycopg.errors import InsufficientPrivilege
from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from config.errors import StateError
from db.notices import NoticeHandler, capture_notices
from db.sqlfiles import run_sql_file

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from config.settings import Settings

ROLE = "hq_reporter"

# The role defaults db/sql/reporter.sql and reporter_lockdown.sql (step 4) give it where they may.
# (tests/integration/cli/test_db_cmd.py checks that the admin SQL below leaves the role as a superuser's
# migration does.)
READ_ONLY = ("default_transaction_read_only", "on")
ROLE_DEFAULTS = (
    READ_ONLY,
    ("statement_timeout", "60s"),
    ("idle_in_transaction_session_timeout", "60s"),
    ("temp_file_limit", "1GB"),
)
SUPERUSER_ONLY = {"temp_file_limit"}

_TRUE = {"on", "true", "yes", "1"}

_REPORT_VIEWS = r"""
  FROM pg_class c
 WHERE c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema())
   AND c.relkind = 'v' AND c.relname LIKE 'report\_%'"""

_APP = text(f"""
SELECT current_user, current_database(), rolsuper, rolsuper OR rolcreaterole, (SELECT count(*) {_REPORT_VIEWS})
  FROM pg_roles WHERE rolname = current_user
""")

_STATE = text(f"""
SELECT r.rolcanlogin, r.rolconnlimit, coalesce(r.rolconfig, '{{}}'),
       r.rolsuper OR r.rolcreaterole OR r.rolcreatedb OR r.rolreplication OR r.rolbypassrls,
       has_database_privilege(r.oid, current_database(), 'CONNECT'),
       coalesce(has_schema_privilege(r.oid, current_schema(), 'USAGE'), false),
       (SELECT count(*) {_REPORT_VIEWS} AND has_table_privilege(r.oid, c.oid, 'SELECT')),
       (SELECT count(*) FROM pg_class c
         WHERE c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema())
           AND c.relkind IN ('r', 'p', 'm', 'f') AND has_table_privilege(r.oid, c.oid, 'SELECT'))
  FROM pg_roles r WHERE r.rolname = :role
""")


@dataclass(frozen=True)
class ReporterState:
    """hq_reporter as seen from hq's database and schema."""

    app_role: str
    database: str
    app_is_superuser: bool
    app_may_create_roles: bool
    exists: bool = False
    can_login: bool = False
    connection_limit: int = -1
    defaults: dict[str, str] = field(default_factory=dict)
    privileged: bool = False
    may_connect: bool = False
    may_use_schema: bool = False
    views: int = 0
    granted_views: int = 0
    readable_tables: int = 0

    @property
    def read_only(self) -> bool:
        return self.defaults.get(READ_ONLY[0], "off").lower() in _TRUE

    @property
    def problems(self) -> list[str]:
        """Why the reporter cannot (or should not) be used: empty when it is ready."""
        if not self.exists:
            return [f"role {ROLE} does not exist"]
        problems = []
        if not self.can_login:
            problems.append("it cannot log in")
        if self.privileged:
            problems.append("it has role attributes beyond LOGIN (superuser, CREATEROLE, ...)")
        if not self.read_only:
            problems.append("its sessions are not read-only by default")
        if not self.may_connect:
            problems.append(f"it may not connect to database {self.database}")
        if not self.may_use_schema:
            problems.append("it may not use hq's schema")
        if self.views == 0:
            problems.append("there are no report views (run hq db upgrade)")
        elif self.granted_views < self.views:
            problems.append(f"SELECT on {self.granted_views} of {self.views} report views")
        if self.readable_tables:
            problems.append(f"it may read {self.readable_tables} tables directly")
        return problems

    @property
    def missing_bounds(self) -> list[str]:
        """Lockdown a ready reporter still lacks (its defaults, a connection limit)."""
        missing = [name for name, _value in ROLE_DEFAULTS[1:] if name not in self.defaults]
        if self.connection_limit < 0:
            missing.append("a connection limit")
        return missing if self.exists else []

    @property
    def ready(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        if not self.exists:
            return f"{ROLE}: not set up (the role does not exist)"
        limit = "no connection limit" if self.connection_limit < 0 else f"connection limit {self.connection_limit}"
        facts = (
            f"login {'yes' if self.can_login else 'no'}, read-only {'yes' if self.read_only else 'no'}, "
            f"SELECT on {self.granted_views} of {self.views} report views, {limit}"
        )
        if self.problems:
            return f"{ROLE}: not ready: {'; '.join(self.problems)} ({facts})"
        if self.missing_bounds:
            return f"{ROLE}: ready, not fully bounded: no {', '.join(self.missing_bounds)} ({facts})"
        return f"{ROLE}: ready ({facts})"


def reporter_state(connection: Connection) -> ReporterState:
    app_role, database, superuser, may_create, views = connection.execute(_APP).one()
    base = {
        "app_role": app_role,
        "database": database,
        "app_is_superuser": bool(superuser),
        "app_may_create_roles": bool(may_create),
        "views": int(views),
    }
    row = connection.execute(_STATE, {"role": ROLE}).first()
    if row is None:
        return ReporterState(**base)
    login, limit, config, privileged, may_connect, may_use_schema, granted, tables = row
    defaults = dict(item.split("=", 1) for item in config if "=" in item)
    return ReporterState(
        **base,
        exists=True,
        can_login=bool(login),
        connection_limit=int(limit),
        defaults=defaults,
        privileged=bool(privileged),
        may_connect=bool(may_connect),
        may_use_schema=bool(may_use_schema),
        granted_views=int(granted),
        readable_tables=int(tables),
    )


def admin_sql(state: ReporterState, connection_limit: int) -> list[str]:
    """The statements an admin (a superuser, or a role with CREATEROLE) must run for the role itself.

    Grants on hq's views are not among them: the app role owns the views, and
    `hq db grant-reporter` gives them (run it after these).
    """

    role = sql.Identifier(ROLE)
    statements: list[sql.Composable] = []
    if not state.exists:
        statements.append(
            sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT CONNECTION LIMIT {}").format(
                role, sql.Literal(connection_limit)
            )
        )
    else:
        if state.privileged:
            statements.append(
                sql.SQL("ALTER ROLE {} NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS").format(role)
            )
        if not state.can_login:
            statements.append(sql.SQL("ALTER ROLE {} LOGIN").format(role))
        if state.connection_limit < 0:
            statements.append(sql.SQL("ALTER ROLE {} CONNECTION LIMIT {}").format(role, sql.Literal(connection_limit)))
    lines = [statement.as_string(None) + ";" for statement in statements]
    for name, value in ROLE_DEFAULTS:
        present = state.defaults.get(name)
        if present is not None and (name != READ_ONLY[0] or state.read_only):
            continue
        line = sql.SQL("ALTER ROLE {} SET {} = {}").format(role, sql.SQL(name), sql.Literal(value)).as_string(None)
        lines.append(line + ";" + ("  -- a superuser only" if name in SUPERUSER_ONLY else ""))
    if state.exists and not state.may_connect:
        lines.append(
            sql.SQL("GRANT CONNECT ON DATABASE {} TO {};").format(sql.Identifier(state.database), role).as_string(None)
        )
    return lines


def next_steps(state: ReporterState, connection_limit: int) -> list[str]:
    """What to do about a reporter that is not ready or not fully bounded, as lines to print (none: nothing)."""
    if state.ready and not state.missing_bounds:
        return []
    if state.views == 0:
        return ["run: hq db upgrade"]
    statements = admin_sql(state, connection_limit)
    if state.app_is_superuser or not statements or (not state.exists and state.app_may_create_roles):
        return ["run: hq db grant-reporter"]
    cannot = (
        "may not create roles (no CREATEROLE)"
        if not state.app_may_create_roles
        else f"may not alter {ROLE} (that needs ADMIN on it)"
    )
    lines = [f"role {state.app_role} {cannot}; an admin (a superuser, or a role with CREATEROLE) must run:"]
    lines += [f"    {statement}" for statement in statements]
    if not state.exists:
        lines.append(f"    -- for password logins, also give it a password, in psql: \\password {ROLE}")
    if not state.exists or not state.may_use_schema or state.granted_views < state.views or state.readable_tables > 0:
        lines.append("then, as hq's role: hq db grant-reporter")
    return lines


@dataclass(frozen=True)
class GrantResult:
    before: ReporterState
    after: ReporterState
    refused: list[str]

    def done(self) -> list[str]:
        """What changed, as lines to print."""
        before, after = self.before, self.after
        lines = []
        if not before.exists and after.exists:
            lines.append(f"created role {ROLE}")
        if after.granted_views > before.granted_views:
            lines.append(f"granted SELECT on {after.granted_views - before.granted_views} report views to {ROLE}")
        elif after.exists and after.views and after.granted_views == after.views:
            lines.append(f"SELECT on all {after.views} report views: already granted")
        if after.readable_tables < before.readable_tables:
            lines.append(f"revoked SELECT on {before.readable_tables - after.readable_tables} tables")
        for name, _value in ROLE_DEFAULTS:
            if after.defaults.get(name) != before.defaults.get(name) and name in after.defaults:
                lines.append(f"set {name} = {after.defaults[name]} for {ROLE}")
        if after.exists and before.exists and after.connection_limit != before.connection_limit:
            lines.append(f"connection limit {before.connection_limit} -> {after.connection_limit}")
        return lines


def grant_reporter(engine: Engine, settings: Settings, on_notice: NoticeHandler | None = None) -> GrantResult:
    """Apply the current reporter SQL (grants, read-only default, lockdown) in one transaction, idempotently."""
    from db.migrate import _LOCK_KEY, current_revision, head_revision  # db.migrate imports this module

    with engine.begin() as connection, capture_notices(connection, on_notice):
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})  # not during an upgrade
        current, head = current_revision(connection), head_revision()
        if current != head:
            raise StateError(
                f"the database is at revision {current or 'none (empty)'}, not {head}: run hq db upgrade first"
            )
        before = reporter_state(connection)
        connection.execute(
            text("SELECT set_config('hq.reporter_connection_limit', :limit, true)"),
            {"limit": str(settings.reporter_connection_limit)},
        )
        run_sql_file(connection, "reporter.sql")  # creates the role if the app role may; the grants
        refused = []
        now = reporter_state(connection)
        if now.exists and not now.read_only:
            try:
                with connection.begin_nested():
                    connection.execute(text(f"ALTER ROLE {ROLE} SET {READ_ONLY[0]} = {READ_ONLY[1]}"))
            except DBAPIError as error:
                if not isinstance(error.orig, InsufficientPrivilege):
                    raise
                refused.append(f"cannot make {ROLE}'s sessions read-only by default (needs CREATEROLE and ADMIN on it)")
        run_sql_file(connection, "reporter_lockdown.sql")  # TEMP revoked for the role, its bounds
        after = reporter_state(connection)
    return GrantResult(before, after, refused)
