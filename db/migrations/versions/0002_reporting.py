"""Reporting: the report_* views and the read-only hq_reporter role.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

from db.sqlfiles import run_sql, run_sql_file

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    connection = op.get_bind()
    run_sql_file(connection, "rollups.sql")  # the summaries the views read (also re-applied by 0004)
    run_sql_file(connection, "views.sql")
    run_sql_file(connection, "reporter.sql")


def downgrade() -> None:
    run_sql(op.get_bind(), """
        DO $$ DECLARE v record; BEGIN
            FOR v IN SELECT viewname FROM pg_views WHERE schemaname = 'public' AND viewname LIKE 'report\\_%' LOOP
                EXECUTE format('DROP VIEW %I', v.viewname);
            END LOOP;
        END $$;
        DROP FUNCTION IF EXISTS hq_report_since();
    """)
