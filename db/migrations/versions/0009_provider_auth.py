"""Issues may be blocked because the model provider refused our credentials (``provider_auth``).

The failure policy (workflows/lib/failures.py) blocks the work that met a 401/403
with this reason and tells a human once, instead of retrying forever. Re-adding the
CHECK scans issues under an exclusive lock held to the end of the upgrade (one
transaction, so NOT VALID would not shorten it): upgrade while `hq run` is stopped.

Revision ID: 0009
Revises: 0008
"""

from alembic import op

from db.sqlfiles import run_sql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_REASONS = "'agent', 'budget', 'max_attempts', 'review_rounds', 'circuit_breaker', 'waiting', 'verify', 'human'"


def upgrade() -> None:
    run_sql(op.get_bind(), f"""
        ALTER TABLE issues DROP CONSTRAINT issues_blocked_reason_check;
        ALTER TABLE issues ADD CONSTRAINT issues_blocked_reason_check
            CHECK (blocked_reason IN ({_REASONS}, 'provider_auth'));
    """)


def downgrade() -> None:
    run_sql(op.get_bind(), f"""
        UPDATE issues SET blocked_reason = 'agent' WHERE blocked_reason = 'provider_auth';
        ALTER TABLE issues DROP CONSTRAINT issues_blocked_reason_check;
        ALTER TABLE issues ADD CONSTRAINT issues_blocked_reason_check CHECK (blocked_reason IN ({_REASONS}));
    """)
