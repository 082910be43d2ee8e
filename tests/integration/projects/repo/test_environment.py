"""A project's environment (projects/repo/environment.py): built once per content by its setup, used by every
command after it, and the host's own packages invisible to the sandbox (issue 25).

The project here is shaped like a team's: its tests import a third-party package that is not on the system.
The test builds that package as a wheel and commits it under ``vendor/``; the project's setup installs it
into a virtualenv at ``/env`` with ``pip --no-index --find-links``, so nothing reaches a registry.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import sys
import sysconfig
import zipfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from config.settings import get_settings
from projects.repo.environment import MANIFEST, environments_dir
from scheduler.heartbeat import BeatContext
from tests.support.cli import run_hq
from tests.support.projects import (
    CALC,
    ENGINEER,
    GOOD_MUL,
    add_project,
    beat,
    drive,
    fenced,
    make_remote,
    model_calls,
    needs_bwrap,
    project_issue,
    push_change,
    remote_file,
)
from tests.support.rows import one

pytestmark = [pytest.mark.usefixtures("db_url"), needs_bwrap]

DEPENDENCY = "hqpadder"
PROJECT_YAML = (
    "environment:\n"
    "  setup: {run: [sh, .hq/setup.sh], timeout_seconds: 300}\n"
    "  inputs: [requirements.txt]\n"
    "commands:\n"
    "  test: [python, -m, unittest, -q]\n"
    "gate: [test]\n"
)
SETUP = (
    "set -e\n"
    'python3 -m venv "$HQ_ENV"\n'
    '"$HQ_ENV/bin/pip" install -q --disable-pip-version-check --no-index --find-links /workspace/vendor'
    " -r /workspace/requirements.txt\n"
)
# The project's tests need the dependency: without the environment they cannot even be imported.
TESTS = (
    f"import unittest\n\nimport {DEPENDENCY}\n\nfrom calc import add, mul\n\n\n"
    "class CalcTest(unittest.TestCase):\n"
    f"    def test_add(self):\n        self.assertEqual({DEPENDENCY}.pad(str(add(2, 3)), 3), '  5')\n\n"
    "    def test_mul(self):\n        self.assertEqual(mul(2, 3), 6)\n"
)


def wheel(name: str, version: str, source: str) -> tuple[str, bytes]:
    """A pure-Python wheel of one module, built here: (its file name, its bytes)."""
    info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": source.encode(),
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: hq-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{info}/RECORD,,")
    files[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data)
    return f"{name}-{version}-py3-none-any.whl", buffer.getvalue()


def project_files(project_yaml: str = PROJECT_YAML, setup: str = SETUP) -> dict[str, str | bytes]:
    """calc.py without mul, tests that need the dependency, and the wheel the setup installs it from."""
    filename, data = wheel(DEPENDENCY, "1.0", "def pad(text, width):\n    return text.rjust(width)\n")
    return {
        ".hq/project.yaml": project_yaml,
        ".hq/setup.sh": setup,
        "requirements.txt": f"{DEPENDENCY}==1.0\n",
        f"vendor/{filename}": data,
        "calc.py": CALC,
        "test_calc.py": TESTS,
    }


def built_environments(project: int) -> dict[str, float]:
    """The environments this host has built for the project: key → when it was built."""
    root = environments_dir(get_settings(), project)
    return {p.parent.name: json.loads(p.read_text())["built_at"] for p in root.glob(f"*/{MANIFEST}")}


def test_project_check_builds_the_environment_and_runs_the_gate_on_the_base(
    raw: psycopg.Connection, tmp_path: Path
) -> None:
    """Setup builds it once (the gate red on the base: mul is missing, which is what an issue would fix), a
    second check reuses it; `hq project env` shows it."""
    remote = make_remote(tmp_path, project_files())
    assert run_hq("project", "add", "calc", "--repo", str(remote)).exit_code == 0
    first = run_hq("project", "check", "calc")
    assert first.exit_code == 0, first.stdout + first.stderr
    assert "environment: ok: built in" in first.stdout
    assert "gate test: red: exit 1" in first.stdout and "cannot import name 'mul'" in first.stdout
    again = run_hq("project", "check", "calc")
    assert "environment: ok: reused" in again.stdout
    shown = run_hq("project", "env", "calc", "--json")
    assert shown.exit_code == 0 and json.loads(shown.stdout)["built_now"] is False
    project = one(raw.execute("SELECT id FROM projects WHERE name = 'calc'").fetchone())[0]
    assert len(built_environments(project)) == 1


def test_issues_ship_through_the_environment_built_once_and_again_when_an_input_changes(
    runtime: BeatContext, raw: psycopg.Connection, tmp_path: Path
) -> None:
    """Three issues: execute, gate, merge and done each use the one environment (built once); a change to
    requirements.txt on the base builds a new one for the next issue."""
    remote = make_remote(tmp_path, project_files())
    project = add_project(raw, remote)
    first = project_issue(raw, project, "Add mul to calc", "Multiply.\n\n" + fenced("calc.py", GOOD_MUL))
    assert drive(runtime, raw, first, until={"done", "blocked"}) == "done"
    assert "def mul" in remote_file(remote, "calc.py")
    built = built_environments(project)
    assert len(built) == 1
    for title in ("Say what mul does", "Say what add does"):
        issue = project_issue(raw, project, title, fenced("NOTES.md", f"{title}.\n"))
        assert drive(runtime, raw, issue, until={"done", "blocked"}) == "done"
    assert built_environments(project) == built  # the same environment, not built again
    push_change(remote, "main", {"requirements.txt": f"{DEPENDENCY}==1.0  # pinned\n"})
    issue = project_issue(raw, project, "Say more", fenced("MORE.md", "More.\n"))
    assert drive(runtime, raw, issue, until={"done", "blocked"}) == "done"
    assert len(built_environments(project)) == 2


def test_a_failing_setup_blocks_project_env_with_one_notification_and_no_model_call(
    runtime: BeatContext, raw: psycopg.Connection, tmp_path: Path
) -> None:
    setup = "echo 'Looking in links: /workspace/vendor'\necho 'ERROR: No matching distribution' >&2\nexit 7\n"
    remote = make_remote(tmp_path, project_files(setup=setup))
    project = add_project(raw, remote)
    issue = project_issue(raw, project, "Add mul to calc", fenced("calc.py", GOOD_MUL))
    assert beat(runtime, raw, ENGINEER, issue) == "blocked"
    reason, rounds = one(
        raw.execute("SELECT blocked_reason, review_rounds FROM issues WHERE id = %s", (issue,)).fetchone()
    )
    assert (reason, rounds) == ("project_env", 0)
    assert model_calls(raw, issue) == 0
    (note,) = one(raw.execute("SELECT body FROM comments WHERE issue_id = %s AND kind = 'system'", (issue,)).fetchone())
    assert "setup failed (exit 7)" in note and "No matching distribution" in note
    sent = raw.execute("SELECT event FROM notifications WHERE issue_id = %s", (issue,)).fetchall()
    assert len(sent) == 1
    assert not built_environments(project)  # nothing half-built is left to be reused


@pytest.fixture()
def host_package() -> Iterator[str]:
    """A package installed into the interpreter the sandbox offers (its global site-packages), removed after."""
    site = Path(sysconfig.get_paths(vars={"base": sys.base_prefix, "platbase": sys.base_prefix})["purelib"])
    package = site / "hq_host_only_probe"
    package.mkdir()
    (package / "__init__.py").write_text("")
    try:
        yield str(site)
    finally:
        (package / "__init__.py").unlink()
        package.rmdir()


def test_packages_installed_on_the_host_are_invisible_to_project_commands(
    host_package: str, raw: psycopg.Connection, tmp_path: Path
) -> None:
    """A copy of a package on the host (its interpreter's site-packages, HQ's own virtualenv) would make a test
    import it instead of the worktree's code: the probe finds none of them, by import or by path."""
    probe = (
        "import importlib.util, os, sys\n"
        "found = [name for name in ('hq_host_only_probe', 'sqlalchemy', 'psycopg')"
        " if importlib.util.find_spec(name) is not None]\n"
        f"found += [path for path in ({host_package!r}, {sys.prefix!r})"
        " if os.path.isdir(path) and os.listdir(path)]\n"
        "print('found:', found)\n"
        "sys.exit(1 if found else 0)\n"
    )
    project_yaml = "commands:\n  test: [python3, probe.py]\ngate: [test]\n"
    remote = make_remote(tmp_path, {".hq/project.yaml": project_yaml, "probe.py": probe})
    assert run_hq("project", "add", "probe", "--repo", str(remote)).exit_code == 0
    checked = run_hq("project", "check", "probe")
    assert "gate test: passed" in checked.stdout, checked.stdout
