"""Denoising and super-resolution as one LightningModule that trains any registry model.

As with :class:`~hsi.tasks.ClassificationTask`, the task stores the model's registry name and
arguments as hyper-parameters and the data facts in the checkpoint (``checkpoint["hsi"]``:
task kind, the [0, 1] scaling fitted on the training data, the degradation spec and the
data description), so a checkpoint alone rebuilds the model and its input pipeline for
``hsi test`` and ``hsi predict --input``.

Losses follow the papers: ``l2`` (mean squared error) is QRNN3D's and HSDT's default
(``--loss l2`` in their ``train/hsi_setup.py``); ``l1`` is what single-HSI super-resolution
networks such as ESSAformer are usually trained with. Validation and test log MPSNR, MSSIM,
SAM (degrees) and ERGAS (:mod:`hsi.image_quality`) averaged over the held-out images, and
``hsi test`` writes them, with the same metrics of the degraded input (denoising) or of
bicubic upsampling (super-resolution) as the no-model reference, to ``restoration_report.json``.
When the data module has ``test_degradations`` (QRNN3D/HSDT report one complex-noise model on
each ICVL noise case 1-5), each case is a test loader and the report has one entry per case,
each with its own reference row.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hsi.data.restoration import Scaling
from hsi.errors import ConfigError
from hsi.image_quality import quality_report
from hsi.models.registry import create_model, get_model_class
from hsi.nn.lora import count_parameters
from hsi.reports import provenance
from hsi.tasks.checkpointing import ExportableCheckpoint
from hsi.tasks.training import (
    EpochTimer,
    epoch_set_scheduler,
    make_optimizer,
    report_folder,
    standard_scheduler,
)

log = logging.getLogger(__name__)

__all__ = ["RestorationTask", "TASK_KINDS"]

TASK_KINDS = ("denoising", "super_resolution")
_METRICS = ("MPSNR", "MSSIM", "SAM", "ERGAS")


def _upsample_bicubic(x: torch.Tensor, scale: int) -> torch.Tensor:
    return F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)


class _MeanOverImages:
    """Running per-image means of the metrics (the papers average over test images)."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = dict.fromkeys(_METRICS, 0.0)
        self.count = 0

    def update(self, values: dict[str, torch.Tensor]) -> None:
        for k, v in values.items():
            self.sums[k] += float(v.sum())
        self.count += int(next(iter(values.values())).numel())

    def compute(self) -> dict[str, float]:
        if self.count == 0:
            return {}
        return {k: s / self.count for k, s in self.sums.items()}


