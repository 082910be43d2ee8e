"""Which runtime works a role's run: the one place that asks.

A role with ``runtime: claude-code`` (its AGENTS.md) works a git project's worktree with the Claude
Code CLI, when an Anthropic deployment serves its tier (the CLI speaks only Anthropic's Messages API).
Offline (the offline model, say), and for document issues, which have no worktree for the CLI, the
role uses HQ's built-in loop, and says so once per run.
"""

from __future__ import annotations

from agents.roster import Role
from config.log import get_logger
from models.config import ModelMap
from projects.kinds import Work
from projects.repo.work import RepoWork
from runtimes import Runtime
from runtimes.builtin import Builtin

log = get_logger(__name__)


def runtime_for(role: Role | None, work: Work, models: ModelMap, tier: str) -> Runtime:
    if role is None or role.spec.runtime != "claude-code" or not isinstance(work, RepoWork):
        return Builtin()
    from runtimes.claude_code import ClaudeCode, serves  # the CLI's runtime: only a role that has it pays

    options = role.spec.runtime_settings
    if serves(models, options.tier or tier):
        return ClaudeCode(options, work)
    log.info("execute.builtin_runtime", reason="no Anthropic deployment serves the tier", tier=options.tier or tier)
    return Builtin()
