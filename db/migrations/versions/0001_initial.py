"""Initial schema: tables, the issue state machine and its triggers.

Released, so frozen: it applies db/sql/frozen/ copies of the SQL it ran at release
(commit 6ece9b8), never the living db/sql files; later changes are new migrations.

Revision ID: 0001
Revises:
"""

from alembic import op

from db.sqlfiles import run_sql_file

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    connection = op.get_bind()
    run_sql_file(connection, "frozen/schema_0001.sql")
    run_sql_file(connection, "frozen/state_machine_0001.sql")


def downgrade() -> None:
    raise NotImplementedError("the initial schema is not reversible; restore from a backup instead")
