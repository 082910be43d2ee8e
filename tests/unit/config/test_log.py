"""Logging (config/log.py): what `hq run` keeps out of its log."""

from __future__ import annotations


def test_skipped_beats_stay_out_of_the_log_even_after_a_library_resets_the_level() -> None:
    """`hq run` says once per long beat that it is still working; APScheduler's line per skipped turn is dropped
    by a filter, which a library resetting logger levels (LiteLLM does on import) cannot undo."""
    import logging

    from config.log import requiet

    requiet()
    scheduler = logging.getLogger("apscheduler.scheduler")
    scheduler.setLevel(logging.DEBUG)
    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    handler = Keep()
    scheduler.addHandler(handler)
    try:
        scheduler.warning(
            'Execution of job "%s" skipped: maximum number of running instances reached (%d)', "heartbeat qa", 1
        )
        scheduler.warning("Scheduler started")
    finally:
        scheduler.removeHandler(handler)
        requiet()
    assert seen == ["Scheduler started"]
