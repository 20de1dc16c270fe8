"""Which code produced a number: hsi's version and the git commit it runs from.

Kept apart from :mod:`hsi.reports` so the command line can ask for the commit at start
without importing numpy and the data layer.
"""

from __future__ import annotations

import functools
import platform
import subprocess
from pathlib import Path

import hsi


@functools.lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The commit of the hsi checkout this process runs, ``+dirty`` when tracked files differ
    from it; None outside a git checkout.

    Asked once per process (``hsi fit``, ``test`` and ``benchmark`` ask at start), so a
    report written hours into a run names the code that was loaded, not a commit made
    meanwhile; ``+dirty`` says when that code was not a commit at all.
    """
    here = Path(__file__).resolve().parent
    return commit_of(here) if checkout_holding(here) is not None else None


def checkout_holding(package: Path) -> Path | None:
    """The git checkout whose top folder holds ``package`` as its own source folder, or None.

    Why: hsi installed into a virtual environment that lives inside some other repository
    (``project/.venv/lib/.../site-packages/hsi``) is inside that repository's work tree, and
    its commit would be reported as hsi's.
    """
    try:
        top = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=package,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    if not top or Path(top).resolve() != package.resolve().parent:
        return None
    return Path(top).resolve()


def commit_of(directory: Path) -> str | None:
    """Short hash of the commit checked out at ``directory`` (``+dirty`` with uncommitted
    changes to tracked files), or None when it is not in a git checkout or git is absent."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=directory,
        ).stdout.strip()
        if not head:
            return None
        dirty = subprocess.run(
            ["git", "diff", "--quiet", "HEAD"], capture_output=True, timeout=5, cwd=directory
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}+dirty" if dirty.returncode == 1 else head


def provenance() -> dict[str, str | None]:
    """Which code made a report (hsi's version, its git commit, Python's version), so a
    number in a benchmark table can be traced to the code that measured it."""
    return {
        "hsi_version": hsi.__version__,
        "git": git_commit(),
        "python": platform.python_version(),
    }
