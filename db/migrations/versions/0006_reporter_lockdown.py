"""The reporter locked down: security-barrier views, no TEMP, no advisory locks, bounded sessions.

What the migrating role may not do is skipped with a NOTICE (db/sql/reporter_lockdown.sql
says what needs the database owner, CREATEROLE or a superuser). The connection limit
comes from HQ_REPORTER_CONNECTION_LIMIT (default 10); change it and run the SQL file
again, or `ALTER ROLE hq_reporter CONNECTION LIMIT n` by hand.

Revision ID: 0006
Revises: 0005
"""

from alembic import op
from sqlalchemy import text

from db.sqlfiles import run_sql, run_sql_file

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    from config.settings import get_settings

    connection = op.get_bind()
    connection.execute(text("SELECT set_config('hq.reporter_connection_limit', :limit, true)"),
                       {"limit": str(get_settings().reporter_connection_limit)})
    run_sql_file(connection, "frozen/reporter_lockdown_0006.sql")


def downgrade() -> None:
    """PUBLIC gets TEMP and the advisory lock functions back; the role loses its limits.

    The views keep their security barrier: views.sql defines them that way at every
    revision, so a downgraded database matches one freshly migrated to 0005. The
    statement_timeout default stays too (0003 set it). Role settings are
    cluster-wide: downgrading one database lifts them for hq_reporter everywhere.
    """
    run_sql(op.get_bind(), """
        DO $$
        DECLARE
            lock_function regprocedure;
            owner oid := (SELECT datdba FROM pg_database WHERE datname = current_database());
        BEGIN
            IF pg_has_role(current_user, owner, 'USAGE') THEN
                EXECUTE format('GRANT TEMPORARY ON DATABASE %I TO PUBLIC', current_database());
                IF (SELECT oid FROM pg_roles WHERE rolname = current_user) <> owner THEN
                    EXECUTE format('REVOKE TEMPORARY ON DATABASE %I FROM %I', current_database(), current_user);
                END IF;
            END IF;
            FOR lock_function IN SELECT oid::regprocedure FROM pg_proc
                                  WHERE pronamespace = 'pg_catalog'::regnamespace
                                    AND (proname ~ '^pg_(try_)?advisory_'
                                         OR proname IN ('lo_creat', 'lo_create', 'lo_from_bytea', 'lo_import',
                                                        'lo_open', 'lo_put', 'lowrite', 'lo_truncate',
                                                        'lo_truncate64', 'lo_unlink'))
                                    AND pg_has_role(current_user, proowner, 'USAGE') LOOP
                EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO PUBLIC', lock_function);
                IF (SELECT proowner FROM pg_proc WHERE oid = lock_function) <> (SELECT oid FROM pg_roles
                                                                                   WHERE rolname = current_user) THEN
                    EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM %I', lock_function, current_user);
                END IF;
            END LOOP;
        END
        $$;

        DO $$
        BEGIN
            IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'hq_reporter') THEN
                RETURN;
            END IF;
            BEGIN
                ALTER ROLE hq_reporter CONNECTION LIMIT -1;
                ALTER ROLE hq_reporter RESET idle_in_transaction_session_timeout;
            EXCEPTION WHEN insufficient_privilege THEN
                RAISE NOTICE 'cannot alter role hq_reporter: its connection limit and timeouts stay';
            END;
            BEGIN
                ALTER ROLE hq_reporter RESET temp_file_limit;
            EXCEPTION WHEN insufficient_privilege THEN
                RAISE NOTICE 'not a superuser: temp_file_limit for hq_reporter stays';
            END;
        END
        $$;
    """)
