"""The MCP configuration Claude Code gets runs HQ's bridge on the run's socket."""

from __future__ import annotations

from runtimes.mcp_tools import (
    BRIDGE_PATH,
    mcp_config,
)


def test_mcp_config_runs_the_bridge() -> None:
    assert mcp_config("/usr/bin/python3", "/run/hq/mcp_bridge.py", "/run/hq/mcp.sock") == {
        "mcpServers": {
            "hq": {
                "type": "stdio",
                "command": "/usr/bin/python3",
                "args": ["/run/hq/mcp_bridge.py", "/run/hq/mcp.sock"],
            }
        }
    }
    assert BRIDGE_PATH.is_file()
