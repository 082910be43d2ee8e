"""upkeep: this host's housekeeping of the git projects, run on a timer by every `hq run` (and `hq run --once`).

Per live project (projects/repo/upkeep.py): the branches of done and cancelled issues deleted from the
remote, worktrees no live run holds removed, the clone garbage-collected when no run uses it, old and
half-built environments pruned. What it removes is on this host's disk or is an issue branch whose issue
is over, so several processes may run it at once: each step is idempotent, and the locks the runs take
(projects/repo/) keep it off anything in use. It writes no rows.
"""

from __future__ import annotations

from sqlalchemy.engine import Engine

from config.log import get_logger
from config.settings import Settings
from db import store
from db.engine import read_only
from projects.repo.upkeep import Finished, Tidied, tidy

NAME = "upkeep"

log = get_logger(__name__)


def run(settings: Settings, engine: Engine) -> dict[str, Tidied]:
    """One pass over every live project; what it did, by project name."""
    with read_only(engine) as session:
        projects = [project for project, _open in store.all_projects(session)]

    def finished(project_id: int) -> Finished:
        def read(issue_ids: list[int]) -> set[int]:
            with read_only(engine) as session:
                return store.finished_issues(session, project_id, issue_ids)

        return read

    return {project.name: tidy(settings, project, finished(project.id)) for project in projects}
