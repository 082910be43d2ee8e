"""The documentation names only what exists: every setting and every `hq` command it shows.

Pure reading (no database, no subprocess): the settings table of docs/configuration.md against
``Settings``, every ``HQ_*`` name in README.md and docs/ against the settings, and every
``hq COMMAND [SUBCOMMAND]`` in their code blocks against the CLI's own command tree.
"""

from __future__ import annotations

import re

import typer

from cli.app import build_app
from config.settings import Settings
from tests.support import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
TABLE_ROW = re.compile(r"^\| `([A-Z0-9_]+)` \|", re.MULTILINE)
HQ_NAME = re.compile(r"\bHQ_[A-Z0-9_]*[A-Z0-9]\b")
SHOWN_COMMAND = re.compile(r"(?:^|\s)(?:\.venv/bin/)?hq ((?:[a-z][a-z-]*)(?: [a-z][a-z-]*)?)")


def environment_names() -> set[str]:
    """Each setting's environment variable (its alias where it has one, else HQ_ and the field's name)."""
    names = set()
    for name, field in Settings.model_fields.items():
        choices = getattr(field.validation_alias, "choices", None)
        names.add(next(c for c in choices if isinstance(c, str) and c.isupper()) if choices else f"HQ_{name.upper()}")
    return names


def test_the_settings_table_lists_every_setting_and_nothing_else() -> None:
    table = set(TABLE_ROW.findall((ROOT / "docs" / "configuration.md").read_text()))
    assert table == environment_names()


def test_every_hq_setting_the_docs_mention_exists() -> None:
    from projects.repo.checks import COMMAND_VARIABLES  # not settings: what a project command is told

    settings = environment_names() | set(COMMAND_VARIABLES)
    for page in PAGES:
        unknown = set(HQ_NAME.findall(page.read_text())) - settings
        assert not unknown, f"{page.name} names settings that do not exist: {sorted(unknown)}"


def test_every_hq_command_the_docs_show_exists() -> None:
    commands = typer.main.get_command(build_app()).commands  # type: ignore[attr-defined]
    shown = 0
    for page in PAGES:
        for block in re.findall(r"```(?:sh|bash|console)?\n(.*?)```", page.read_text(), re.DOTALL):
            for words in SHOWN_COMMAND.findall(block):
                first, *rest = words.split()
                command = commands.get(first)
                assert command is not None, f"{page.name}: `hq {first}` is not a command"
                subcommands = getattr(command, "commands", None)  # a group: its second word must be one of them
                if subcommands is not None and rest:
                    assert rest[0] in subcommands, f"{page.name}: `hq {words}` is not a command"
                shown += 1
    assert shown >= 15  # the pattern still finds the commands the pages show
