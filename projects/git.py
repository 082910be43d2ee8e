"""The one way HQ runs git: on a repository whose files an agent wrote, with nothing of theirs obeyed.

Everything inside a workspace is hostile. Git reads configuration, hooks,
attributes and nested repositories from the directories it works in, and
several of those run programs (``core.fsmonitor``, ``core.sshCommand``,
``core.pager``, hooks, filter drivers). So every call here:

* names the repository explicitly (``GIT_DIR`` and ``GIT_WORK_TREE``) instead
  of letting git discover one from the working directory;
* ignores the system and global config and any ``$HOME`` (``GIT_CONFIG_NOSYSTEM``,
  ``GIT_CONFIG_GLOBAL=/dev/null``, ``HOME`` pointing nowhere), and overrides on
  the command line every setting that would run something;
* refuses to work on a tree that contains a nested repository (a ``.git`` file
  or directory, in any case, below the top), which ``git add`` would otherwise
  open with that repository's own config.

The repository's own ``.git/config`` is written by HQ alone: agents cannot name
any path with a ``.git`` component (``is_git_name``).
"""

from __future__ import annotations

import os
import re
import subprocess
import unicodedata
from collections.abc import Iterator
from pathlib import Path

from config.errors import HQError
from projects.walk import entries

GIT_TIMEOUT_SECONDS = 60

# Command-line settings win over every config file git might still read.
HARDENED_CONFIG = (
    "core.fsmonitor=false",
    "core.hooksPath=/dev/null",
    "core.sshCommand=false",
    "core.pager=cat",
    "core.editor=false",
    "core.askPass=false",
    "core.untrackedCache=false",
    "core.attributesFile=/dev/null",
    "core.excludesFile=/dev/null",
    "protocol.file.allow=never",
    "submodule.recurse=false",
    "gpg.program=false",
    "commit.gpgSign=false",
    "credential.helper=",
    "gc.auto=0",  # no background gc or maintenance, outside every timeout
    "maintenance.auto=false",
)

# Names git treats as its own somewhere: the repository itself, and files git obeys while adding.
_GIT_OWNED = frozenset({".git", ".gitmodules", ".gitattributes", ".gitignore"})
_SHORT_NAME = re.compile(r"git~[0-9]+")


class GitError(HQError):
    """A git command failed; the message carries git's own words (truncated)."""


def _folded(component: str) -> str:
    """A name as the most lenient file system sees it: no case, no trailing dots or spaces, no ignorables."""
    visible = "".join(ch for ch in unicodedata.normalize("NFC", component) if unicodedata.category(ch) != "Cf")
    return visible.rstrip(". ").casefold()


def is_git_name(component: str) -> bool:
    """Whether a path component is, or some git on some file system would read as, one of git's own names.

    Compared without case, trailing dots and spaces (Windows) or ignorable
    code points (HFS+), and including NTFS short names such as ``git~1``.
    """
    folded = _folded(component)
    return folded in _GIT_OWNED or _SHORT_NAME.fullmatch(folded) is not None


def nested_repositories(work_tree: Path) -> Iterator[Path]:
    """Every entry below the top of ``work_tree`` that git would take for a repository (any case).

    Walked by projects/walk.py (no recursion, no symlink followed): a command can leave a chain of
    directories deeper than the interpreter's recursion limit.
    """
    top = work_tree / ".git"
    for entry in entries(work_tree, descend=lambda entry: Path(entry.path) != top):
        path = Path(entry.path)
        if path != top and _folded(entry.name) == ".git":
            yield path


def environment(author: str = "hq", email: str = "hq@heartbeat-hq.invalid") -> dict[str, str]:
    """A scrubbed environment: nothing of the host's git setup or secrets, the same commit on every machine."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": "/nonexistent",
        "XDG_CONFIG_HOME": "/nonexistent",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_ATTR_NOSYSTEM": "1",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_PAGER": "cat",
        "GIT_AUTHOR_NAME": author,
        "GIT_AUTHOR_EMAIL": email,
        "GIT_COMMITTER_NAME": author,
        "GIT_COMMITTER_EMAIL": email,
        "LC_ALL": "C",
    }


# Remote operations (fetch, push) may reach the project's remote, and only through these transports.
REMOTE_CONFIG = (
    "protocol.allow=never",
    "protocol.file.allow=always",
    "protocol.https.allow=always",
    "protocol.http.allow=always",
    "protocol.git.allow=always",
)


def git(
    work_tree: Path | None,
    *args: str,
    git_dir: Path | None = None,
    remote: bool = False,
    author: str = "hq",
    email: str = "hq@heartbeat-hq.invalid",
    timeout: float = GIT_TIMEOUT_SECONDS,
) -> subprocess.CompletedProcess[str]:
    """Run one hardened git command and hand back its result, whatever its exit code.

    ``git_dir`` defaults to ``work_tree/.git``; a bare repository has no work tree. A
    worktree's own ``.git`` file is never read (whatever ran in the worktree may
    have rewritten it): the caller names its git directory. GitError only when git
    cannot run at all, or the work tree holds a nested repository.
    """
    root = work_tree.resolve() if work_tree is not None else None
    if root is not None:
        for nested in nested_repositories(root):
            raise GitError(f"refusing to run git: {nested.relative_to(root).as_posix()!r} is a nested repository")
    repository = git_dir or (root / ".git" if root is not None else None)
    if repository is None:
        raise ValueError("git needs a work tree or a git directory")
    argv = ["git"]  # then every HARDENED_CONFIG override (core.fsmonitor=false, ...) and safe.directory
    trusted = [f"safe.directory={path}" for path in (root, repository.resolve()) if path is not None]
    settings = (*HARDENED_CONFIG, *(REMOTE_CONFIG if remote else ()), *trusted)
    for setting in settings:
        argv += ["-c", setting]
    env = environment(author, email) | {"GIT_DIR": str(repository)}
    if root is not None:
        env |= {"GIT_WORK_TREE": str(root), "GIT_CEILING_DIRECTORIES": str(root.parent)}
    try:
        return subprocess.run(
            [*argv, *args],
            cwd=root or repository,
            env=env,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise GitError(f"git {args[0]} timed out after {timeout:.0f}s") from None
    except OSError as error:
        raise GitError(f"git could not start: {error.strerror}") from None


def run_git(
    work_tree: Path | None,
    *args: str,
    git_dir: Path | None = None,
    remote: bool = False,
    author: str = "hq",
    email: str = "hq@heartbeat-hq.invalid",
) -> str:
    """Run one git command (see ``git``); its standard output, or GitError (never a crash) when git fails."""
    result = git(work_tree, *args, git_dir=git_dir, remote=remote, author=author, email=email)
    if result.returncode != 0:
        raise GitError(f"git {args[0]} failed: {result.stderr.strip()[:300]}")
    return result.stdout
