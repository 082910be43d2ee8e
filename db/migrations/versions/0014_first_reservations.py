"""A month's first reservations made at the same moment are all taken when the limit covers them.

``hq_reserve_account`` used to look for the month's account in one statement and, finding none, check again
in the next: a row committed by a concurrent first caller between the two read as "exists and cannot cover
it", and the call was refused as "budget exhausted: company" with the month untouched (a gateway serving
eight calls at once answered one of them 400). The function now creates the row first, waiting out a
concurrent creator, and decides on what a fresh UPDATE finds. Same signature, so an old process keeps
working; ``CREATE OR REPLACE``, safe while `hq run` runs.

Revision ID: 0014
Revises: 0013
"""

from alembic import op

from db.sqlfiles import run_sql_file

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file(op.get_bind(), "budget.sql")


def downgrade() -> None:
    """Nothing to undo: the fixed function serves 0013's schema as it is, and the old one had the race."""
