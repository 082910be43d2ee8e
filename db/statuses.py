"""Issue statuses, importable without loading the ORM; defined in config/vocabulary.py."""

from config.vocabulary import OPEN_STATUSES, STATUSES, TERMINAL_STATUSES

__all__ = ["OPEN_STATUSES", "STATUSES", "TERMINAL_STATUSES"]
