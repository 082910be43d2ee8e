"""The fault tests' wait for work: it fails on a stall, never on a run that is slow but keeps moving.

A fixed wall-clock total (``wait_until``) failed `make test` on a loaded machine while the
company was still settling; ``wait_for_progress`` follows the work instead. These run on a
fake clock, so they are exact and take no time.
"""

from __future__ import annotations

from collections.abc import Callable

from tests.support.processes import wait_for_progress, wait_until


class FakeClock:
    """A clock that moves only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def steady(clock: FakeClock, every: float, until: int) -> Callable[[], int]:
    """A count that goes up by one every ``every`` seconds, up to ``until``."""
    return lambda: min(until, int(clock.now // every))


def test_slow_but_steady_progress_waits_far_beyond_the_stall_window() -> None:
    clock = FakeClock()
    # One issue settles every 20 s; 50 of them take 1000 s, far beyond the old 120 s total.
    result = wait_for_progress(
        steady(clock, 20, 50), lambda done: done == 50, stall_seconds=60, step=1, clock=clock, sleep=clock.sleep
    )
    assert result and result.done
    assert result.value == 50 and result.changes == 50
    assert result.elapsed >= 1000


def test_a_stall_fails_after_the_stall_window_and_says_where_it_stopped() -> None:
    clock = FakeClock()
    # Ten settle quickly, then nothing moves: it fails 60 s after the last change, not at some total.
    result = wait_for_progress(
        steady(clock, 2, 10), lambda done: done == 50, stall_seconds=60, step=1, clock=clock, sleep=clock.sleep
    )
    assert not result and not result.done
    assert result.value == 10
    assert 60 <= result.stalled_for < 62
    assert 80 <= result.elapsed < 82  # the last change came at 20 s
    assert "no progress for 60s" in str(result) and "10" in str(result)


def test_a_value_that_never_moves_fails_after_the_stall_window() -> None:
    clock = FakeClock()
    result = wait_for_progress(
        lambda: (3, 17), lambda value: value[0] == 0, stall_seconds=30, step=0.5, clock=clock, sleep=clock.sleep
    )
    assert not result
    assert result.changes == 0 and result.value == (3, 17)
    assert 30 <= result.elapsed < 31


def test_any_change_counts_as_progress_not_only_towards_done() -> None:
    clock = FakeClock()
    # The unsettled count stays put while events keep coming (an issue walks review, deploy...).
    events = lambda: (5 if clock.now < 300 else 0, int(clock.now // 10))  # noqa: E731
    result = wait_for_progress(
        events, lambda value: value[0] == 0, stall_seconds=60, step=1, clock=clock, sleep=clock.sleep
    )
    assert result and result.elapsed >= 300


def test_already_done_returns_at_once() -> None:
    clock = FakeClock()
    result = wait_for_progress(lambda: 0, lambda left: left == 0, stall_seconds=60, clock=clock, sleep=clock.sleep)
    assert result and result.elapsed == 0 and result.changes == 0


def test_the_old_wall_clock_wait_fails_the_same_steady_run() -> None:
    """Why the fault tests stopped using ``wait_until`` for work: a steady run past the total fails it."""
    import time

    started = time.monotonic()
    count = lambda: int((time.monotonic() - started) // 0.05)  # noqa: E731 - one more every 50 ms
    assert not wait_until(lambda: count() >= 20, timeout=0.3, step=0.02)  # steady, but past the total
    started = time.monotonic()
    assert wait_for_progress(count, lambda value: value >= 20, stall_seconds=1.0, step=0.02)
