"""Project environments and evidence by tree: two block reasons, and what a check result is keyed by.

``project_env``: the project's environment setup failed (not the agent's work: no attempt or round is
counted, and no model is asked). ``no_progress``: the work came back for review on a tree already
gated red, so asking the engineer again on the same evidence would pay twice for nothing.

``check_runs.tree_sha`` and ``env_key``: a command's result is determined by the files it ran on (the
git tree, not the commit: a merge of an unmoved base has its head's tree) and the environment it ran
against (projects/repo/environment.py), so a result already recorded for that key is reused instead of
run again. Rows written before this migration have neither and are never reused.

``issues.reviewed_sha``: the branch head the last passing review saw. With results reused by tree, a
review may run nothing and record no row; deploy ships the head only when it is exactly the one reviewed.

Nullable columns are instant; the blocked-reason CHECK is re-added under a lock held to the end of the
upgrade: upgrade while `hq run` is stopped.

Revision ID: 0015
Revises: 0014
"""

from alembic import op

from db.sqlfiles import run_sql

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

_REASONS = (
    "'agent', 'budget', 'max_attempts', 'review_rounds', 'circuit_breaker', 'waiting', 'verify', 'human', "
    "'provider_auth', 'project_config'"
)
_SHA = "'^[0-9a-f]{40}([0-9a-f]{24})?$'"


def upgrade() -> None:
    run_sql(
        op.get_bind(),
        f"""
        ALTER TABLE issues DROP CONSTRAINT issues_blocked_reason_check;
        ALTER TABLE issues ADD CONSTRAINT issues_blocked_reason_check
            CHECK (blocked_reason IN ({_REASONS}, 'project_env', 'no_progress'));
        ALTER TABLE check_runs ADD COLUMN tree_sha text CHECK (tree_sha ~ {_SHA});
        ALTER TABLE check_runs ADD COLUMN env_key text CHECK (env_key ~ '^[0-9a-f]{{32}}$');
        CREATE INDEX check_runs_tree_idx ON check_runs (project_id, tree_sha, command, id)
            WHERE tree_sha IS NOT NULL;
        ALTER TABLE issues ADD COLUMN reviewed_sha text CHECK (reviewed_sha ~ {_SHA});
    """,
    )


def downgrade() -> None:
    run_sql(
        op.get_bind(),
        f"""
        ALTER TABLE issues DROP COLUMN reviewed_sha;
        DROP INDEX check_runs_tree_idx;
        ALTER TABLE check_runs DROP COLUMN env_key;
        ALTER TABLE check_runs DROP COLUMN tree_sha;
        UPDATE issues SET blocked_reason = 'agent' WHERE blocked_reason IN ('project_env', 'no_progress');
        ALTER TABLE issues DROP CONSTRAINT issues_blocked_reason_check;
        ALTER TABLE issues ADD CONSTRAINT issues_blocked_reason_check CHECK (blocked_reason IN ({_REASONS}));
    """,
    )
