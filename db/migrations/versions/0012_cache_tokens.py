"""Cost rows count prompt-cache tokens: ``llm_calls.cache_write_tokens`` and ``cache_read_tokens``.

A coding agent's calls reach HQ through the model gateway (agents/runtimes/gateway.py)
and are settled to the provider's own usage, in which writing to the prompt cache
and reading from it are billed at their own prices. The row keeps both counts, so
``cost_usd`` can be checked against usage × price for every kind of token.
``hq_record_call`` takes the two counts; its old signature is dropped, not
overloaded, so no caller can write a row that forgets them.

Columns with a constant default: instant, safe while `hq run` runs (an old
process's calls to the old signature fail and its reservations are swept).

Revision ID: 0012
Revises: 0011
"""

from alembic import op

from db.sqlfiles import run_sql, run_sql_file

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_OLD_RECORD_CALL = (
    "hq_record_call(uuid, integer, bigint, integer, text, text, text, text, text, integer, integer, numeric, "
    "numeric, integer, text, text, uuid, text)"
)
_NEW_RECORD_CALL = (
    "hq_record_call(uuid, integer, bigint, integer, text, text, text, text, text, integer, integer, integer, "
    "integer, numeric, numeric, integer, text, text, uuid, text)"
)


def upgrade() -> None:
    connection = op.get_bind()
    run_sql(
        connection,
        f"""
        ALTER TABLE llm_calls ADD COLUMN cache_write_tokens integer NOT NULL DEFAULT 0
            CHECK (cache_write_tokens >= 0);
        ALTER TABLE llm_calls ADD COLUMN cache_read_tokens integer NOT NULL DEFAULT 0
            CHECK (cache_read_tokens >= 0);
        DROP FUNCTION {_OLD_RECORD_CALL};
    """,
    )
    run_sql_file(connection, "budget.sql")


def downgrade() -> None:
    connection = op.get_bind()
    run_sql(connection, f"DROP FUNCTION {_NEW_RECORD_CALL}")
    run_sql_file(connection, "frozen/budget_0005.sql")
    run_sql(
        connection,
        """
        ALTER TABLE llm_calls DROP COLUMN cache_read_tokens;
        ALTER TABLE llm_calls DROP COLUMN cache_write_tokens;
    """,
    )
