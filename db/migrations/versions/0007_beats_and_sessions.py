"""Beat outcomes for a beat that gave work back to an outage (degraded) and one that died unrecorded (lost);
and no database-wide session default any more.

Migration 0003 set ``idle_in_transaction_session_timeout`` for the whole database,
which reached every other client of it. hq's own sessions set their limits
themselves (db/engine.py), so the database default is removed where the
migrating role may (the owner).

Revision ID: 0007
Revises: 0006
"""

from alembic import op

from db.sqlfiles import run_sql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_OUTCOMES = "'ok', 'idle', 'error', 'timeout', 'interrupted'"
_DATABASE_SETTING = """
    DO $$
    BEGIN
        EXECUTE format('ALTER DATABASE %I {action}', current_database());
    EXCEPTION WHEN insufficient_privilege THEN
        RAISE NOTICE 'not the database owner: the database-wide setting stays as it is';
    END
    $$;
"""


def upgrade() -> None:
    run_sql(op.get_bind(), f"""
        ALTER TABLE heartbeat_runs DROP CONSTRAINT heartbeat_runs_outcome_check;
        ALTER TABLE heartbeat_runs ADD CONSTRAINT heartbeat_runs_outcome_check
            CHECK (outcome IN ({_OUTCOMES}, 'degraded', 'lost'));
        -- The sweeper finds unfinished beats without reading every beat ever recorded.
        CREATE INDEX heartbeat_runs_open_idx ON heartbeat_runs (id) WHERE finished_at IS NULL;
    """)
    run_sql(op.get_bind(), _DATABASE_SETTING.format(action="RESET idle_in_transaction_session_timeout"))


def downgrade() -> None:
    run_sql(op.get_bind(), _DATABASE_SETTING.format(action="SET idle_in_transaction_session_timeout = ''5min''"))
    run_sql(op.get_bind(), f"""
        DROP INDEX heartbeat_runs_open_idx;
        UPDATE heartbeat_runs SET outcome = 'error' WHERE outcome = 'lost';
        UPDATE heartbeat_runs SET outcome = 'ok' WHERE outcome = 'degraded';
        ALTER TABLE heartbeat_runs DROP CONSTRAINT heartbeat_runs_outcome_check;
        ALTER TABLE heartbeat_runs ADD CONSTRAINT heartbeat_runs_outcome_check CHECK (outcome IN ({_OUTCOMES}));
    """)
