"""kill -9 of `hq run` while Claude Code works an issue: no CLI outlives it, and the issue resumes.

The CLI runs in bubblewrap with ``--die-with-parent`` in a PID namespace of its own, so the
sandbox's init, and with it every process in the sandbox, dies with the `hq run` that started
it. The first process is killed while the CLI waits on its first model call (the fake upstream
holds the answer back); a second process reclaims the issue once the lease has expired, and its
CLI run ships the work.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from runtimes.claude_code import CLAUDE_IN_SANDBOX
from tests.fakes.anthropic_server import FakeAnthropic, Reply
from tests.support.claude_code import (
    PROVIDER_KEY,
    REVIEWER,
    WORKER,
    coding_roles,
    models_file,
    needs_node,
    require_cli,
    use,
    worker_requests,
)
from tests.support.cli import run_hq
from tests.support.processes import SHORT_LEASES, assert_legal_paths, start, stop, wait_for_progress, wait_until
from tests.support.projects import ENGINEER, GOOD_MUL, add_project, make_remote, needs_bwrap, project_issue, remote_file
from tests.support.rows import one

pytestmark = [pytest.mark.timeout(900), needs_bwrap, needs_node]

# Room for a CLI run (its start, a few model calls) on a loaded machine; the lease then lapses quickly.
LEASES = SHORT_LEASES | {
    "HQ_LEASE_TTL_SECONDS": "45",
    "HQ_AGENT_LEASE_TTL_SECONDS": "60",
}
MUL = "    return a + b\n\n\ndef mul(a, b):\n    return a * b\n"


def cli_processes() -> list[int]:
    """Every process on the host running the sandboxed CLI (bubblewrap's own command line names it too)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue  # gone meanwhile, or not ours to read
        if CLAUDE_IN_SANDBOX.encode() in cmdline:
            found.append(int(entry.name))
    return found


@pytest.fixture()
def fake() -> Iterator[FakeAnthropic]:
    server = FakeAnthropic().start()
    server.required_key = PROVIDER_KEY
    yield server
    server.stop()


def test_kill_9_mid_cli_run_leaves_no_cli_behind_and_the_issue_resumes(
    db_url: str, fake: FakeAnthropic, raw: psycopg.Connection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_cli()
    env = {
        "HQ_ROLES_DIR": str(coding_roles(tmp_path, ENGINEER)),
        "HQ_MODELS_FILE": str(models_file(tmp_path, fake)),
        "ANTHROPIC_API_KEY": PROVIDER_KEY,
        **LEASES,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert run_hq("agents", "sync").exit_code == 0
    remote = make_remote(tmp_path / "shared")
    issue = project_issue(raw, add_project(raw, remote), "Add mul to calc", "calc needs mul(a, b).")
    fake.script(WORKER, Reply(text="held back", delay_seconds=120))  # the first call is held back
    assert not cli_processes()

    first = start(tmp_path, "a", **env)
    try:
        waiting = wait_for_progress(lambda: (len(worker_requests(fake)), len(cli_processes())), lambda v: v[0] >= 1)
        assert waiting, f"{waiting}\n{(tmp_path / 'a.log').read_text()[-3000:]}"
        assert cli_processes()
        first.kill()
        first.wait()
    finally:
        stop(first)
    assert wait_until(lambda: not cli_processes(), timeout=30), f"left running: {cli_processes()}"
    assert one(raw.execute("SELECT status FROM issues WHERE id = %s", (issue,)).fetchone()) == ("in_progress",)

    fake.script(
        WORKER,
        use("Read", file_path="/workspace/calc.py"),
        use("Edit", file_path="/workspace/calc.py", old_string="    return a + b\n", new_string=MUL),
        Reply(text="DONE: added mul.", input_tokens=40, output_tokens=10),
    )
    fake.script(REVIEWER, Reply(text='{"score": 0.9, "passed": true, "notes": ["mul is correct"]}'))
    second = start(tmp_path, "b", **env)
    try:
        finished = wait_for_progress(
            lambda: one(raw.execute("SELECT status, attempts FROM issues WHERE id = %s", (issue,)).fetchone()),
            lambda value: value[0] in ("done", "blocked"),
        )
        assert finished, f"{finished}\n{(tmp_path / 'b.log').read_text()[-3000:]}"
    finally:
        stop(second)
    assert one(raw.execute("SELECT status FROM issues WHERE id = %s", (issue,)).fetchone()) == ("done",)
    assert remote_file(remote, "calc.py") == GOOD_MUL
    assert not cli_processes()
    assert_legal_paths(raw)
