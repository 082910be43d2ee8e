"""Projects: the repositories the company works on.

``document`` is the built-in project of issues without a repository (deploy
publishes files from the database). A git project lives in ``project_file``
(its ``.hq/project.yaml``), ``repository`` (this host's clone and the per-issue
worktrees, every git call hardened) and ``checks`` (its commands, run by name in
the sandbox, recorded as evidence against the exact commit).
"""
