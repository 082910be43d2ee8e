"""Every tool's schema is a function definition a model can be offered."""

from __future__ import annotations

from agents.tools.catalog import tools_for


def test_schemas_are_function_definitions() -> None:
    names = {t.name for t in tools_for(["issues", "workspace", "delegate", "dashboards", "release", "publish"])}
    assert names == {
        "comment",
        "mark_blocked",
        "ask_research",
        "read_file",
        "write_file",
        "list_files",
        "create_subissue",
        "assign",
        "run_report",
        "deploy",
        "verify",
        "publish",
    }
    schema = next(t for t in tools_for(["workspace"]) if t.name == "write_file").schema()
    assert schema["type"] == "function"
    assert schema["function"]["parameters"]["required"] == ["path", "content"]
