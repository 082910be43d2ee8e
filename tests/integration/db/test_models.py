"""The ORM matches the SQL: db/models.py describes exactly the schema the migrations build."""

from __future__ import annotations

from sqlalchemy import create_engine

from db.models import Base

# Report summaries are written by triggers and read by views only: SQL owns them, the ORM never maps them.
SQL_ONLY_TABLES = {
    "alembic_version",
    "usage_daily",
    "usage_agent_monthly",
    "issue_flow_daily",
    "board_counts",
    "telegram_poller",  # Telegram's tables: named statements in db/sql/queries/telegram.sql only
    "telegram_updates",
    "telegram_prompts",
}


def test_orm_models_match_the_migrated_schema(db_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    engine = create_engine(db_url)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        diffs = [
            d
            for d in compare_metadata(context, Base.metadata)
            if not (isinstance(d, tuple) and d[0] in ("add_index", "remove_index"))
            and not (isinstance(d, tuple) and d[0] == "remove_table" and d[1].name in SQL_ONLY_TABLES)
        ]
    engine.dispose()
    assert diffs == []
