"""Reports at scale: summaries kept by triggers, views that read them, indexes for the listing views.

Over existing data the summaries are computed once here (hq_rebuild_rollups);
from then on triggers keep them current.

Revision ID: 0004
Revises: 0003
"""

from alembic import op

from db.sqlfiles import run_sql, run_sql_file

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    connection = op.get_bind()
    run_sql(connection, """
        -- The sweeper looks for expired work only; claims have their own indexes.
        DROP INDEX IF EXISTS issues_expired_leases_idx;
        CREATE INDEX IF NOT EXISTS issues_expired_work_idx ON issues (lease_until) WHERE status = 'in_progress';
    """)
    run_sql_file(connection, "rollups.sql")
    run_sql_file(connection, "views.sql")
    run_sql_file(connection, "reporter.sql")  # re-grant the re-created views
    run_sql(connection, "SELECT hq_rebuild_rollups()")


def downgrade() -> None:
    """Back to 0003's indexes, without the summaries; the report views go with them (0002 re-creates them)."""
    run_sql(op.get_bind(), """
        DO $$ DECLARE v record; BEGIN
            FOR v IN SELECT viewname FROM pg_views WHERE schemaname = 'public' AND viewname LIKE 'report\\_%' LOOP
                EXECUTE format('DROP VIEW %I', v.viewname);
            END LOOP;
        END $$;
        DROP TRIGGER IF EXISTS llm_calls_rollup_insert ON llm_calls;
        DROP TRIGGER IF EXISTS llm_calls_rollup_delete ON llm_calls;
        DROP TRIGGER IF EXISTS issues_rollup_insert ON issues;
        DROP TRIGGER IF EXISTS issues_rollup_update ON issues;
        DROP TRIGGER IF EXISTS issues_subtree_own ON issues;
        DROP TRIGGER IF EXISTS issues_subtree_up ON issues;
        DROP TRIGGER IF EXISTS heartbeat_runs_finished_insert ON heartbeat_runs;
        DROP TRIGGER IF EXISTS heartbeat_runs_finished_update ON heartbeat_runs;
        DROP TABLE IF EXISTS usage_daily, usage_agent_monthly, issue_flow_daily, board_counts;
        DROP INDEX IF EXISTS issues_board_idx, issues_costliest_idx, issues_blocked_idx, issues_expired_work_idx;
        ALTER TABLE issues DROP COLUMN IF EXISTS subtree_cost_usd;
        ALTER TABLE agents DROP COLUMN IF EXISTS heartbeats, DROP COLUMN IF EXISTS claims,
                           DROP COLUMN IF EXISTS failed_beats, DROP COLUMN IF EXISTS productive_beats;
        CREATE INDEX IF NOT EXISTS issues_expired_leases_idx ON issues (lease_until) WHERE lease_until IS NOT NULL;
    """)
