"""One process at a time per suite run: a lock file in the run's folder.

Why: a suite trains for hours in the background, and a second ``hsi benchmark`` on the same
output folder would otherwise train the same run at the same time. That second process can
come from another terminal, a job restarted while the first still runs, or the other half of
a suite started on a free core. Both would write the same resume checkpoint and the same
report. The lock names its owner (pid, host, start time), so the second process skips the
run and says who holds it, and ``--status`` shows the run as training now. A lock whose
process has died on this host is stale and is taken over. A lock from another host cannot be
checked, so it counts as held; delete it by hand if that run is known to be dead.
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


@contextlib.contextmanager
def claim_run(folder: str | Path) -> Iterator[LockOwner | None]:
    """Hold the run in ``folder`` for the ``with`` block.

    Yields None when this process holds the run. Otherwise it yields the live owner, and
    the caller should leave the run alone. The lock is removed when the block ends, also
    on errors and on signals that raise.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    me = LockOwner(
        os.getpid(),
        socket.gethostname(),
        _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    )
    for _ in range(3):  # a stale lock is removed and the claim tried again
        if _create_with_content(path, me):
            break
        owner = _read_owner(path)
        if owner is not None and owner.alive():
            yield owner
            return
        # stale (its process is gone) or unreadable (a foreign or damaged file; or, on a
        # file system without hard links, one being written this instant): take it over
        path.unlink(missing_ok=True)
    else:
        owner = _read_owner(path)
        yield owner or LockOwner(-1, "unknown", "unknown")
        return
    try:
        yield None
    finally:
        if _read_owner(path) == me:
            path.unlink(missing_ok=True)
