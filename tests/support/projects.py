"""Real git projects for tests: a bare remote holding a small Python project, and beats that drive an issue."""

from __future__ import annotations

import itertools
import shutil
import subprocess
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import psycopg
import pytest

from agents.tools.context import ToolContext
from agents.tools.dispatch import ToolResult, dispatch
from config.settings import get_settings
from db import store
from db.engine import get_engine, read_only
from projects.repo.work import RepoWork, prepare
from projects.watch import Watch
from scheduler.heartbeat import BeatContext, run_beat
from tests.support.rows import agent_record, one

needs_bwrap = pytest.mark.skipif(
    shutil.which("bwrap") is None, reason="bubblewrap is not installed (`make sandbox-deps` installs it)"
)

PROJECT_YAML = "commands:\n  test: [python3, -m, unittest, -q]\ngate: [test]\n"
CALC = "def add(a, b):\n    return a + b\n"
TESTS = (
    "import unittest\n\nfrom calc import add, mul\n\n\n"
    "class CalcTest(unittest.TestCase):\n"
    "    def test_add(self):\n        self.assertEqual(add(2, 3), 5)\n\n"
    "    def test_mul(self):\n        self.assertEqual(mul(2, 3), 6)\n"
)
GOOD_MUL = "def add(a, b):\n    return a + b\n\n\ndef mul(a, b):\n    return a * b\n"
BAD_MUL = "def add(a, b):\n    return a + b\n\n\ndef mul(a, b):\n    return a + b\n"
# A base whose tests pass, for issues that each add a module of their own (and its test).
ADD_TESTS = (
    "import unittest\n\nfrom calc import add\n\n\n"
    "class AddTest(unittest.TestCase):\n    def test_add(self):\n        self.assertEqual(add(2, 3), 5)\n"
)
# The agents of the code path: the engineer does the work, its lead reviews, devops ships.
PIPELINE = ("backend-engineer", "eng-lead-platform", "devops-engineer")
ENGINEER, LEAD, DEVOPS = PIPELINE
_clones = itertools.count()


def tool_result_texts(body: dict[str, Any]) -> list[str]:
    """Every tool_result's text a Messages API request carries back to the model, oldest first."""
    found = []
    for message in body["messages"]:
        for block in message["content"] if isinstance(message["content"], list) else []:
            if block.get("type") != "tool_result":
                continue
            content = block["content"]
            found.append(content if isinstance(content, str) else "".join(p.get("text", "") for p in content))
    return found