class RestorationTask(EpochTimer, ExportableCheckpoint, L.LightningModule):
    """Hyperspectral denoising or single-image super-resolution.

    Args:
        model: registry name (``hsi.list_models()``), e.g. ``hsdt`` or ``essaformer``.
        model_kwargs: extra constructor arguments of the model.
        in_bands: bands of the cube; taken from the data module when ``None``.
        scale: super-resolution factor (1 = denoising); taken from the data's degradation
            when ``None``. A value given here must agree with the data.
        loss: ``l2`` (MSE; QRNN3D/HSDT), ``l1`` (SR networks) or ``charbonnier``.
        lr, weight_decay, optimizer, scheduler: optimisation (Adam 1e-3 is HSDT's).
        lr_schedule: with ``scheduler: epoch_set``, ``{epoch: lr}``: the rate is set to
            ``lr`` from that epoch on (HSDT's ICVL schedules, which go down and back up;
            see :func:`hsi.tasks.training.epoch_set_scheduler`).
        clamp_metrics: clip restored images to [0, 1] before computing metrics.
        report_dir: where ``hsi test`` writes its report (default: the run's log dir).
    """

    def __init__(
        self,
        model: str = "hsdt",
        model_kwargs: dict[str, Any] | None = None,
        in_bands: int | None = None,
        scale: int | None = None,
        loss: Literal["l2", "l1", "charbonnier"] = "l2",
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        optimizer: Literal["adam", "adamw"] = "adam",
        scheduler: Literal["none", "cosine", "plateau", "epoch_set"] = "none",
        lr_schedule: dict[int, float] | None = None,
        clamp_metrics: bool = True,
        report_dir: str | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["report_dir"])
        if loss not in ("l2", "l1", "charbonnier"):
            raise ConfigError(f"unknown loss {loss!r}; use l2, l1 or charbonnier")
        if (scheduler == "epoch_set") != bool(lr_schedule):
            raise ConfigError(
                "lr_schedule {epoch: lr} goes with scheduler: epoch_set (and it needs one); "
                f"got scheduler {scheduler!r} and lr_schedule {lr_schedule!r}"
            )
        self.report_dir = report_dir
        self.net: nn.Module | None = None
        self.scaling: dict[str, Any] | None = None
        self.degradation: dict[str, Any] | None = None
        self.data_description: dict[str, Any] | None = None
        self.checkpoint_epoch: int | None = None
        self.epoch_seconds: list[float] = []
        self.epoch_cpu_seconds: list[float] = []  # process CPU time (EpochTimer)
        self._epoch_start = 0.0
        self._val = _MeanOverImages()
        # per test loader (one per test degradation): restored and no-model reference
        self._test: dict[int, _MeanOverImages] = {}
        self._test_reference: dict[int, _MeanOverImages] = {}
        # the last test's metrics: {metric: value}, or with several test degradations
        # {"<case>/<metric>": value} (the logged keys without "test/")
        self.test_metrics: dict[str, float] | None = None
        self.report_paths: list[Path] = []
        if in_bands is not None and scale is not None:
            self._build()

    # ---- model construction -----------------------------------------------------------
    @property
    def kind(self) -> str:
        """``denoising`` or ``super_resolution``."""
        return "super_resolution" if int(self.hparams.get("scale") or 1) > 1 else "denoising"

    def _build(self) -> None:
        hp = self.hparams
        ctor = get_model_class(hp.model)
        declared = getattr(ctor, "task", None)
        if declared is not None and declared != self.kind:
            raise ConfigError(
                f"model {hp.model!r} is a {declared} model but the data's degradation makes "
                f"this a {self.kind} task (scale {hp.scale}); pick a matching model or "
                "degradation"
            )
        kwargs = dict(hp.model_kwargs or {})
        kwargs["in_bands"] = hp.in_bands
        if self.kind == "super_resolution":
            kwargs["scale"] = hp.scale
        self.net = create_model(hp.model, **kwargs)

    @property
    def min_tile(self) -> int:
        """Smallest input side the model accepts (its ``min_tile``, else 1)."""
        return int(getattr(self.net, "min_tile", 1) or 1)

    def _adopt_datamodule(self) -> None:
        dm = getattr(self.trainer, "datamodule", None) if self._trainer else None
        if dm is None:
            if self.net is None:
                raise ConfigError("the task needs in_bands and scale, or a data module")
            return
        for key, value in (("in_bands", dm.in_bands), ("scale", dm.scale)):
            given = self.hparams.get(key)
            if given is not None and int(given) != int(value):
                what = "super-resolution factor" if key == "scale" else "band count"
                raise ConfigError(
                    f"model.{key}={given} but the data give {value}: the checkpoint or config "
                    f"was made for another {what}; remove model.{key} or fix the data"
                )
            self.hparams[key] = int(value)
        if self.net is None:
            self._build()
        self._check_sizes(dm)

    def _check_sizes(self, dm: Any) -> None:
        """Training crops must be a multiple of the model's min_tile (they are fed as they
        are); evaluation images at least min_tile (they are padded to a multiple)."""
        s = int(self.hparams.scale)
        smallest = {
            "training crops (crop_size)": dm.crop_size // s,
            "validation/test images": dm.smallest_eval_side() // s,
        }
        crop = dm.crop_size // s
        if crop % self.min_tile:
            raise ConfigError(
                f"crop_size {dm.crop_size} gives {crop}-pixel model inputs, not a multiple of "
                f"{self.min_tile} as {self.hparams.model} needs (its min_tile); pick a crop_size "
                f"that is a multiple of {self.min_tile * s}"
            )
        for what, side in smallest.items():
            if side < self.min_tile:
                raise ConfigError(
                    f"{what} give {side}-pixel model inputs but {self.hparams.model} needs at "
                    f"least {self.min_tile} (its min_tile); raise crop_size / eval_tile or the "
                    "held-out fractions, or use a smaller scale"
                )

    def setup(self, stage: str) -> None:
        self._adopt_datamodule()
        dm = getattr(self.trainer, "datamodule", None)
        if dm is not None and hasattr(dm, "describe"):
            if stage == "fit" or self.scaling is None:
                self.scaling = dm.scaling.state_dict()
                self.degradation = dm.degradation_spec
            self.data_description = dm.describe()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    @torch.no_grad()
    def restore(self, x: torch.Tensor) -> torch.Tensor:
        """The model on images of any size: inputs whose sides are not a multiple of the
        model's ``min_tile`` (HSDT halves them twice) are padded by reflection, the output
        cropped back. Used for evaluation images and scene tiles."""
        m = self.min_tile
        h, w = x.shape[-2:]
        ph, pw = -h % m, -w % m
        if not (ph or pw):
            return self(x)
        mode = "reflect" if ph < h and pw < w else "replicate"
        out = self(F.pad(x, (0, pw, 0, ph), mode=mode))
        s = int(self.hparams.scale or 1)
        return out[..., : h * s, : w * s]

    # ---- steps -------------------------------------------------------------------------
    def _loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.hparams.loss == "l2":
            return F.mse_loss(pred, target)
        if self.hparams.loss == "l1":
            return F.l1_loss(pred, target)
        return torch.sqrt((pred - target) ** 2 + 1e-6).mean()

    def _run(self, batch: dict[str, torch.Tensor], train: bool = False) -> torch.Tensor:
        pred = self(batch["input"]) if train else self.restore(batch["input"])
        if pred.shape != batch["target"].shape:
            raise ConfigError(
                f"model {self.hparams.model} returned {tuple(pred.shape)} for input "
                f"{tuple(batch['input'].shape)}, expected {tuple(batch['target'].shape)}; the "
                "model does not follow the restoration contract (same bands, x scale size)"
            )
        return pred

    def _metrics(self, pred: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        return quality_report(
            pred.float(),
            target.float(),
            ratio=float(self.hparams.scale or 1),
            clamp=bool(self.hparams.clamp_metrics),
        )

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self._loss(self._run(batch, train=True), batch["target"])
        self.log("train/loss", loss, prog_bar=True, on_epoch=True, on_step=False,
                 batch_size=len(batch["input"]))  # fmt: skip
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        pred = self._run(batch)
        self.log("val/loss", self._loss(pred, batch["target"]), batch_size=len(pred))
        self._val.update(self._metrics(pred, batch["target"]))

    def on_validation_epoch_end(self) -> None:
        values = self._val.compute()
        self._val = _MeanOverImages()
        if values:
            self.log_dict({f"val/{k}": v for k, v in values.items()})
            self.log("val_MPSNR", values["MPSNR"], prog_bar=True)

    def test_step(
        self, batch: dict[str, torch.Tensor], batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        pred = self._run(batch)
        restored = self._test.setdefault(dataloader_idx, _MeanOverImages())
        restored.update(self._metrics(pred, batch["target"]))
        scale = int(self.hparams.scale or 1)
        reference = batch["input"] if scale == 1 else _upsample_bicubic(batch["input"], scale)
        no_model = self._test_reference.setdefault(dataloader_idx, _MeanOverImages())
        no_model.update(self._metrics(reference, batch["target"]))

    # ---- test report -------------------------------------------------------------------
    def on_test_epoch_start(self) -> None:
        self._test_start = time.perf_counter()
        self._test, self._test_reference = {}, {}

    def _test_cases(self) -> list[tuple[str, dict[str, Any] | None]] | None:
        """(label, degradation spec) of each test loader when the data module tests under
        several degradations (or the user passed several loaders), else ``None``."""
        dm = getattr(self.trainer, "datamodule", None)
        names = list(getattr(dm, "test_degradation_names", None) or [])
        if names:
            return list(zip(names, dm.test_degradation_specs, strict=True))
        n = max(self._test, default=0) + 1
        return [(f"dataloader_{k}", None) for k in range(n)] if n > 1 else None

    def _reference_block(self, k: int) -> dict[str, Any]:
        what = "degraded input" if self.kind == "denoising" else "bicubic upsampling"
        ref = self._test_reference.get(k)
        return {"what": what, "metrics": ref.compute() if ref else {}}

    def on_test_epoch_end(self) -> None:
        cases = self._test_cases()
        if cases is None:
            values = self._test[0].compute() if 0 in self._test else {}
            self.log_dict({f"test/{k}": v for k, v in values.items()})
            self.test_metrics = values
            body: dict[str, Any] = {
                "metrics": values,
                "reference": self._reference_block(0),
                "test_images": self._test[0].count if 0 in self._test else 0,
            }
        else:
            entries, flat = [], {}
            for k, (name, spec) in enumerate(cases):
                values = self._test[k].compute() if k in self._test else {}
                flat.update({f"{name}/{m}": v for m, v in values.items()})
                entries.append(
                    {
                        "name": name,
                        "degradation": spec,
                        "metrics": values,
                        "reference": self._reference_block(k),
                        "test_images": self._test[k].count if k in self._test else 0,
                    }
                )
            self.log_dict({f"test/{k}": v for k, v in flat.items()})
            self.test_metrics = flat
            # no top-level "metrics": one model's numbers under several noises are reported
            # per case, as the papers do, never averaged into one
            body = {"cases": entries}
            for e in entries:
                log.info(
                    "test %s: %s (reference %s)",
                    e["name"],
                    _short(e["metrics"]),
                    _short(e["reference"]["metrics"]),
                )
        if not self.trainer.is_global_zero:
            return
        from hsi.data.writers import atomic_output

        out_dir = report_folder(self.report_dir, self.trainer, "restoration")
        if out_dir is None:
            return
        report = {
            **provenance(),
            "task": self.kind,
            **body,
            "averaging": "per-band PSNR/SSIM averaged over bands, then over test images; "
            "SAM in degrees averaged over pixels, then images; ERGAS with ratio = scale",
            "model": self.describe(),
            "data": self.data_description,
            "timings": {
                "test_seconds": time.perf_counter() - self._test_start,
                "train_epoch_seconds": self.epoch_seconds or None,
                "train_epoch_cpu_seconds": self.epoch_cpu_seconds or None,
            },
        }
        path = out_dir / "restoration_report.json"
        with atomic_output(path, overwrite=True) as tmp:
            tmp.write_text(json.dumps(_finite(report), indent=2))
        log.info("wrote %s", path)
        self.report_paths = [path]

    def describe(self) -> dict[str, Any]:
        n_params, n_train = count_parameters(self.net) if self.net else (None, None)
        return {
            "model": self.hparams.model,
            "hparams": dict(self.hparams),
            "parameters": n_params,
            "trainable_parameters": n_train,
            "epochs_run": len(self.epoch_seconds) or None,
            "checkpoint_epoch": self.checkpoint_epoch,
        }

    # ---- optimisation ------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        hp = self.hparams
        if getattr(get_model_class(hp.model), "training_free", False):
            # unsupervised restorers (HIR-Diff, DDS2M) fit nothing to training data; without
            # this, `hsi fit` would fail later with an empty-optimizer or no-grad traceback
            raise ConfigError(
                f"{hp.model} is training-free (unsupervised): evaluate it with "
                f"`hsi test --config ...` or apply it with `hsi predict --model {hp.model} ...`"
            )
        opt = make_optimizer(
            self.net.parameters(), hp.optimizer, hp.lr, hp.weight_decay, ("adam", "adamw")
        )
        if hp.scheduler == "epoch_set":
            sched = epoch_set_scheduler(opt, hp.lr, hp.lr_schedule)
            return {"optimizer": opt, "lr_scheduler": sched}
        config = standard_scheduler(opt, hp.scheduler, lambda: self.trainer.max_epochs)
        if config is not None:
            return config
        raise ConfigError(
            f"unknown scheduler {hp.scheduler!r}; use none, cosine, plateau or epoch_set"
        )

    # ---- checkpoint round trip ---------------------------------------------------------
    def _hsi_meta(self) -> dict[str, Any]:
        return {
            "task": "restoration",
            "restoration": self.kind,
            "scaling": self.scaling,
            "degradation": self.degradation,
            "data": self.data_description,
            "format_version": 1,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)  # the epoch timings (EpochTimer)
        self.checkpoint_epoch = checkpoint.get("epoch")
        meta = checkpoint.get("hsi") or {}
        self.scaling = meta.get("scaling")
        self.degradation = meta.get("degradation")
        self.data_description = meta.get("data")
        if self.net is None:
            self._build()

    def get_scaling(self) -> Scaling | None:
        """The [0, 1] scaling the model was trained with (from the checkpoint)."""
        return None if self.scaling is None else Scaling.from_state_dict(self.scaling)


def _short(values: dict[str, float]) -> str:
    """``MPSNR 31.20, MSSIM 0.912, ...`` for a log line."""
    return ", ".join(f"{k} {v:.4g}" for k, v in values.items())


def _finite(obj: Any) -> Any:
    """JSON has no inf/NaN: a perfect band's infinite PSNR is written as null."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, np.generic):
        return _finite(obj.item())
    return obj
