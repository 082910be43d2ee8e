"""`.hq/project.yaml`: what a project lets HQ run, and the one-line errors a broken file gets."""

from __future__ import annotations

import pytest

from projects.repo.project_file import MAX_FILE_BYTES, ProjectConfigError, parse_project_file

GOOD = b"""
commands:
  test: [python3, -m, unittest, -q]
  lint: {run: [python3, -m, pyflakes, .], timeout_seconds: 60}
  deploy: [./scripts/deploy.sh]
gate: [test, lint]
"""


def test_the_documented_file_parses_with_both_forms_of_command() -> None:
    project = parse_project_file(GOOD)
    assert project.gate == ("test", "lint")
    assert project.commands["test"].run == ("python3", "-m", "unittest", "-q")
    assert project.commands["lint"].timeout_seconds == 60
    assert project.deploy is not None and project.deploy.run == ("./scripts/deploy.sh",)
    assert project.verify is None


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (None, "is missing on the base branch"),
        (b"commands: [unclosed", "is not valid YAML (line 1)"),
        (b"\xff\xfe", "is not UTF-8"),
        (b"- a list", "must be a mapping"),
        (b"commands: {test: [pytest]}\ngate: [tests]\n", "gate names commands that are not defined: tests"),
        (b"commands: {test: [pytest]}\ngate: []\n", "gate"),
        (b"commands: {test: [pytest]}\n", "gate"),
        (b"commands: {test: []}\ngate: [test]\n", "commands.test.run"),
        (b"commands: {test: [--upload-pack=x]}\ngate: [test]\n", "must not start with '-'"),
        (b"commands: {test: 'pytest -q'}\ngate: [test]\n", "commands.test"),  # a shell string is not a command
        (b"commands: {Test: [pytest]}\ngate: [Test]\n", "commands"),
        (b"commands: {test: {run: [pytest], timeout_seconds: 0}}\ngate: [test]\n", "timeout_seconds"),
        (b"commands: {test: {run: [pytest], shell: true}}\ngate: [test]\n", "shell"),
        (b"commands: {test: [pytest]}\ngate: [test, test]\n", "twice"),
        (b"commands: {test: [pytest]}\ngate: [test]\nhooks: [x]\n", "hooks"),
        (b"x" * (MAX_FILE_BYTES + 1), "larger than"),
    ],
)
def test_a_broken_file_gets_one_clear_line(data: bytes | None, words: str) -> None:
    with pytest.raises(ProjectConfigError) as refused:
        parse_project_file(data)
    message = refused.value.message
    assert words in message and "\n" not in message and message.startswith(".hq/project.yaml")
