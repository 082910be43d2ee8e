"""Where the work lives: the document kind (document/) and the git kind (repo/), and what both stand on:
the confined workspace (workspace.py), hardened git (git.py) and the command sandbox (sandbox.py).

``document`` is the built-in project of issues without a repository (deploy publishes files from the
database). A git project lives in ``repo``: ``project_file`` (its ``.hq/project.yaml``), ``repository``
(this host's clone and the per-issue worktrees, every git call hardened) and ``checks`` (its commands,
run by name in the sandbox, recorded as evidence against the exact commit).
"""
