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
    run_sql_file(connection, "drop_report_views.sql")
    run_sql_file(connection, "views.sql")
    run_sql_file(connection, "reporter.sql")


def downgrade() -> None:
    connection = op.get_bind()
    run_sql_file(connection, "drop_report_views.sql")
    run_sql(connection, "DROP FUNCTION IF EXISTS hq_report_since(); DROP FUNCTION IF EXISTS hq_report_since_day();")
