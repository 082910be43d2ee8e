"""Hot paths: storage settings for the busiest tables, session limits, single-statement budget functions.

Released, so frozen: it applies db/sql/frozen/ copies of the SQL it ran at release
(commit 6ece9b8), never the living db/sql files; later changes are new migrations.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

from db.sqlfiles import run_sql, run_sql_file

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    connection = op.get_bind()
    run_sql(connection, """
        -- Which reservation a cost row settled, and a row kind for calls that never settled.
        ALTER TABLE llm_calls ADD COLUMN reservation_id uuid;
        CREATE INDEX llm_calls_reservation_idx ON llm_calls (reservation_id) WHERE reservation_id IS NOT NULL;
        ALTER TABLE llm_calls DROP CONSTRAINT llm_calls_outcome_check;
        ALTER TABLE llm_calls ADD CONSTRAINT llm_calls_outcome_check
            CHECK (outcome IN ('ok', 'fallback', 'error', 'budget_refused', 'abandoned'));
    """)
    run_sql_file(connection, "frozen/hot_tables_0003.sql")
    run_sql_file(connection, "frozen/state_machine_0001.sql")  # triggers now fire only on the changes they watch
    run_sql_file(connection, "frozen/budget_0003.sql")


def downgrade() -> None:
    run_sql(op.get_bind(), """
        DROP FUNCTION IF EXISTS hq_abandon_reservations();
        DROP FUNCTION IF EXISTS hq_reserve_account(text, date, numeric, numeric);
        DELETE FROM llm_calls WHERE outcome = 'abandoned';
        ALTER TABLE llm_calls DROP CONSTRAINT llm_calls_outcome_check;
        ALTER TABLE llm_calls ADD CONSTRAINT llm_calls_outcome_check
            CHECK (outcome IN ('ok', 'fallback', 'error', 'budget_refused'));
        ALTER TABLE llm_calls DROP COLUMN reservation_id;
        DROP FUNCTION IF EXISTS hq_reserve(uuid, uuid, bigint, text, numeric, numeric, numeric, integer);
        DROP FUNCTION IF EXISTS hq_record_call(uuid, integer, bigint, integer, text, text, text, text, text,
                                               integer, integer, numeric, numeric, integer, text, text, uuid, text);
        ALTER TABLE issues RESET (fillfactor, autovacuum_vacuum_scale_factor, autovacuum_analyze_scale_factor);
        ALTER TABLE agents RESET (fillfactor, autovacuum_vacuum_scale_factor, autovacuum_vacuum_threshold,
                                  autovacuum_analyze_scale_factor);
        ALTER TABLE budget_accounts RESET (fillfactor, autovacuum_vacuum_scale_factor, autovacuum_vacuum_threshold);
        ALTER TABLE budget_reservations RESET (autovacuum_vacuum_scale_factor, autovacuum_vacuum_threshold);
        ALTER TABLE notifications RESET (fillfactor, autovacuum_vacuum_scale_factor);
        ALTER TABLE approvals RESET (fillfactor);
        ALTER TABLE issue_events RESET (autovacuum_vacuum_insert_scale_factor, autovacuum_analyze_scale_factor);
        ALTER TABLE llm_calls RESET (autovacuum_vacuum_insert_scale_factor, autovacuum_analyze_scale_factor);
        ALTER TABLE tool_calls RESET (autovacuum_vacuum_insert_scale_factor);
        ALTER TABLE heartbeat_runs RESET (fillfactor, autovacuum_vacuum_scale_factor);
    """)
