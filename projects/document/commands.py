"""The project the company ships: its deploy and verify commands, run safely.

Commands are argument lists from settings, never shell strings and never from a
model. They run with a timeout and with every secret scrubbed from the
environment; their output is redacted before anyone sees it.

Placeholders: ``{issue_id}``; ``{published}``, this host's ``published/issue-N``
under the data dir; and ``{workspace}``, the directory the command runs in:

* deploy_verify (``deploy_submission``) ships what the issue's last submission
  stored in the database, so any host can deploy any issue: ``{workspace}`` is a
  fresh staging copy of those files under the data dir (``staging/issue-N-*``),
  removed once verify has run. The local workspace may not exist on this host
  and is never read.
* the ``release`` tools run inside an agent's own execute run, on the host that
  holds its workspace: ``{workspace}`` is that live workspace (work not yet
  submitted).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import Engine

from config.secrets import REDACTOR, redact
from config.settings import Settings
from projects.document.snapshots import SubmissionError, staged_submission

OUTPUT_TAIL = 4000
_SECRET_NAME = re.compile(r"(?i)(key|token|secret|password|passwd|credential|database_url|dsn)")


@dataclass(frozen=True)
class CommandResult:
    kind: str
    argv: list[str]
    returncode: int
    output: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def default_command(kind: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "projects.document.publish",
        kind,
        "--issue",
        "{issue_id}",
        "--workspace",
        "{workspace}",
        "--published",
        "{published}",
    ]


def scrubbed_environment() -> dict[str, str]:
    """The parent's environment minus anything that names or holds a secret."""
    known = REDACTOR.known()
    return {name: value for name, value in os.environ.items() if not _SECRET_NAME.search(name) and value not in known}


def deploy_submission(engine: Engine, settings: Settings, issue_id: int) -> tuple[CommandResult, CommandResult | None]:
    """Deploy, then verify, the issue's last submission as the database holds it, from a fresh staging copy.

    Verify runs only after a successful deploy (None otherwise). When the database cannot supply every
    submitted file (none on record, content missing, a hostile path), deploy fails with that reason and
    no command runs.
    """
    started = time.monotonic()
    leftovers = 2 * settings.command_timeout_seconds + 300  # older than any deploy + verify still running
    try:
        with staged_submission(engine, settings.data_path, issue_id, leftover_seconds=leftovers) as staging:
            deployed = run_project_command("deploy", issue_id, settings, workspace=staging)
            verified = run_project_command("verify", issue_id, settings, workspace=staging) if deployed.ok else None
    except SubmissionError as refused:
        why = f"deploy: {refused.message}"
    except OSError as error:  # the staging directory itself (disk full, permissions): no command ran
        why = f"deploy: could not stage issue #{issue_id} under {settings.data_path}: {error.strerror or error}"
    else:
        return deployed, verified
    return CommandResult("deploy", [], 1, redact(why)[:OUTPUT_TAIL], time.monotonic() - started), None


def run_project_command(kind: str, issue_id: int, settings: Settings, *, workspace: Path) -> CommandResult:
    """Run the configured (or built-in) ``kind`` command with ``{workspace}`` = ``workspace``, its directory."""
    template = (settings.deploy_command if kind == "deploy" else settings.verify_command) or default_command(kind)
    published = published_dir(settings, issue_id)
    values = {"issue_id": str(issue_id), "workspace": str(workspace), "published": str(published)}
    argv = [part.format(**values) for part in template]
    workspace.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    try:
        completed = subprocess.run(
            argv,
            cwd=workspace,
            env=scrubbed_environment(),
            capture_output=True,
            text=True,
            timeout=settings.command_timeout_seconds,
            stdin=subprocess.DEVNULL,
        )
        code, output = completed.returncode, (completed.stdout + completed.stderr)
    except subprocess.TimeoutExpired as timeout:
        partial = (
            (timeout.stdout or b"").decode(errors="replace")
            if isinstance(timeout.stdout, bytes)
            else (timeout.stdout or "")
        )
        code, output = 124, partial + f"\n{kind} timed out after {settings.command_timeout_seconds}s"
    except OSError as error:
        code, output = 127, f"{kind} could not start: {error.strerror}"
    return CommandResult(kind, argv, code, redact(output[-OUTPUT_TAIL:]), time.monotonic() - started)


def published_dir(settings: Settings, issue_id: int) -> Path:
    return settings.data_path / "published" / f"issue-{issue_id}"