def git(cwd: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", "-c", "user.name=Test", "-c", "user.email=test@example.invalid", *args],
        cwd=cwd, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return result.stdout


def make_remote(
    root: Path,
    files: Mapping[str, str | bytes] | None = None,
    name: str = "remote.git",
    links: Mapping[str, str] | None = None,
) -> Path:
    """A bare repository (the remote every host shares) whose main branch holds ``files`` (text, or bytes as they
    are) and symlinks ``links``."""
    source = root / f"{name}-source"
    source.mkdir(parents=True)
    git(source, "init", "-q", "-b", "main")
    for path, content in (files if files is not None else sample_files()).items():
        (source / path).parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            (source / path).write_bytes(content)
        else:
            (source / path).write_text(content)
    for path, target in (links or {}).items():
        (source / path).parent.mkdir(parents=True, exist_ok=True)
        (source / path).symlink_to(target)
    git(source, "add", "-A")
    git(source, "commit", "-q", "-m", "The project before HQ")
    remote = root / name
    git(root, "clone", "-q", "--bare", str(source), str(remote))
    return remote


def sample_files() -> dict[str, str]:
    """calc.py without mul, and a test of mul: the tests fail until an issue adds it."""
    return {".hq/project.yaml": PROJECT_YAML, "calc.py": CALC, "test_calc.py": TESTS}


def passing_files(project_yaml: str = PROJECT_YAML) -> dict[str, str]:
    """calc.py and a test that passes: issues add modules beside it."""
    return {".hq/project.yaml": project_yaml, "calc.py": CALC, "test_calc.py": ADD_TESTS}


def module_files(name: str, body: str, test: str) -> dict[str, str]:
    """``name.py`` holding ``body`` and ``test_name.py`` asserting ``test`` (an expression)."""
    test_file = (
        f"import unittest\n\nimport {name}\n\n\n"
        f"class {name.title()}Test(unittest.TestCase):\n    def test_it(self):\n        self.assertTrue({test})\n"
    )
    return {f"{name}.py": body, f"test_{name}.py": test_file}


def fenced(path: str, content: str) -> str:
    return f"```python file={path}\n{content}```\n"


def fenced_all(files: Mapping[str, str]) -> str:
    return "\n".join(fenced(path, content) for path, content in files.items())


def add_project(
    raw: psycopg.Connection, remote: Path, name: str = "calc", branch: str = "main", *, keep_branches: bool = False
) -> int:
    (project_id,) = one(
        raw.execute(
            "INSERT INTO projects (name, repo, base_branch, created_by, keep_branches) "
            "VALUES (%s, %s, %s, 'test', %s) RETURNING id",
            (name, str(remote), branch, keep_branches),
        ).fetchone()
    )
    return int(project_id)


def project_issue(raw: psycopg.Connection, project_id: int, title: str, body: str, assignee: str = PIPELINE[0]) -> int:
    (issue_id,) = one(
        raw.execute(
            "INSERT INTO issues (title, body, status, assignee_id, project_id, created_by) "
            "SELECT %s, %s, 'todo', id, %s, 'test' FROM agents WHERE slug = %s RETURNING id",
            (title, body, project_id, assignee),
        ).fetchone()
    )
    return int(issue_id)


def add_comment(raw: psycopg.Connection, issue_id: int, body: str, kind: str = "revision") -> None:
    raw.execute(
        "INSERT INTO comments (issue_id, author, kind, body) VALUES (%s, 'human:test', %s, %s)", (issue_id, kind, body)
    )


def status(raw: psycopg.Connection, issue_id: int) -> str:
    return str(one(raw.execute("SELECT status FROM issues WHERE id = %s", (issue_id,)).fetchone())[0])


def beat(runtime: BeatContext, raw: psycopg.Connection, slug: str, issue_id: int) -> str:
    """One heartbeat of ``slug``; the issue's status after it."""
    run_beat(slug, runtime)
    return status(raw, issue_id)


def drive(
    runtime: BeatContext,
    raw: psycopg.Connection,
    issue_id: int,
    until: Iterable[str],
    agents: Iterable[str] = PIPELINE,
    max_rounds: int = 12,
) -> str:
    """Beat the agents in turn until the issue reaches one of ``until`` (or nothing moves for a whole round)."""
    wanted = set(until)
    slugs = tuple(agents)
    for _ in range(max_rounds):
        before = status(raw, issue_id)
        for slug in slugs:
            run_beat(slug, runtime)
            if status(raw, issue_id) in wanted:
                return status(raw, issue_id)
        if status(raw, issue_id) == before and before not in ("todo", "in_review", "approved"):
            break
    return status(raw, issue_id)


def comments(raw: psycopg.Connection, issue_id: int, kind: str) -> list[str]:
    """The issue's comments of ``kind``, newest first."""
    rows = raw.execute(
        "SELECT body FROM comments WHERE issue_id = %s AND kind = %s ORDER BY id DESC", (issue_id, kind)
    ).fetchall()
    return [str(row[0]) for row in rows]


def model_calls(raw: psycopg.Connection, issue_id: int, workflow: str | None = None) -> int:
    row = raw.execute(
        "SELECT count(*) FROM llm_calls WHERE issue_id = %s AND (%s::text IS NULL OR workflow = %s)",
        (issue_id, workflow, workflow),
    ).fetchone()
    return int(one(row)[0])


def check_rows(raw: psycopg.Connection, issue_id: int) -> list[tuple[str, str, str, int]]:
    """(stage, command, commit, exit code) of every check run on the issue, oldest first."""
    rows = raw.execute(
        "SELECT stage, command, commit_sha, exit_code FROM check_runs WHERE issue_id = %s ORDER BY id", (issue_id,)
    ).fetchall()
    return [(str(s), str(c), str(sha), int(code)) for s, c, sha, code in rows]


def remote_branches(remote: Path) -> set[str]:
    """Every branch of the remote, by name."""
    return set(git(remote, "for-each-ref", "--format=%(refname:lstrip=2)", "refs/heads").split())


def remote_log(remote: Path, branch: str = "main") -> list[str]:
    """The subjects along ``branch``'s first-parent line, newest first."""
    return git(remote, "log", "--first-parent", "--format=%s", branch).splitlines()


def remote_file(remote: Path, path: str, branch: str = "main") -> str:
    return git(remote, "show", f"{branch}:{path}")


def remote_rev(remote: Path, ref: str = "main") -> str:
    return git(remote, "rev-parse", "--verify", f"{ref}^{{commit}}").strip()


def remote_tree(remote: Path, ref: str = "main") -> str:
    return git(remote, "rev-parse", f"{ref}^{{tree}}").strip()


def remote_paths(remote: Path, ref: str = "main") -> set[str]:
    return set(git(remote, "ls-tree", "-r", "--name-only", ref).split())


def changed_paths(remote: Path, base: str, ref: str) -> set[str]:
    """What ``ref`` changes against ``base`` on the remote."""
    return set(git(remote, "diff", "--name-only", base, ref).split())


def is_ancestor(remote: Path, commit: str, ref: str) -> bool:
    command = ["git", "merge-base", "--is-ancestor", commit, ref]
    return subprocess.run(command, cwd=remote, capture_output=True, timeout=60).returncode == 0


def merges(remote: Path, ref: str = "main") -> list[str]:
    return git(remote, "rev-list", "--merges", ref).split()


def push_change(remote: Path, branch: str, files: Mapping[str, str], message: str = "A change made outside HQ") -> str:
    """Commit ``files`` on the remote's ``branch`` as a person would (clone, commit, push); the new commit."""
    clone = remote.parent / f"outside-{next(_clones)}"
    git(remote.parent, "clone", "-q", "--branch", branch, str(remote), str(clone))
    for path, content in files.items():
        (clone / path).parent.mkdir(parents=True, exist_ok=True)
        (clone / path).write_text(content)
    git(clone, "add", "-A")
    git(clone, "commit", "-q", "-m", message)
    git(clone, "push", "-q", "origin", f"HEAD:refs/heads/{branch}")
    head = git(clone, "rev-parse", "HEAD").strip()
    shutil.rmtree(clone)
    return head


def worktree_path(data: Path, project_id: int, issue_id: int, name: str = "calc") -> Path:
    """Where a host keeps the issue's worktree of its latest run (projects/repo/repository.py)."""
    (tree,) = (data / "projects" / f"{project_id}-{name}" / "worktrees").glob(f"issue-{issue_id}-*")
    return tree


class ToolRun:
    """One execute run's tools on a project issue, called as a model calls them, a step each as the loop counts."""

    def __init__(self, ctx: ToolContext) -> None:
        self.ctx = ctx
        self.step = 0

    @property
    def work(self) -> RepoWork:
        assert isinstance(self.ctx.work, RepoWork)
        return self.ctx.work

    def __call__(self, tool: str, /, **arguments: Any) -> ToolResult:
        self.step += 1
        return dispatch(self.ctx, tool, arguments, step=self.step)

    def ok(self, tool: str, /, **arguments: Any) -> dict[str, Any]:
        result = self(tool, **arguments)
        assert result.ok and result.result is not None, result
        return result.result

    def error(self, tool: str, /, **arguments: Any) -> str:
        result = self(tool, **arguments)
        assert result.outcome == "error" and result.error, result
        return result.error

    def command(self, name: str) -> dict[str, Any]:
        """``run_command`` of a command the project file names: what it did."""
        return self.ok("run_command", name=name)


def project_run(project_id: int, issue_id: int, **overrides: Any) -> ToolRun:
    """An execute run of the backend engineer on a project issue: its worktree prepared as execute prepares it
    (``overrides``: settings of this run only)."""
    with read_only() as session:
        project = store.get_project(session, project_id)
    assert project is not None
    settings = get_settings().model_copy(update=overrides)
    run_id = uuid.uuid4()
    work = prepare(settings, project, issue_id, run_id=run_id, watch=Watch())
    ctx = ToolContext(
        agent=agent_record("backend-engineer"),
        issue_id=issue_id,
        run_id=run_id,
        workflow="execute",
        settings=settings,
        engine=get_engine(),
        work=work,
    )
    return ToolRun(ctx)
