"""The claude-code runtime's configuration, validated with the roster, gives the CLI its tools (never a web
tool); the CLI's result is read from its output however much else the output holds.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agents.roster import load_roster
from config.errors import ConfigError
from runtimes.claude_code import cli_tools, parse_result
from tests.support.claude_code import coding_roles
from tests.support.roster import copy_roster, edit


@pytest.mark.parametrize(
    ("slug", "pattern", "replacement", "expected"),
    [
        ("editor", r"^tier: .*$", "tier: execution\nruntime: codex", "runtime: Input should be 'builtin' or"),
        ("backend-engineer", r"^tier: .*$", "tier: execution\nruntime_options: {max_turns: 5}", "only for runtime"),
        ("editor", r"^tier: .*$", "tier: execution\nruntime: claude-code", "the code toolset"),
        (
            "backend-engineer",
            r"^tier: .*$",
            "tier: execution\nruntime: claude-code\nruntime_options: {allowed_tools: [WebFetch]}",
            "runtime_options.allowed_tools.0",
        ),
        (
            "backend-engineer",
            r"^tier: .*$",
            "tier: execution\nruntime: claude-code\nruntime_options: {max_turns: 0}",
            "runtime_options.max_turns",
        ),
    ],
)
def test_runtime_problems_are_roster_problems(
    tmp_path: Path, slug: str, pattern: str, replacement: str, expected: str
) -> None:
    roles = copy_roster(tmp_path)
    edit(roles, slug, pattern, replacement)
    with pytest.raises(ConfigError) as caught:
        load_roster(roles)
    assert f"{slug}/AGENTS.md" in caught.value.message and expected in caught.value.message


def test_options_give_the_cli_its_tools_and_never_a_web_tool(tmp_path: Path) -> None:
    roster = load_roster(coding_roles(tmp_path, "backend-engineer", "{max_turns: 7, allowed_tools: [TodoWrite]}"))
    options = roster.roles["backend-engineer"].spec.runtime_settings
    assert options.max_turns == 7 and options.fast_tier == "utility"
    assert cli_tools(options) == ["Read", "Glob", "Grep", "Edit", "Write", "Bash", "TodoWrite"]


def test_the_result_is_the_last_result_line_of_the_output() -> None:
    result = {"type": "result", "subtype": "success", "is_error": False, "num_turns": 3, "result": "DONE: mul"}
    output = "\n".join(
        [
            "some stderr line",
            json.dumps({"type": "result", "subtype": "error_during_execution", "is_error": True}),
            '{"not": "a result"}',
            "{broken",
            json.dumps({**result, "total_cost_usd": 0.25, "permission_denials": [{"tool_name": "WebFetch"}]}),
            "",
        ]
    )
    parsed = parse_result(output)
    assert parsed is not None
    assert (parsed.text, parsed.turns, parsed.is_error, parsed.permission_denials) == ("DONE: mul", 3, False, 1)
    assert str(parsed.reported_cost_usd) == "0.25" and not parsed.out_of_turns
    assert parse_result("no json at all\n") is None
    out_of_turns = parse_result(json.dumps({"type": "result", "subtype": "error_max_turns", "is_error": True}))
    assert out_of_turns is not None and out_of_turns.out_of_turns
