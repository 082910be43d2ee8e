"""Initial schema: tables, the issue state machine and its triggers.

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
    run_sql_file(connection, "schema.sql")
    run_sql_file(connection, "state_machine.sql")


def downgrade() -> None:
    raise NotImplementedError("the initial schema is not reversible; restore from a backup instead")
