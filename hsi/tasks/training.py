"""Training pieces the tasks share: optimizer and scheduler by name, epoch timing.

Why one place: the classification and restoration tasks take the same ``optimizer`` and
``scheduler`` names in their configs; building them here keeps the names meaning the same
thing in every task, and the seconds per epoch every report prints measured the same way.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.trainer.states import TrainerFn

from hsi.errors import ConfigError

log = logging.getLogger(__name__)


def make_optimizer(
    params: Iterable[torch.nn.Parameter] | Iterable[dict[str, Any]],
    name: str,
    lr: float,
    weight_decay: float,
    allowed: tuple[str, ...] = ("adam", "adamw", "sgd"),
) -> torch.optim.Optimizer:
    """``adam``, ``adamw`` or ``sgd`` (momentum 0.9), among the ``allowed`` names, over
    parameters or parameter groups (dicts with ``params`` and per-group settings).

    Adam and AdamW take PyTorch's fused kernel when every parameter is on the CPU
    (:func:`cpu_fused`).
    """
    if name not in allowed:
        raise ConfigError(f"unknown optimizer {name!r}; use {_one_of(allowed)}")
    params = list(params)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, **cpu_fused(params))
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, **cpu_fused(params))
    return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)


def cpu_fused(params: list[torch.nn.Parameter] | list[dict[str, Any]]) -> dict[str, bool]:
    """``{"fused": True}`` for Adam/AdamW when every parameter is a float tensor on the CPU.

    Why: on the CPU PyTorch's default Adam loops over the tensors one element-wise op at a
    time; for LoLA-SpecViT's 183 M parameters the fused kernel did the same update 3.7x
    faster and the whole training step in 0.87x the time (``benchmarks/bench_lola_specvit.py``).
    On CUDA the default (multi-tensor ``foreach``) is already fast, and Lightning's gradient
    clipping under 16-bit mixed precision refuses optimizers that unscale their own
    gradients, as fused ones do: there the default stays.
    """
    tensors = [p for item in params for p in (item["params"] if isinstance(item, dict) else [item])]
    if tensors and all(p.device.type == "cpu" and p.is_floating_point() for p in tensors):
        return {"fused": True}
    return {}


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


def epoch_set_scheduler(
    opt: torch.optim.Optimizer, base_lr: float, lr_schedule: Mapping[int | str, float]
) -> torch.optim.lr_scheduler.LambdaLR:
    """Set the learning rate to ``lr_schedule[e]`` from epoch ``e`` on (piecewise constant).

    Why not MultiStepLR: HSDT/QRNN3D's schedules (the authors' ``hsir/schedule.py``) *set*
    absolute rates and go back up (HSDT: 1e-3, 1e-4 at epoch 20, 1e-3 again at 30, …), which
    a decay factor cannot express. Before the first listed epoch the rate is ``base_lr``.
    Keys may be strings (YAML/JSON mappings): they must be integer epochs >= 0.
    """
    try:
        table = sorted((int(epoch), float(rate)) for epoch, rate in lr_schedule.items())
    except (TypeError, ValueError):
        raise ConfigError(
            f"lr_schedule must map epochs to learning rates, e.g. {{0: 1e-3, 20: 1e-4}}; "
            f"got {dict(lr_schedule)!r}"
        ) from None
    if not table:
        raise ConfigError("scheduler epoch_set needs a non-empty lr_schedule {epoch: lr}")
    if table[0][0] < 0 or any(rate <= 0 for _, rate in table) or base_lr <= 0:
        raise ConfigError(f"lr_schedule needs epochs >= 0 and rates > 0, got {dict(table)!r}")

    def factor(epoch: int) -> float:
        rate = base_lr
        for start, value in table:
            if epoch < start:
                break
            rate = value
        return rate / base_lr

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def _one_of(names: tuple[str, ...]) -> str:
    return ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else names[0]


class EpochTimer:
    """Mixin for tasks: wall seconds of every training epoch in ``epoch_seconds`` and the
    process's CPU seconds in ``epoch_cpu_seconds``, logged as ``train/epoch_seconds`` and
    ``train/epoch_cpu_seconds`` and reported by the task's test report.

    Why both: wall time is what a user waits, but on a shared machine it also counts the
    time other jobs held the cores (a run at ``nice 19`` behind others had epochs of 5 to 81
    minutes instead of 1.5). CPU time (user + system, all threads of this process, not
    data-loader worker processes) leaves that waiting out, so runs made under different
    loads compare better; other jobs still slow it somewhat through shared caches and
    memory. With several threads it exceeds the wall time.
    """

    epoch_seconds: list[float]
    epoch_cpu_seconds: list[float]
    _epoch_start: float
    _epoch_cpu_start: float

    def on_train_epoch_start(self) -> None:
        self._epoch_start = time.perf_counter()
        self._epoch_cpu_start = time.process_time()

    def on_train_epoch_end(self) -> None:
        seconds = time.perf_counter() - self._epoch_start
        cpu_seconds = time.process_time() - self._epoch_cpu_start
        self.epoch_seconds.append(seconds)
        self.epoch_cpu_seconds.append(cpu_seconds)
        self.log("train/epoch_seconds", seconds)  # type: ignore[attr-defined]
        self.log("train/epoch_cpu_seconds", cpu_seconds)  # type: ignore[attr-defined]

    # The timings travel in every checkpoint so that a resumed run (``hsi fit --resume_dir``)
    # reports all its epochs, not only those after the restart. They are restored only when
    # fitting: testing the best checkpoint must keep the whole run's list.
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["hsi_epoch_seconds"] = [float(s) for s in self.epoch_seconds]
        checkpoint["hsi_epoch_cpu_seconds"] = [float(s) for s in self.epoch_cpu_seconds]
        super().on_save_checkpoint(checkpoint)  # type: ignore[misc]

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)  # type: ignore[misc]
        trainer = getattr(self, "_trainer", None)
        if trainer is not None and trainer.state.fn == TrainerFn.FITTING:
            self.epoch_seconds = list(checkpoint.get("hsi_epoch_seconds") or [])
            # a run begun with an hsi that kept no CPU times has them only for the epochs
            # trained since (fewer entries than epoch_seconds)
            self.epoch_cpu_seconds = list(checkpoint.get("hsi_epoch_cpu_seconds") or [])


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
