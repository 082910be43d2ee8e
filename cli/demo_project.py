"""The demo's sample project: a small Python repository under the data dir, and two issues on it.

The repository's test for ``mul`` fails until the feature exists. The first issue
brings ``mul`` (its code passes the gate and ships: merged and verified); the
second, once the first is done, brings ``mean`` whose first code fails its own
test and comes back with the test output; the manager escalates it to a human,
and the demo (playing that human) answers with corrected code, which ships.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROJECT_YAML = """\
commands:
  test: [python3, -m, unittest, discover, -q]
gate: [test]
"""
CALC = """\
def add(a, b):
    return a + b
"""
TEST_CALC = """\
import unittest

from calc import add, mul


class CalcTest(unittest.TestCase):
    def test_add(self):
        self.assertEqual(add(2, 3), 5)

    def test_mul(self):
        self.assertEqual(mul(4, 3), 12)
"""
CALC_WITH_MUL = (
    CALC
    + """\


def mul(a, b):
    return a * b
"""
)
TEST_STATS = """\
import unittest

from stats import mean


class MeanTest(unittest.TestCase):
    def test_mean(self):
        self.assertEqual(mean([1, 2]), 1.5)
"""
STATS_BUGGY = """\
def mean(values):
    return sum(values) // len(values)
"""
STATS_FIXED = """\
def mean(values):
    if not values:
        raise ValueError("mean of nothing")
    return sum(values) / len(values)
"""


def fenced(path: str, content: str) -> str:
    return f"```python file={path}\n{content}```\n"


@dataclass(frozen=True)
class SampleIssue:
    title: str
    body: str
    path: str
    human_note: str | None = None  # what the demo, as the human, answers when the issue reaches it


SAMPLE_ISSUES = (
    SampleIssue(
        "Add mul() to the calculator",
        "The test for mul fails: add the function.\n\n" + fenced("calc.py", CALC_WITH_MUL),
        "code passes the gate: merged and verified",
    ),
    SampleIssue(
        "Add mean() to the stats helpers [offline:escalate]",
        "Add `mean` with its test.\n\n" + fenced("stats.py", STATS_BUGGY) + "\n" + fenced("test_stats.py", TEST_STATS),
        "tests fail, back with the output; fixed code ships",
        human_note="Integer division truncates; use this instead:\n\n" + fenced("stats.py", STATS_FIXED),
    ),
)


def create_remote(data_dir: Path) -> Path:
    """A fresh bare repository (the project's remote) under the data dir, holding the sample project."""
    root = data_dir / "demo-projects"
    root.mkdir(parents=True, exist_ok=True)
    number = 1 + sum(1 for _ in root.glob("sample-*.git"))
    remote = root / f"sample-{number}.git"
    source = root / f"sample-{number}-source"
    source.mkdir()
    (source / ".hq").mkdir()
    for name, content in {".hq/project.yaml": PROJECT_YAML, "calc.py": CALC, "test_calc.py": TEST_CALC}.items():
        (source / name).write_text(content, encoding="utf-8")
    from projects.git import run_git  # hardened like every git call HQ makes

    run_git(source, "init", "-q", "-b", "main")
    run_git(source, "add", "-A")
    run_git(
        source,
        "commit",
        "-q",
        "-m",
        "A calculator whose test for mul fails",
        author="Demo",
        email="demo@heartbeat-hq.invalid",
    )
    remote.mkdir()
    run_git(None, "init", "-q", "--bare", "-b", "main", git_dir=remote)
    run_git(source, "push", "-q", str(remote), "main", remote=True)
    return remote


def seed(session: Any, settings: Any, *, actor: str, goal_id: int) -> tuple[str, dict[int, SampleIssue]]:
    """The sample project and its two issues (the second waits for the first); returns the project's name."""
    from config.errors import ConfigError
    from db import store

    remote = create_remote(settings.data_path)
    project = store.add_project(session, name=remote.stem, repo=str(remote), base_branch="main", actor=actor)
    engineer = store.agent_by_slug(session, "backend-engineer")
    if engineer is None:
        raise ConfigError("the demo's sample project needs the backend-engineer role")
    issues: dict[int, SampleIssue] = {}
    for sample in SAMPLE_ISSUES:
        draft = store.validate_draft(title=sample.title, body=sample.body, depends_on=list(issues))
        issue = store.create_issue(
            session,
            draft,
            actor=actor,
            assignee=engineer,
            goal_id=goal_id,
            project_id=project.id,
            default_budget_usd=settings.default_issue_budget_usd,
            max_attempts=settings.max_attempts,
        )
        issues[issue.id] = sample
    return project.name, issues


def merged_log(settings: Any, name: str) -> list[str]:
    """``git log --oneline`` of the sample project's base branch, as the remote has it now."""
    from db import store
    from db.engine import read_only
    from projects.repo.repository import Repository

    with read_only() as session:
        project = store.project_by_name(session, name)
    return Repository(settings, project).sync().log(project.base_branch)
