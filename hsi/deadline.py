"""Stopping a resumable fit between epochs before a deadline (``hsi fit --stop_by``,
``hsi benchmark --time-limit``); the callback is :class:`hsi.callbacks.StopBeforeDeadline`.

Why: long runs here live under wall-time limits (a SLURM allocation, a lent machine's
session, ``timeout``). A run killed mid-epoch goes on from its last finished epoch
(``--resume_dir``) but loses the epoch it was in: up to 8 minutes of one CPU thread for
LoLA-SpecViT under ``disjoint``, every time. With a deadline the fit instead declines to
start an epoch that would end after it, so the kill finds nothing to lose. The outer time
limit stays the hard stop: the estimate can be wrong, and the fit never declines a new run's
first epoch (a resumed run's is estimated from its saved epoch times; ``hsi benchmark``
estimates a new run's from its other seeds' pace before starting it, and only when one has
trained).
"""

from __future__ import annotations

import datetime as dt
import re

from hsi.errors import ConfigError

# "temporary failure, try again" (sysexits.h): what `hsi fit` and `hsi benchmark` return when
# they stopped before a deadline with work left, so a scheduler loop knows to call again
EXIT_TIME_LIMIT = 75
_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?$")


def parse_deadline(text: str, now: dt.datetime | None = None) -> dt.datetime:
    """A deadline from an ISO 8601 time (``2026-11-24T23:25``, local time when it names no
    zone) or a duration from ``now`` (``2h20m``, ``90m``, ``45s``, or plain seconds)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    value = text.strip()
    seconds: float | None = None
    if re.fullmatch(r"\d+(?:\.\d+)?", value):
        seconds = float(value)
    elif value and (match := _DURATION.match(value)):
        hours, minutes, secs = (float(g) if g else 0.0 for g in match.groups())
        seconds = hours * 3600 + minutes * 60 + secs
    if seconds is not None:
        if seconds <= 0:
            raise ConfigError(f"time limit {text!r}: give a positive duration")
        return now + dt.timedelta(seconds=seconds)
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(
            f"time limit {text!r} is neither a duration (2h20m, 90m, 5400) nor an ISO 8601 "
            "time (2026-11-24T23:25, 2026-11-24T23:25+00:00)"
        ) from None
    if when.tzinfo is None:
        when = when.astimezone()  # the machine's local time, as `date` shows it
    if when <= now:
        raise ConfigError(f"time limit {text!r} is already past (now {now.isoformat()})")
    return when


def seconds_until(when: dt.datetime) -> float:
    """Seconds from now to a time-zone-aware ``when`` (negative once it has passed)."""
    return (when - dt.datetime.now(dt.timezone.utc)).total_seconds()


class TimeLimitReached(BaseException):
    """A fit stopped at an epoch boundary because the next epoch would end after its
    deadline. A BaseException, as a stop signal is: the run is not failed, it is resumable
    (its last finished epoch is in ``--resume_dir``), and nothing may count it as a fault."""

    def __init__(self, deadline: dt.datetime, epoch: int, estimate: float) -> None:
        self.deadline = deadline
        self.epoch = epoch
        self.estimate = estimate
        super().__init__(
            f"stopped before epoch {epoch}: it would take about {estimate / 60:.1f} min and end "
            f"after the time limit {deadline.isoformat(timespec='seconds')}; run the same "
            "command again to go on from there"
        )
