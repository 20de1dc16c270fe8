"""Training pieces the tasks share: optimizer and scheduler by name, epoch timing.

Why one place: the classification and restoration tasks take the same ``optimizer`` and
``scheduler`` names in their configs; building them here keeps the names meaning the same
thing in every task, and the seconds per epoch every report prints measured the same way.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch

from hsi.errors import ConfigError

log = logging.getLogger(__name__)


def make_optimizer(
    params: Iterable[torch.nn.Parameter],
    name: str,
    lr: float,
    weight_decay: float,
    allowed: tuple[str, ...] = ("adam", "adamw", "sgd"),
) -> torch.optim.Optimizer:
    """``adam``, ``adamw`` or ``sgd`` (momentum 0.9), among the ``allowed`` names."""
    if name not in allowed:
        raise ConfigError(f"unknown optimizer {name!r}; use {_one_of(allowed)}")
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)


def standard_scheduler(
    opt: torch.optim.Optimizer, name: str, max_epochs: Callable[[], int | None]
) -> Any | None:
    """Lightning's optimizer config for ``none``, ``cosine`` (over ``max_epochs()``, asked
    only then: a task may be configured before a Trainer exists) or ``plateau`` (halving on
    ``val/loss``); ``None`` for any other name, which the task builds itself or refuses."""
    if name == "none":
        return opt
    if name == "cosine":
        epochs = max(int(max_epochs() or 1), 1)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
        return {"optimizer": opt, "lr_scheduler": sched}
    if name == "plateau":
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=5)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "monitor": "val/loss"}}
    return None


def _one_of(names: tuple[str, ...]) -> str:
    return ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else names[0]


class EpochTimer:
    """Mixin for tasks: wall seconds of every training epoch in ``epoch_seconds``, logged as
    ``train/epoch_seconds`` and reported by the task's test report."""

    epoch_seconds: list[float]
    _epoch_start: float

    def on_train_epoch_start(self) -> None:
        self._epoch_start = time.perf_counter()

    def on_train_epoch_end(self) -> None:
        seconds = time.perf_counter() - self._epoch_start
        self.epoch_seconds.append(seconds)
        self.log("train/epoch_seconds", seconds)  # type: ignore[attr-defined]


def report_folder(report_dir: str | None, trainer: Any, what: str) -> Path | None:
    """Where ``hsi test`` writes a task's report: ``report_dir``, else the run's log folder.

    ``None`` (and a log line) when the run has neither, e.g. a ``Trainer(logger=False)`` in a
    script, whose ``log_dir`` would be the working directory: a report is never dropped there.
    """
    folder = report_dir or (trainer.log_dir if trainer.logger is not None else None)
    if folder is None:
        log.info("no report_dir and no logger: %s report not written", what)
        return None
    return Path(folder)
