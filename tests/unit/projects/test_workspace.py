"""Workspace globs: repeated globstars collapse, and a hostile pattern is refused, not backtracked."""

from __future__ import annotations

import pytest

from projects.workspace import WorkspaceError


def test_a_hostile_glob_is_refused_not_backtracked() -> None:
    from projects.workspace import _glob_match

    assert _glob_match("a/b/c/d.py", "**/**/**/c/*.py")  # repeated globstars collapse
    with pytest.raises(WorkspaceError, match="at most"):
        _glob_match("a/" * 12 + "y", "**/x/" * 30 + "z")
