"""One process at a time per run folder: a lock file that names its owner.

Why: a training run writes one resume checkpoint, one log folder and one report; two
processes training it at once would overwrite each other's files. That happens easily with
runs of hours in the background: the same command started again in another terminal, a job
restarted while the first still runs, or the other half of a benchmark suite started on a
free core. ``hsi benchmark`` locks each suite run's folder (a second process skips that run
and says who holds it; ``--status`` shows it as training now), and ``hsi fit --resume_dir``
locks the resume folder (a second ``hsi fit`` on it stops with a clear error).

The lock file holds the owner's pid, host and start time. A lock whose process has died on
this host is stale and is taken over. A lock from another host cannot be checked, so it
counts as held; delete it by hand if that run is known to be dead.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import socket
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

LOCK_NAME = "running.lock"


@dataclass(frozen=True)
class LockOwner:
    """The process that holds a run's lock."""

    pid: int
    host: str
    since: str  # UTC, ISO 8601

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host} since {self.since}"

    def alive(self) -> bool:
        """Whether the owner still runs. Another host's process cannot be checked, so it
        counts as alive."""
        if self.host != socket.gethostname():
            return True
        if self.pid == os.getpid():
            return False  # left behind by this process: its run is not going on
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # exists, owned by another user
            return True
        return True


def _read_owner(path: Path) -> LockOwner | None:
    """The lock's owner, or None when there is no lock file or it cannot be read."""
    try:
        data = json.loads(path.read_text())
        return LockOwner(int(data["pid"]), str(data["host"]), str(data["since"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def lock_owner(folder: str | Path) -> LockOwner | None:
    """The live process that holds the run in ``folder``, or None (no lock, or a stale one)."""
    owner = _read_owner(Path(folder) / LOCK_NAME)
    return owner if owner is not None and owner.alive() else None


def _create_with_content(path: Path, owner: LockOwner) -> bool:
    """Create ``path`` holding ``owner``, atomically: the file appears with its content or
    not at all (``os.link`` fails when the name exists). False when it already exists."""
    content = json.dumps(asdict(owner))
    fd, tmp = tempfile.mkstemp(prefix=".lock-", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(content)
        os.link(tmp, path)
    except FileExistsError:
        return False
    except OSError:  # a file system without hard links: exclusive create, then write
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            f.write(content)
    finally:
        os.unlink(tmp)
    return True


class FolderLock:
    """The lock of one folder, held by this process between :meth:`acquire` and
    :meth:`release` (:func:`claim_run` wraps the two for a ``with`` block)."""

    def __init__(self, folder: str | Path) -> None:
        self.path = Path(folder) / LOCK_NAME
        self._me: LockOwner | None = None

    def acquire(self) -> LockOwner | None:
        """Take the lock: None when this process holds it now, else its live owner."""
        if self._me is not None:
            return None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = LockOwner(
            os.getpid(),
            socket.gethostname(),
            _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        )
        for _ in range(3):  # a stale lock is removed and the claim tried again
            if _create_with_content(self.path, me):
                self._me = me
                return None
            owner = _read_owner(self.path)
            if owner is not None and owner.alive():
                return owner
            # stale (its process is gone) or unreadable (a foreign or damaged file; or, on a
            # file system without hard links, one being written this instant): take it over
            self.path.unlink(missing_ok=True)
        return _read_owner(self.path) or LockOwner(-1, "unknown", "unknown")

    def release(self) -> None:
        """Remove the lock if this process holds it (safe to call more than once)."""
        if self._me is not None and _read_owner(self.path) == self._me:
            self.path.unlink(missing_ok=True)
        self._me = None


@contextlib.contextmanager
def claim_run(folder: str | Path) -> Iterator[LockOwner | None]:
    """Hold the run in ``folder`` for the ``with`` block.

    Yields None when this process holds the run. Otherwise it yields the live owner, and
    the caller should leave the run alone. The lock is removed when the block ends, also
    on errors and on signals that raise.
    """
    lock = FolderLock(folder)
    owner = lock.acquire()
    if owner is not None:
        yield owner
        return
    try:
        yield None
    finally:
        lock.release()
