"""Every function, trigger and report view as db/sql defines them now, whatever built the database.

Released migrations apply frozen SQL (db/sql/frozen/), but before they were
frozen, 0001–0004 re-applied whatever db/sql held when they ran, and 0004 was
edited after release. So "revision 0004" names several schemas: a database
migrated at commit eb52f80 has no hq_act_as(), which every write calls. This
migration re-applies the idempotent definition files — CREATE OR REPLACE
functions, DROP/CREATE triggers, report views dropped and re-created, their
grants — so any database at 0004..0007 leaves with head's definitions. On a
database this code built, it changes nothing.

Tables, columns and constraints are not re-applied here (schema.sql and
ledger.sql are not idempotent); they have not changed since release.

It reads the living db/sql files, as the newest migration may. Once released it
is frozen like the others: copy what it applies to db/sql/frozen/<file>_0008.sql,
and put later changes in a new migration.

Revision ID: 0008
Revises: 0007
"""

from alembic import op

from db.sqlfiles import run_sql, run_sql_file

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    connection = op.get_bind()
    run_sql_file(connection, "state_machine.sql")  # hq_act_as() and the rest of the state machine
    run_sql_file(connection, "budget.sql")
    run_sql_file(connection, "rollups.sql")
    # rollups.sql creates the DELETE trigger for databases before 0005; cost rows are append-only since.
    run_sql(connection, "DROP TRIGGER IF EXISTS llm_calls_rollup_delete ON llm_calls")
    run_sql_file(connection, "drop_report_views.sql")
    run_sql_file(connection, "views.sql")
    run_sql_file(connection, "reporter.sql")  # re-grant the re-created views


def downgrade() -> None:
    """Nothing to undo: on a database this code built, the upgrade changed nothing.

    What it repaired (definitions an older commit left behind) cannot be told
    apart from what 0007 defines today, and putting the broken definitions back
    would serve no one, so the database keeps head's definitions at 0007.
    """
