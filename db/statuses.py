"""Issue statuses as constants, importable without loading the ORM."""

STATUSES = (
    "backlog",
    "todo",
    "in_progress",
    "in_review",
    "pending_approval",
    "approved",
    "deploying",
    "done",
    "blocked",
    "rejected",
    "cancelled",
)
TERMINAL_STATUSES = frozenset({"done", "rejected", "cancelled"})
