"""The released migrations: which commit released which head revision, and every revision there is."""

from __future__ import annotations

from db.migrate import MIGRATIONS_DIR

# Releases, oldest first: (the last commit on main with that head, its head revision). When
# releasing, freeze what the newly released migrations apply (git show <commit>:db/sql/<file>
# into db/sql/frozen/<file>_<rev>.sql, <rev> the first migration applying that text) and add it.
RELEASES = [("6ece9b8", "0004"), ("31e726c", "0008")]  # (commit, head revision) of each release

REVISIONS = sorted(p.name.split("_", 1)[0] for p in (MIGRATIONS_DIR / "versions").glob("[0-9]*_*.py"))
