"""Which kind of project an issue's work lives in: the one place that asks.

An issue of a git project is worked in its repository; every other issue, and the assembly of a
decomposed issue's parts (each part ships its own code by merge; the parent's result is the assembly
of theirs), is a document issue.
"""

from __future__ import annotations

from sqlalchemy.engine import Engine

from config.settings import Settings
from db import store
from projects.document.project import DocumentProject
from projects.kinds import EnvironmentFailed, Project, ProjectUnusable, Run
from projects.repo.project import GitProject
from projects.repo.project_file import ProjectConfigError

PROJECT_FAILURES = (ProjectConfigError, EnvironmentFailed, ProjectUnusable)
"""What a project's prepare, evidence and ship raise: a broken project file or environment blocks the
issue; the rest counts an attempt."""


def project_for(settings: Settings, engine: Engine, run: Run) -> Project:
    issue = run.held.issue
    assembly = issue.playbook is not None and issue.module_key is None
    if issue.project_id is not None and not assembly:
        with run.tx() as session:
            return GitProject(settings, store.get_project(session, issue.project_id), run)
    return DocumentProject(settings, engine, run, assembly=assembly)
