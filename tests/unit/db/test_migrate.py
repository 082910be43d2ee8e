"""The head revision HQ reports is alembic's own."""

from __future__ import annotations

from db.migrate import head_revision


def test_head_revision_matches_alembic() -> None:
    from alembic.script import ScriptDirectory

    from db.migrate import alembic_config

    assert ScriptDirectory.from_config(alembic_config()).get_current_head() == head_revision()
