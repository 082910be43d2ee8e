"""Where the Claude Code executable is and which version it is: cheap to ask, nothing of the runtime loaded.

`hq config check` and `hq run`'s start ask these, so a role that needs the CLI on a
host without it is reported before any issue is claimed.
"""

from __future__ import annotations

import shutil
import subprocess
from functools import cache
from pathlib import Path

from agents.roster import Roster
from config.settings import PACKAGE_ROOT, Settings

PINNED_VERSION = "2.1.197"
"""The version `make claude-code` installs and the tests run (newer 2.1 releases need Node.js 22)."""
TOOLS_COPY = PACKAGE_ROOT / "tools" / "claude-code" / "node_modules" / ".bin" / "claude"
RUNTIME = "claude-code"


def claude_binary(settings: Settings) -> Path | None:
    """The executable: HQ_CLAUDE_BIN, else `claude` on PATH, else the copy `make claude-code` installed."""
    if settings.claude_bin:
        found = shutil.which(settings.claude_bin)
        return Path(found).resolve() if found else None
    found = shutil.which("claude")
    if found:
        return Path(found).resolve()
    return TOOLS_COPY.resolve() if TOOLS_COPY.exists() else None


@cache
def claude_version(binary: Path) -> str | None:
    """``2.1.197`` from ``claude --version``, or None when it cannot run."""
    try:
        completed = subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    words = completed.stdout.split()
    return words[0] if completed.returncode == 0 and words else None


def coding_roles(roster: Roster) -> list[str]:
    return sorted(slug for slug, role in roster.roles.items() if role.spec.runtime == RUNTIME)


def runtime_problems(settings: Settings, roster: Roster) -> list[str]:
    """What keeps the roster's coding-agent roles from running on this host (empty: nothing)."""
    roles = coding_roles(roster)
    if not roles:
        return []
    problems = []
    if claude_binary(settings) is None:
        where = f"HQ_CLAUDE_BIN={settings.claude_bin} is not found" if settings.claude_bin else "it is not installed"
        problems.append(f"runtime {RUNTIME} ({', '.join(roles)}): {where}; run `make claude-code` or set HQ_CLAUDE_BIN")
    if settings.sandbox != "bwrap":
        problems.append(
            f"runtime {RUNTIME} ({', '.join(roles)}): the CLI runs only in the sandbox; set HQ_SANDBOX=bwrap"
        )
    return problems


def runtime_line(settings: Settings, roster: Roster) -> str:
    """One line for `hq config check`: which roles use Claude Code, and which executable they would run."""
    roles = coding_roles(roster)
    binary = claude_binary(settings)
    version = claude_version(binary) if binary else None
    found = f"Claude Code {version or '(version unknown)'} at {binary}" if binary else "Claude Code not installed"
    if version and version != PINNED_VERSION:
        found += f" (HQ is tested with {PINNED_VERSION})"
    if not roles:
        return f"coding agents: none (no role has runtime: {RUNTIME}); {found}"
    return f"coding agents: {len(roles)} role(s) on {RUNTIME} ({', '.join(roles)}); {found}"
