"""Released migrations apply only frozen SQL: every migration up to the last release runs files of
db/sql/frozen/, never the live db/sql/ text a later change may edit.
"""

from __future__ import annotations

import re

from db.migrate import MIGRATIONS_DIR
from db.sqlfiles import SQL_DIR
from tests.support.migrations import RELEASES, REVISIONS

RELEASE_COMMIT, RELEASED = RELEASES[-1]


# --- frozen SQL -------------------------------------------------------------------------------------

_APPLIED = re.compile(r"""run_sql_file\(\s*\w+\s*,\s*["']([^"']+)["']""")


def test_released_migrations_apply_only_frozen_sql() -> None:
    released = [p for p in sorted((MIGRATIONS_DIR / "versions").glob("[0-9]*_*.py")) if p.name[:4] <= RELEASED]
    assert [p.name[:4] for p in released] == [r for r in REVISIONS if r <= RELEASED]
    for path in released:
        source = path.read_text(encoding="utf-8")
        applied = _APPLIED.findall(source)
        assert applied or "run_sql(" in source, f"{path.name} applies no SQL?"  # inline SQL is frozen in place
        living = [name for name in applied if not name.startswith("frozen/")]
        assert living == [], f"{path.name} is released but applies living db/sql files {living}: freeze them"
        assert "read_sql(" not in source
        for name in applied:
            assert (SQL_DIR / name).is_file(), name
