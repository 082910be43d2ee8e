"""Reporting: the report_* views and the read-only hq_reporter role.

Released, so frozen: it applies db/sql/frozen/ copies of the SQL it ran at release
(commit 6ece9b8), never the living db/sql files; later changes are new migrations.

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
    run_sql_file(connection, "frozen/rollups_0002.sql")  # the summaries the views read (also re-applied by 0004)
    run_sql_file(connection, "frozen/drop_report_views_0002.sql")
    run_sql_file(connection, "frozen/views_0002.sql")
    run_sql_file(connection, "frozen/reporter_0002.sql")


def downgrade() -> None:
    connection = op.get_bind()
    run_sql_file(connection, "frozen/drop_report_views_0002.sql")
    run_sql(connection, "DROP FUNCTION IF EXISTS hq_report_since(); DROP FUNCTION IF EXISTS hq_report_since_day();")
