"""Long runs and daily operation: what a running issue is doing, who owns a project's issues, its branches.

``issues.lease_worker``, ``doing`` and ``doing_since``: a run that works for many minutes renews its lease
(workflows/lib/leases.py) and says on the row what it is doing now (a project command, a Claude Code
session, a model's tool loop), since when and on which host, so ``hq issue show`` and ``hq issues`` can
tell a long run from a stuck one. Only meaningful while ``lease_owner`` is set and ``lease_until`` is in
the future; a finished run leaves them behind and nothing reads them then. Renewals change neither the
status nor a hand-off column, so they fire no trigger.

``projects.team_id``: the manager whose reports take the project's issues (``hq project add --team``);
routing prefers them, and roles that do code work, over keyword matches anywhere in the company.
``projects.keep_branches``: a done or cancelled issue's ``hq/issue-<id>`` branch is deleted from the
remote after the merge unless the project keeps them.

Nullable columns and a constant default: instant, safe while `hq run` runs.

Revision ID: 0016
Revises: 0015
"""

from alembic import op

from db.sqlfiles import run_sql

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql(
        op.get_bind(),
        """
        ALTER TABLE issues ADD COLUMN lease_worker text CHECK (length(lease_worker) <= 300);
        ALTER TABLE issues ADD COLUMN doing text CHECK (length(doing) <= 300);
        ALTER TABLE issues ADD COLUMN doing_since timestamptz;
        ALTER TABLE projects ADD COLUMN team_id integer REFERENCES agents (id);
        ALTER TABLE projects ADD COLUMN keep_branches boolean NOT NULL DEFAULT false;
    """,
    )


def downgrade() -> None:
    run_sql(
        op.get_bind(),
        """
        ALTER TABLE projects DROP COLUMN keep_branches;
        ALTER TABLE projects DROP COLUMN team_id;
        ALTER TABLE issues DROP COLUMN doing_since;
        ALTER TABLE issues DROP COLUMN doing;
        ALTER TABLE issues DROP COLUMN lease_worker;
    """,
    )
