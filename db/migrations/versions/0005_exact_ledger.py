"""The exact ledger: abandoned charges keyed by their reservation, late settlements as corrections, append-only cost rows.

Revision ID: 0005
Revises: 0004
"""

from alembic import op

from db.sqlfiles import run_sql, run_sql_file

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    connection = op.get_bind()
    run_sql_file(connection, "frozen/budget_0005.sql")  # hq_month first: the backfill uses it
    run_sql_file(connection, "frozen/ledger_0005.sql")
    run_sql_file(connection, "frozen/rollups_0005.sql")  # a correction row is money, not a call
    run_sql(connection, "DROP TRIGGER IF EXISTS llm_calls_rollup_delete ON llm_calls")  # re-created just above


def downgrade() -> None:
    """Back to 0004's ledger: a late settlement then deleted the abandoned row instead of correcting it."""
    connection = op.get_bind()
    run_sql(connection, """
        DROP TRIGGER llm_calls_append_only ON llm_calls;
        DROP TRIGGER llm_calls_no_truncate ON llm_calls;
        DROP TRIGGER issue_events_no_truncate ON issue_events;
        DROP FUNCTION hq_refuse_rewrite();
        CREATE TRIGGER llm_calls_rollup_delete AFTER DELETE ON llm_calls
            REFERENCING OLD TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION hq_usage_rollup();
        -- What 0004 kept instead of a correction: neither the abandoned row nor the correction.
        DELETE FROM llm_calls a USING llm_calls c
         WHERE c.outcome = 'correction' AND a.outcome = 'abandoned' AND a.reservation_id = c.reservation_id;
        DELETE FROM llm_calls WHERE outcome = 'correction';
        -- 0004 numbered abandoned rows -1, -2, ... within their run.
        WITH numbered AS (
            SELECT id, -row_number() OVER (PARTITION BY run_id ORDER BY id)
                       - coalesce((SELECT -min(call_seq) FROM llm_calls o WHERE o.run_id = l.run_id AND call_seq < 0), 0)
                       AS seq
              FROM llm_calls l WHERE call_seq IS NULL
        )
        UPDATE llm_calls l SET call_seq = numbered.seq FROM numbered WHERE l.id = numbered.id;
        DROP INDEX llm_calls_abandoned_key, llm_calls_correction_key;
        ALTER TABLE llm_calls DROP CONSTRAINT llm_calls_keyed_check;
        ALTER TABLE llm_calls DROP CONSTRAINT llm_calls_cost_usd_check;
        ALTER TABLE llm_calls ADD CONSTRAINT llm_calls_cost_usd_check CHECK (cost_usd >= 0);
        ALTER TABLE llm_calls DROP CONSTRAINT llm_calls_outcome_check;
        ALTER TABLE llm_calls ADD CONSTRAINT llm_calls_outcome_check
            CHECK (outcome IN ('ok', 'fallback', 'error', 'budget_refused', 'abandoned'));
        ALTER TABLE llm_calls ALTER COLUMN call_seq SET NOT NULL;
        ALTER TABLE llm_calls DROP COLUMN budget_month;
        DROP FUNCTION hq_move_money(bigint, text, date, numeric, numeric);
    """)
    run_sql_file(connection, "frozen/budget_0003.sql")
    run_sql(connection, "DROP FUNCTION hq_month(timestamptz)")
