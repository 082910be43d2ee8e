"""How an agent acts on an issue: HQ's built-in tool loop (builtin.py), or the Claude Code CLI
with HQ's model gateway and MCP tool server (claude_code.py); HQ keeps the state and the money."""

from config.errors import HQError


class RuntimeFailed(HQError):
    """The coding agent ran but gave no result HQ can use: the attempt counts, with what it printed."""
