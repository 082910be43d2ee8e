"""Which limit ended a project command (projects/repo/checks.py ``run_named``), in the real sandbox: its own
``timeout_seconds`` is the project's verdict; an HQ limit or a lost lease is no verdict, and says so (issue 26:
a gate said "timed out in 12.0s" with ``timeout_seconds: 300``, and counted it as a failed review)."""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from config.settings import get_settings
from projects.repo.checks import Check, run_named
from projects.repo.project_file import parse_project_file
from projects.sandbox import Bubblewrap
from projects.watch import Limit, Watch
from tests.support.projects import needs_bwrap

pytestmark = needs_bwrap

PROJECT = b"""
commands:
  quick: {run: [sleep, '30'], timeout_seconds: 1}
  slow: {run: [sleep, '30'], timeout_seconds: 300}
gate: [quick]
"""


def _run(tmp_path: Path, name: str, **kwargs: Any) -> Check:
    tree: Any = SimpleNamespace(root=tmp_path)  # run_named only needs the directory the command runs in
    settings = get_settings()
    return run_named(settings, Bubblewrap(), parse_project_file(PROJECT), name, tree, issue_id=1, **kwargs)


def test_the_projects_own_timeout_is_a_verdict_and_names_itself(tmp_path: Path) -> None:
    check = _run(tmp_path, "quick", limit=Limit.of(600, "HQ_TOOL_LOOP_MAX_SECONDS"))
    assert check.result.timed_out and check.verdict and check.cut_by is None
    assert "timed out (its timeout_seconds)" in check.line()
    assert "timed out after 1 s" in check.result.output


def test_an_hq_limit_shorter_than_the_command_says_which_and_is_no_evidence(tmp_path: Path) -> None:
    check = _run(tmp_path, "slow", limit=Limit.of(1, "HQ_TOOL_LOOP_MAX_SECONDS"))
    assert check.result.timed_out and not check.verdict
    assert check.cut_by == "HQ_TOOL_LOOP_MAX_SECONDS=1"
    assert "stopped by HQ's limit HQ_TOOL_LOOP_MAX_SECONDS=1 (not the project's timeout)" in check.line()


def test_no_limit_leaves_the_command_its_own_timeout(tmp_path: Path) -> None:
    """Gate, deploy and verify run with no HQ limit at all: the lease keeper renews the lease meanwhile."""
    stopped = threading.Event()
    threading.Timer(1.0, stopped.set).start()  # ...until its run loses the issue
    check = _run(tmp_path, "slow", watch=Watch(stopped=stopped))
    assert check.result.cancelled and not check.result.timed_out and not check.verdict
    assert "stopped (the run no longer holds the issue)" in check.line()


def test_an_hq_limit_already_spent_starts_nothing(tmp_path: Path) -> None:
    check = _run(tmp_path, "slow", limit=Limit.of(0.2, "HQ_CLAUDE_CODE_MAX_SECONDS"))
    assert check.result.seconds == 0.0 and not check.verdict
    assert "HQ_CLAUDE_CODE_MAX_SECONDS=0.2 leaves this run no time" in check.result.output
