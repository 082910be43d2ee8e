"""The project the company ships: its deploy and verify commands, run safely.

Commands are argument lists from settings, never shell strings and never from a
model. They run in the issue's workspace with a timeout and with every secret
scrubbed from the environment; their output is redacted before anyone sees it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from agents.tools.context import workspace_path
from config.secrets import REDACTOR, redact
from config.settings import Settings

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
    return [sys.executable, "-m", "agents.default_project", kind, "--issue", "{issue_id}",
            "--workspace", "{workspace}", "--published", "{published}"]


def scrubbed_environment() -> dict[str, str]:
    """The parent's environment minus anything that names or holds a secret."""
    known = REDACTOR.known()
    return {
        name: value for name, value in os.environ.items()
        if not _SECRET_NAME.search(name) and value not in known
    }


def run_project_command(kind: str, issue_id: int, settings: Settings) -> CommandResult:
    template = (settings.deploy_command if kind == "deploy" else settings.verify_command) or default_command(kind)
    workspace = workspace_path(settings, issue_id)
    published = published_dir(settings, issue_id)
    values = {"issue_id": str(issue_id), "workspace": str(workspace), "published": str(published)}
    argv = [part.format(**values) for part in template]
    workspace.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    try:
        completed = subprocess.run(
            argv, cwd=workspace, env=scrubbed_environment(), capture_output=True, text=True,
            timeout=settings.command_timeout_seconds, stdin=subprocess.DEVNULL,
        )
        code, output = completed.returncode, (completed.stdout + completed.stderr)
    except subprocess.TimeoutExpired as timeout:
        partial = (timeout.stdout or b"").decode(errors="replace") if isinstance(timeout.stdout, bytes) else (timeout.stdout or "")
        code, output = 124, partial + f"\n{kind} timed out after {settings.command_timeout_seconds}s"
    except OSError as error:
        code, output = 127, f"{kind} could not start: {error.strerror}"
    return CommandResult(kind, argv, code, redact(output[-OUTPUT_TAIL:]), time.monotonic() - started)


def published_dir(settings: Settings, issue_id: int) -> Path:
    return settings.data_path / "published" / f"issue-{issue_id}"
