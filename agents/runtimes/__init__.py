"""Runtimes other than HQ's own tool loop: an external coding agent works the issue, HQ keeps the rest."""

from config.errors import HQError


class RuntimeFailed(HQError):
    """The coding agent ran but gave no result HQ can use: the attempt counts, with what it printed."""
