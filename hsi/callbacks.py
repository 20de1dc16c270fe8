"""Lightning callbacks for hsi's training runs.

:class:`ResumeCheckpoint` keeps a resume file after every epoch (``hsi fit --resume_dir``);
:class:`StopBeforeDeadline` stops such a fit between epochs before a deadline (``--stop_by``).

:class:`CyclicLoRAScaling` is LoLA-SpecViT's cyclical modulation of LoRA's adaptation
strength (Zidi et al., "LoLA-SpecViT: Local Attention SwiGLU Vision Transformer with LoRA
for Hyperspectral Imaging", JAG 144:104924, 2025, arXiv:2506.17759): "a novel cyclical
learning rate scheduler modulates LoRA adaptation strength during training, improving
convergence and generalisation". The authors' code defines a cosine schedule with warm
restarts and an unused ``update_lora_scale`` hook, but never calls either, so this is the
paper's intent rebuilt on the cycle their code uses (``T_0 = 10`` epochs, ``T_mult = 2``,
the settings of their ``CosineAnnealingWarmRestarts``).
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import logging
import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, Checkpoint

from hsi.deadline import TimeLimitReached, seconds_until
from hsi.errors import ConfigError, DataError
from hsi.nn.lora import LoRALinear
from hsi.run_lock import FolderLock

log = logging.getLogger(__name__)


class CyclicLoRAScaling(Callback):
    """Multiply every LoRA layer's ``α/r`` by a cyclical factor during training steps.

    Schedule, with ``t`` the training time in epochs (``epoch + batch / batches``): cycles
    of warm-restart lengths ``T_i = cycle_epochs · cycle_mult^i`` (SGDR, Loshchilov &
    Hutter, ICLR 2017); at position ``τ`` in cycle ``i`` the factor is

        ``m(t) = max_scale − (max_scale − min_scale) · (1 + cos(π τ / T_i)) / 2``,

    rising from ``min_scale`` at each restart to ``max_scale`` at the cycle's end. Paired
    with a cosine-restart learning rate (high at a restart, annealed at the end), the
    adapters act damped while the learning rate is large and at full strength while it
    settles; since LoRA's gradients scale with ``α/r`` too, this also cycles the adapters'
    effective step size, the paper's "cyclical learning rate" for LoRA.

    Validation, test and prediction always run at the nominal ``α/r`` (factor 1, restored
    in their start hooks and at the end of training), so with the default
    ``max_scale = 1`` a checkpoint computes exactly what it computed at the end of a
    cycle and carries no schedule state. The factor is logged as ``lora/scale``.
    """

    def __init__(
        self,
        cycle_epochs: float = 10.0,
        cycle_mult: float = 2.0,
        min_scale: float = 0.5,
        max_scale: float = 1.0,
    ) -> None:
        super().__init__()
        if not cycle_epochs > 0:
            raise ConfigError(f"cycle_epochs must be > 0, got {cycle_epochs}")
        if not cycle_mult >= 1:
            raise ConfigError(f"cycle_mult must be >= 1, got {cycle_mult}")
        if not 0 <= min_scale <= max_scale:
            raise ConfigError(
                f"need 0 <= min_scale <= max_scale, got min_scale={min_scale}, "
                f"max_scale={max_scale}"
            )
        self.cycle_epochs = float(cycle_epochs)
        self.cycle_mult = float(cycle_mult)
        self.min_scale = float(min_scale)
        self.max_scale = float(max_scale)

    def cycle_position(self, t: float) -> tuple[float, float]:
        """``(τ, T_i)``: time into the current cycle and that cycle's length, in epochs."""
        t0, mult = self.cycle_epochs, self.cycle_mult
        if mult == 1.0:
            return t % t0, t0
        n = int(math.floor(math.log(1 + t * (mult - 1) / t0, mult)))
        start = t0 * (mult**n - 1) / (mult - 1)
        if t < start:  # float round-off at a boundary put n one too high
            n -= 1
            start = t0 * (mult**n - 1) / (mult - 1)
        return t - start, t0 * mult**n

    def multiplier(self, t: float) -> float:
        """The factor ``m(t)`` at training time ``t`` (epochs, fractional)."""
        if t < 0:
            raise ConfigError(f"training time must be >= 0, got {t}")
        tau, length = self.cycle_position(t)
        cosine = (1 + math.cos(math.pi * tau / length)) / 2
        return self.max_scale - (self.max_scale - self.min_scale) * cosine

    @staticmethod
    def _lora_layers(module: L.LightningModule) -> list[LoRALinear]:
        return [m for m in module.modules() if isinstance(m, LoRALinear)]

    def _apply(self, module: L.LightningModule, factor: float) -> None:
        for layer in self._lora_layers(module):
            layer.set_scale_multiplier(factor)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._lora_layers(pl_module):
            raise ConfigError(
                f"CyclicLoRAScaling needs a model with LoRA layers; "
                f"{type(getattr(pl_module, 'net', pl_module)).__name__} has none. Remove the "
                f"callback or use a model with LoRA (e.g. lola_specvit)"
            )

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        batches = trainer.num_training_batches
        fraction = batch_idx / batches if math.isfinite(batches) and batches > 0 else 0.0
        factor = self.multiplier(trainer.current_epoch + fraction)
        self._apply(pl_module, factor)
        pl_module.log("lora/scale", factor, on_step=True, on_epoch=False)

    def _restore(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._apply(pl_module, 1.0)

    on_validation_start = _restore
    on_test_start = _restore
    on_predict_start = _restore
    on_train_end = _restore


class ResumeCheckpoint(Checkpoint):
    """Keep ``<dirpath>/last.ckpt`` up to date after every training epoch, so that a killed
    run continues where it stopped instead of starting over.

    Why: a full benchmark suite is hours of CPU time, and the GPU machines this project is
    lent stop a command after ten minutes; a run must survive ``timeout``, a closed session
    or a preempted machine. ``hsi fit --resume_dir DIR`` adds this callback and, when
    ``DIR/last.ckpt`` exists, resumes from it (weights, optimiser, schedulers, loop
    counters, the best-checkpoint bookkeeping and the task's epoch timings), in the same log
    folder, whose CSV learning curve keeps the finished epochs' rows. ``DIR`` is locked
    (:mod:`hsi.run_lock`) while the fit runs, so a second ``hsi fit`` on it stops with an
    error instead of overwriting this run's files.

    Lightning's ``ModelCheckpoint(save_last=True)`` is not enough: since 2.x it writes
    ``last.ckpt`` only in epochs that also write a best checkpoint. The file is written to a
    temporary name and renamed, so a kill during the write leaves the previous epoch's file
    whole. Being a :class:`Checkpoint`, it runs after the task's own epoch-end hook and, when
    appended after the best-model ``ModelCheckpoint``, after that one's bookkeeping too.
    """

    FILENAME = "last.ckpt"

    def __init__(self, dirpath: str | Path, fingerprint: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.dirpath = Path(dirpath)
        # what must not change between the killed run and its continuation (the CLI gives the
        # model section of the config): kept in the checkpoint, compared on resume
        self.fingerprint = None if fingerprint is None else dict(fingerprint)
        self._kept_metrics: _CsvRows | None = None
        self._lock = FolderLock(self.dirpath)

    @property
    def path(self) -> Path:
        return self.dirpath / self.FILENAME

    def state_dict(self) -> dict[str, Any]:
        # the interrupted run's log version: resuming into the same log folder keeps its
        # metrics and lets the best-model checkpoint keep its best score (Lightning reloads
        # that only when the checkpoint folder is unchanged)
        return {
            "logger_version": getattr(self, "_logger_version", None),
            "fingerprint": self.fingerprint,
        }

    def read(self) -> dict[str, Any]:
        """The resume checkpoint (tensors memory-mapped, not read), or a clear error."""
        try:
            checkpoint = torch.load(self.path, map_location="cpu", weights_only=True, mmap=True)
        except Exception as exc:  # noqa: BLE001 - truncated, foreign or corrupt: say which file
            raise DataError(
                f"resume checkpoint {self.path} cannot be read ({type(exc).__name__}: {exc}); "
                "delete it to train from the start"
            ) from None
        if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
            raise DataError(f"{self.path} is not a Lightning checkpoint; delete it to start over")
        return checkpoint

    def check_same_run(self, checkpoint: dict[str, Any]) -> None:
        """Refuse to resume a run of another model configuration: a --resume_dir reused after
        a config change would otherwise fail deep inside the state-dict loading, or load."""
        saved = self._saved_state(checkpoint).get("fingerprint")
        if saved is None or self.fingerprint is None:
            return
        before, now = _flatten(saved), _flatten(self.fingerprint)
        differences = [
            f"{key}: {before.get(key, '(unset)')!r} there, {now.get(key, '(unset)')!r} now"
            for key in sorted(set(before) | set(now))
            if before.get(key) != now.get(key)
        ]
        if differences:
            raise ConfigError(
                f"{self.path} holds a run of another model configuration "
                f"({'; '.join(differences)}): delete it or give another --resume_dir"
            )

    def saved_logger_version(self, checkpoint: dict[str, Any]) -> int | str | None:
        """The log version the resume file was written under (None: it had no logger)."""
        return self._saved_state(checkpoint).get("logger_version")

    def _saved_state(self, checkpoint: dict[str, Any]) -> dict[str, Any]:
        """What :meth:`state_dict` put into the checkpoint (empty for a foreign one)."""
        return (checkpoint.get("callbacks") or {}).get(self.state_key) or {}

    def keep_logged_metrics(self, logger: Any, checkpoint: dict[str, Any]) -> None:
        """Read the CSV log's rows of the epochs the resume file holds, to write them back
        once the resumed fit starts (:meth:`on_fit_start`).

        Why: Lightning's CSV logger deletes ``metrics.csv`` when it reopens a log folder
        that is not empty, so a resumed run would keep only its last segment's learning
        curve. Rows of the killed, unfinished epoch are left out: that epoch is trained
        again. Call this before the fit starts (the CLI does, in ``before_fit``).
        """
        path = _csv_metrics_path(logger)
        if path is None or not path.is_file():
            return
        last_epoch = int(checkpoint.get("epoch", -1))
        try:
            with path.open(newline="") as f:
                reader = csv.DictReader(f)
                rows = list(reader)
                header = list(reader.fieldnames or [])
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            log.warning("%s cannot be read (%s): the resumed log starts afresh", path, exc)
            return
        finished = [r for r in rows if (epoch := _row_epoch(r)) is not None and epoch <= last_epoch]
        self._kept_metrics = _CsvRows(header, finished)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        kept, self._kept_metrics = self._kept_metrics, None
        if kept is None or not kept.rows or not trainer.is_global_zero:
            return
        writer = trainer.logger.experiment  # opening the log folder deletes the old file
        keys = getattr(writer, "metrics_keys", None)
        path = getattr(writer, "metrics_file_path", None)
        if keys is None or path is None:  # another Lightning, whose CSV writer differs
            log.warning("the CSV log of the epochs before the resume could not be put back")
            return
        header = sorted(set(keys) | set(kept.header))
        try:
            with open(path, "w", newline="") as f:
                out = csv.DictWriter(f, fieldnames=header)
                out.writeheader()
                out.writerows(kept.rows)
        except (OSError, ValueError) as exc:  # ValueError: a damaged row with extra fields
            log.warning("the CSV log of the epochs before the resume was not put back: %s", exc)
            Path(path).unlink(missing_ok=True)  # as Lightning left it: it writes a new one
            return
        writer.metrics_keys = header  # its later writes append under (or extend) this header

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # one process per resume folder: a second `hsi fit` on it would overwrite this
        # run's resume file and logs
        if stage != "fit" or not trainer.is_global_zero:
            return
        owner = self._lock.acquire()
        if owner is not None:
            raise ConfigError(
                f"--resume_dir {self.dirpath} is in use by another run ({owner.describe()}); "
                f"wait for it to finish or give another --resume_dir (delete {self._lock.path} "
                "if no such process runs)"
            )

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":
            self._lock.release()

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        self._lock.release()

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # the previous epoch's end-of-epoch metrics are logged after on_train_epoch_end
        # (after the resume file was written): write them out now
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.save()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        logger = trainer.logger
        self._logger_version = None if logger is None else logger.version
        if trainer.is_global_zero:
            for each in trainer.loggers:  # the logs on disk hold every row logged so far
                each.save()
        tmp = self.path.with_name(self.FILENAME + ".tmp")
        if trainer.is_global_zero:
            self.dirpath.mkdir(parents=True, exist_ok=True)
        # the full state (optimiser, loops, callbacks): everything a resumed fit needs
        trainer.save_checkpoint(tmp, weights_only=False)  # collective: rank 0 writes
        if trainer.is_global_zero:
            os.replace(tmp, self.path)

    def remove(self) -> None:
        """Delete the resume file (the run finished: there is nothing left to resume)."""
        self._lock.release()
        self.path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self.dirpath.rmdir()  # only when empty


# A resumed run's first epoch is estimated from its training epochs alone (the checkpoint
# keeps their wall times); validation and the checkpoint writes come on top of that.
VALIDATION_ALLOWANCE = 1.25
_RECENT_EPOCHS = 5  # what the estimate looks back over: the machine's load changes over hours


class StopBeforeDeadline(Callback):
    """Raise :class:`TimeLimitReached` at the start of an epoch that would end after
    ``deadline``.

    The estimate of the next epoch is the longest of the last few epochs this process ran,
    start to start (training, validation, checkpoints); before one has run, the longest of
    the resumed run's last training epochs times ``VALIDATION_ALLOWANCE``; with neither, the
    epoch starts. The check runs at epoch start, after the previous epoch's resume file was
    written (checkpoint callbacks run last at epoch end), so the stop loses no work.
    """

    def __init__(self, deadline: dt.datetime) -> None:
        super().__init__()
        if deadline.tzinfo is None:
            raise ConfigError("StopBeforeDeadline needs a time-zone-aware deadline")
        self.deadline = deadline
        self._durations: list[float] = []
        self._last_start: float | None = None

    def next_epoch_estimate(self, pl_module: L.LightningModule) -> float | None:
        """Seconds the next epoch is expected to take (None: no measurement yet)."""
        if self._durations:
            return max(self._durations[-_RECENT_EPOCHS:])
        trained = list(getattr(pl_module, "epoch_seconds", None) or [])[-_RECENT_EPOCHS:]
        return VALIDATION_ALLOWANCE * max(trained) if trained else None

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        now = time.monotonic()
        if self._last_start is not None:
            self._durations.append(now - self._last_start)
        self._last_start = now
        estimate = self.next_epoch_estimate(pl_module)
        if estimate is None:
            return
        if estimate > seconds_until(self.deadline):
            for logger in trainer.loggers:  # the last finished epoch's rows reach the log
                logger.save()
            raise TimeLimitReached(self.deadline, trainer.current_epoch, estimate)


@dataclass(frozen=True)
class _CsvRows:
    header: list[str]
    rows: list[dict[str, str]]


def _csv_metrics_path(logger: Any) -> Path | None:
    """The ``metrics.csv`` a Lightning CSV logger writes, or None for other loggers."""
    # Lightning's pytorch CSVLogger subclasses fabric's, whose writer names the file
    from lightning.fabric.loggers.csv_logs import CSVLogger, _ExperimentWriter

    if not isinstance(logger, CSVLogger):
        return None
    return Path(logger.log_dir) / _ExperimentWriter.NAME_METRICS_FILE


def _row_epoch(row: Mapping[str, str]) -> int | None:
    try:
        return int(float(row.get("epoch") or ""))
    except ValueError:
        return None


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``, to name the keys that differ."""
    if not isinstance(value, Mapping):
        return {prefix: value}
    flat: dict[str, Any] = {}
    for key, item in value.items():
        flat.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
    return flat
