"""Reports at scale: summaries kept by triggers, views that read them, indexes for the listing views.

Over existing data the summaries are computed once here (hq_rebuild_rollups);
from then on triggers keep them current.

Released, so frozen: it applies db/sql/frozen/ copies of the SQL it ran at release
(commit 6ece9b8), never the living db/sql files; later changes are new migrations.

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
    run_sql_file(connection, "frozen/state_machine_0001.sql")  # hq_act_as(): who is acting, set in one call
    run_sql_file(connection, "frozen/rollups_0002.sql")
    run_sql_file(connection, "frozen/drop_report_views_0002.sql")
    run_sql_file(connection, "frozen/views_0002.sql")
    run_sql_file(connection, "frozen/reporter_0002.sql")  # re-grant the re-created views
    run_sql(connection, "SELECT hq_rebuild_rollups()")


def downgrade() -> None:
    """Back to 0003's indexes, without the summaries. The report views read the summaries, so they go too."""
    connection = op.get_bind()
    run_sql_file(connection, "frozen/drop_report_views_0002.sql")
    run_sql(connection, """
        DROP TRIGGER IF EXISTS llm_calls_rollup_insert ON llm_calls;
        DROP TRIGGER IF EXISTS llm_calls_rollup_delete ON llm_calls;
        DROP TRIGGER IF EXISTS issues_rollup_insert ON issues;
        DROP TRIGGER IF EXISTS issues_rollup_update ON issues;
        DROP TRIGGER IF EXISTS issues_subtree_own ON issues;
        DROP TRIGGER IF EXISTS issues_subtree_up ON issues;
        DROP TRIGGER IF EXISTS heartbeat_runs_finished_insert ON heartbeat_runs;
        DROP TRIGGER IF EXISTS heartbeat_runs_finished_update ON heartbeat_runs;
        DROP TABLE IF EXISTS usage_daily, usage_agent_monthly, issue_flow_daily, board_counts;
        DROP FUNCTION IF EXISTS hq_usage_rollup(), hq_issue_rollups(), hq_subtree_own(), hq_subtree_up(),
            hq_beat_finished(), hq_rebuild_rollups(), hq_board_enter(text, integer, bigint, timestamptz),
            hq_board_leave(text, integer, bigint), hq_flow_add(date, bigint, bigint, numeric),
            hq_bucket_percentile(bigint[], numeric[], float8), hq_one_hot(integer, integer, bigint),
            hq_bucket(numeric, numeric[]), hq_latency_bounds(), hq_cycle_bounds();
        DROP AGGREGATE IF EXISTS hq_sum_buckets(bigint[]);
        DROP FUNCTION IF EXISTS hq_add_buckets(bigint[], bigint[]);
        DROP INDEX IF EXISTS issues_board_idx, issues_costliest_idx, issues_blocked_idx, issues_expired_work_idx;
        ALTER TABLE issues DROP COLUMN IF EXISTS subtree_cost_usd;
        ALTER TABLE agents DROP COLUMN IF EXISTS heartbeats, DROP COLUMN IF EXISTS claims,
                           DROP COLUMN IF EXISTS failed_beats, DROP COLUMN IF EXISTS productive_beats;
        CREATE INDEX IF NOT EXISTS issues_expired_leases_idx ON issues (lease_until) WHERE lease_until IS NOT NULL;
    """)
