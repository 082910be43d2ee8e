"""Which head `hq issue diff` shows: the one the review passed while it waits to ship, else the last recorded."""

from __future__ import annotations

import pytest

from projects.repo.patch import shown_head

REVIEWED, RECORDED = "a" * 40, "b" * 40


@pytest.mark.parametrize("status", ["pending_approval", "approved", "deploying", "done"])
def test_after_a_passing_review_the_reviewed_head_is_shown(status: str) -> None:
    assert shown_head(status, reviewed_sha=REVIEWED, recorded_sha=RECORDED) == REVIEWED


@pytest.mark.parametrize("status", ["todo", "in_progress", "in_review", "blocked", "rejected", "cancelled"])
def test_a_rework_shows_its_newer_recorded_head_not_the_stale_reviewed_one(status: str) -> None:
    assert shown_head(status, reviewed_sha=REVIEWED, recorded_sha=RECORDED) == RECORDED


def test_without_a_review_the_recorded_head_and_without_either_nothing() -> None:
    assert shown_head("approved", reviewed_sha=None, recorded_sha=RECORDED) == RECORDED
    assert shown_head("in_review", reviewed_sha=None, recorded_sha=None) is None
