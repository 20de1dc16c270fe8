"""Time limits: `--stop_by` / `--time-limit` parsing and the callback's stop decision."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pytest

from hsi import callbacks
from hsi.callbacks import StopBeforeDeadline
from hsi.deadline import TimeLimitReached, parse_deadline
from hsi.errors import ConfigError

NOW = dt.datetime(2026, 11, 24, 21, 0, tzinfo=dt.timezone.utc)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("2h20m", 8400), ("90m", 5400), ("45s", 45), ("1h", 3600), ("5400", 5400), ("1.5h", 5400)],
)
def test_durations_count_from_now(text: str, seconds: float) -> None:
    assert parse_deadline(text, now=NOW) == NOW + dt.timedelta(seconds=seconds)


def test_iso_times_keep_their_zone_and_a_naive_one_is_local_time() -> None:
    assert parse_deadline("2026-11-24T23:25+00:00", now=NOW) == NOW.replace(hour=23, minute=25)
    naive = parse_deadline("2030-01-01T08:00")
    assert naive.tzinfo is not None  # comparable with now, in the machine's zone
    assert naive == dt.datetime(2030, 1, 1, 8, 0).astimezone()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("soon", "neither a duration"),
        ("2x", "neither a duration"),
        ("", "neither a duration"),
        ("0", "positive duration"),
        ("0m", "positive duration"),
        ("2026-11-24T20:00+00:00", "already past"),
    ],
)
def test_a_limit_that_is_not_one_is_refused(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_deadline(text, now=NOW)


def _epoch_start(cb: StopBeforeDeadline, epoch: int, module: object | None = None) -> None:
    trainer = SimpleNamespace(current_epoch=epoch, loggers=[])
    cb.on_train_epoch_start(trainer, module or SimpleNamespace())  # type: ignore[arg-type]


def test_an_epoch_is_not_started_when_the_longest_recent_one_would_overrun(monkeypatch) -> None:
    clock = {"monotonic": 0.0}
    monkeypatch.setattr(callbacks.time, "monotonic", lambda: clock["monotonic"])
    # 1000 s from now, measured by the callback against the real clock
    cb = StopBeforeDeadline(dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=1000))
    _epoch_start(cb, 0)  # nothing measured yet: a first epoch always starts
    clock["monotonic"] = 300.0
    _epoch_start(cb, 1)  # 300 s per epoch, 1000 s left
    clock["monotonic"] = 500.0
    _epoch_start(cb, 2)  # the longest of the last epochs counts (300 s), not the last (200 s)
    assert cb.next_epoch_estimate(SimpleNamespace()) == 300.0
    cb.deadline = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=250)
    clock["monotonic"] = 600.0
    with pytest.raises(TimeLimitReached, match="before epoch 3") as stopped:
        _epoch_start(cb, 3)
    assert stopped.value.epoch == 3 and stopped.value.estimate == 300.0
    assert "run the same command again" in str(stopped.value)


def test_a_resumed_run_estimates_its_first_epoch_from_the_checkpoint_timings() -> None:
    resumed = SimpleNamespace(epoch_seconds=[50.0, 400.0, 100.0, 120.0, 110.0, 130.0])
    cb = StopBeforeDeadline(dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=400))
    # the longest of the last five training epochs, plus validation's allowance
    assert cb.next_epoch_estimate(resumed) == pytest.approx(400.0 * callbacks.VALIDATION_ALLOWANCE)
    with pytest.raises(TimeLimitReached, match="before epoch 6"):
        _epoch_start(cb, 6, resumed)
    quick = SimpleNamespace(epoch_seconds=[10.0])
    _epoch_start(StopBeforeDeadline(cb.deadline), 1, quick)  # 12.5 s fits in 400 s


def test_a_deadline_without_a_zone_is_refused() -> None:
    with pytest.raises(ConfigError, match="time-zone-aware"):
        StopBeforeDeadline(dt.datetime(2030, 1, 1))
