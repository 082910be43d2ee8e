"""Sub-issues are funded out of their parent's budget, and give back what they leave unused (issue 23, item 12).

``budget_carves`` records each carve (the child, its parent, the amount, what
came back); the ``issues_return_carve`` trigger (db/sql/carves.sql) moves a
terminal child's unused budget back to its parent exactly once. The per-run
tool-call caps (agents/tools/dispatch.py) count a run's ``tool_calls`` rows, so
they get an index on ``run_id``.

A new table, an AFTER trigger and an index: safe while `hq run` runs (an old
process still opens sub-issues the old way until it is restarted; those are
simply not carved, as before).

Revision ID: 0013
Revises: 0012
"""

from alembic import op

from db.sqlfiles import run_sql, run_sql_file

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    connection = op.get_bind()
    run_sql(
        connection,
        """
        CREATE TABLE budget_carves (
            child_id     bigint PRIMARY KEY REFERENCES issues (id),
            parent_id    bigint NOT NULL REFERENCES issues (id),
            amount_usd   numeric(12, 4) NOT NULL CHECK (amount_usd > 0),
            returned_usd numeric(12, 4) NOT NULL DEFAULT 0 CHECK (returned_usd >= 0 AND returned_usd <= amount_usd),
            created_at   timestamptz NOT NULL DEFAULT now(),
            returned_at  timestamptz
        );
        CREATE INDEX budget_carves_parent_idx ON budget_carves (parent_id);
        CREATE INDEX tool_calls_run_idx ON tool_calls (run_id);
    """,
    )
    run_sql_file(connection, "carves.sql")


def downgrade() -> None:
    connection = op.get_bind()
    run_sql(
        connection,
        """
        DROP TRIGGER IF EXISTS issues_return_carve ON issues;
        DROP FUNCTION IF EXISTS hq_return_carve();
        DROP INDEX IF EXISTS tool_calls_run_idx;
        DROP TABLE budget_carves;
    """,
    )
