"""A terminal still gets a table that fits (rich sizes it to the terminal's width); what a pipe gets is in
tests/integration/cli/test_output.py.
"""

from __future__ import annotations

import contextlib
import io

from tests.support.cli import LONG_TITLE


def test_a_terminal_still_gets_a_table_that_fits() -> None:
    from cli.output import _Console, safe

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    from rich.table import Table

    terminal = _Console(file=Tty(), width=80, color_system=None, highlight=False, soft_wrap=False, emoji=False)
    table = Table()
    for column in ("tier", "model", "note"):
        table.add_column(column)
    table.add_row("utility", "anthropic/claude-haiku-4-5", LONG_TITLE)
    terminal.print(table)
    output = terminal.file.getvalue()  # type: ignore[attr-defined]
    assert all(len(line) <= 80 for line in output.splitlines())
    # Without an explicit width, a non-terminal file gets the wide size, a terminal its own.
    assert _Console(file=io.StringIO()).width > 10_000
    assert _Console(file=Tty()).width < 10_000
    # ``safe(limit=...)`` shortens for a terminal only; into a pipe or a file nothing is cut.
    with contextlib.redirect_stdout(io.StringIO()):
        assert safe("x" * 100, limit=10) == "x" * 100
    with contextlib.redirect_stdout(Tty()):
        assert safe("x" * 100, limit=10) == "x" * 9 + "…"
