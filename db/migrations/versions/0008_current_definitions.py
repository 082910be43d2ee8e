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
frozen/ledger_0005.sql are not idempotent); they have not changed since release.

Released with 0005-0007, so frozen like them: it applies db/sql/frozen/ copies
of the definitions as they were at release; later changes are new migrations.

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
    run_sql_file(connection, "frozen/state_machine_0001.sql")  # hq_act_as() and the rest of the state machine
    run_sql_file(connection, "frozen/budget_0005.sql")
    run_sql_file(connection, "frozen/rollups_0005.sql")
    # rollups.sql creates the DELETE trigger for databases before 0005; cost rows are append-only since.
    run_sql(connection, "DROP TRIGGER IF EXISTS llm_calls_rollup_delete ON llm_calls")
    run_sql_file(connection, "frozen/drop_report_views_0002.sql")
    run_sql_file(connection, "frozen/views_0008.sql")
    run_sql_file(connection, "frozen/reporter_0008.sql")  # re-grant the re-created views


def downgrade() -> None:
    """Nothing to undo: on a database this code built, the upgrade changed nothing.

    What it repaired (definitions an older commit left behind) cannot be told
    apart from what 0007 defines today, and putting the broken definitions back
    would serve no one, so the database keeps head's definitions at 0007.
    """
