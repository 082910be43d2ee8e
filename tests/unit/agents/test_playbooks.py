"""The shipped playbooks are valid, loaded as data and by `hq playbooks check`: known roles, dependency waves."""

from __future__ import annotations

from agents.playbooks import load_playbooks
from tests.support.cli import run_hq
from tests.support.playbooks import PLAYBOOKS, ROLES


def test_shipped_playbooks_are_valid() -> None:
    playbooks = load_playbooks(PLAYBOOKS, ROLES)
    assert len(playbooks.playbooks) >= 5
    feature = playbooks.get("feature-delivery")
    assert feature is not None
    assert feature.waves() == [["spec"], ["api", "design"], ["ui"], ["docs", "tests"]]
    result = run_hq("playbooks", "check")
    assert result.exit_code == 0 and "feature-delivery" in result.stdout
