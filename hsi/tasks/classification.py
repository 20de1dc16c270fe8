"""Pixel classification as one LightningModule that trains any registry model.

Like torchgeo's tasks, the task takes a model *name* and its arguments and stores them
as hyper-parameters, plus the fitted preprocessing and class names, so a checkpoint
alone rebuilds the model and its input pipeline for ``hsi test`` and ``hsi predict``.
"""

from __future__ import annotations

import inspect
import logging
import time
from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from torch import nn
from torchmetrics.classification import MulticlassConfusionMatrix

from hsi.data.preprocessing import Preprocessor
from hsi.errors import ConfigError
from hsi.metrics import classification_metrics
from hsi.models.registry import create_model, get_model_class

log = logging.getLogger(__name__)


class ClassificationTask(L.LightningModule):
    """Patch-based pixel classification.

    Args:
        model: registry name (``hsi.list_models()``), e.g. ``hybridsn``.
        model_kwargs: extra constructor arguments of the model.
        in_bands, num_classes, patch_size: taken from the data module when ``None``
            (the usual case); a value given here must agree with the data.
        lr, weight_decay: optimizer settings.
        optimizer: ``adam`` (HybridSN's paper), ``adamw`` or ``sgd``.
        scheduler: ``none``, ``cosine`` (over max_epochs) or ``plateau`` (on val loss).
        label_smoothing: cross-entropy label smoothing.
        report_dir: where ``hsi test`` writes its report (default: the run's log dir).
        predict_map: also predict every pixel after testing, for the map picture.
    """

    def __init__(
        self,
        model: str = "hybridsn",
        model_kwargs: dict[str, Any] | None = None,
        in_bands: int | None = None,
        num_classes: int | None = None,
        patch_size: int | None = None,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        optimizer: Literal["adam", "adamw", "sgd"] = "adam",
        scheduler: Literal["none", "cosine", "plateau"] = "none",
        label_smoothing: float = 0.0,
        report_dir: str | None = None,
        predict_map: bool = True,
    ) -> None:
        super().__init__()
        # report_dir/predict_map are run options, not part of the model: kept out of the
        # hparams so a checkpoint's values never override the command line's
        self.save_hyperparameters(ignore=["report_dir", "predict_map"])
        self.report_dir = report_dir
        self.predict_map_after_test = predict_map
        self.net: nn.Module | None = None
        self.preprocessing: dict[str, Any] | None = None
        self.data_description: dict[str, Any] | None = None
        self._epoch_start = 0.0
        self.checkpoint_epoch: int | None = None  # epoch index of the loaded checkpoint
        self.epoch_seconds: list[float] = []
        if None not in (in_bands, num_classes, patch_size):
            self._build()

    # ---- model construction -----------------------------------------------------------
    def _build(self) -> None:
        hp = self.hparams
        kwargs = dict(hp.model_kwargs or {})
        kwargs.update(in_bands=hp.in_bands, num_classes=hp.num_classes, patch_size=hp.patch_size)
        self.net = create_model(hp.model, **kwargs)
        n = hp.num_classes
        self.val_cm = MulticlassConfusionMatrix(n)
        self.test_cm = MulticlassConfusionMatrix(n)

    def _adopt_datamodule(self) -> None:
        """Take in_bands/num_classes/patch_size from the data module, checking conflicts."""
        dm = getattr(self.trainer, "datamodule", None) if self._trainer else None
        if dm is None:
            if self.net is None:
                raise ConfigError(
                    "the task needs in_bands, num_classes and patch_size, or a data module"
                )
            return
        for key, value in (
            ("in_bands", dm.in_bands),
            ("num_classes", dm.num_classes),
            ("patch_size", dm.patch_size),
        ):
            given = self.hparams.get(key)
            if given is not None and given != value:
                raise ConfigError(
                    f"model.{key}={given} but the data gives {value}: the checkpoint or "
                    f"config was made for other data; remove model.{key} or fix the data"
                )
            self.hparams[key] = value
        self._adopt_class_names(dm)
        if self.net is None:
            self._build()

    def _adopt_class_names(self, dm: Any) -> None:
        """Give the data's class names to a model that takes them (VP-Hype's text prompts).

        They go into ``model_kwargs`` so the checkpoint alone rebuilds the same model.
        """
        names = getattr(dm, "class_names", None)
        kwargs = dict(self.hparams.get("model_kwargs") or {})
        if names is None or "class_names" in kwargs:
            return
        ctor = get_model_class(self.hparams.model)
        if "class_names" in inspect.signature(ctor).parameters:
            kwargs["class_names"] = list(names)
            self.hparams["model_kwargs"] = kwargs

    def setup(self, stage: str) -> None:
        # Lightning has already run the data module's setup (split, preprocessing) here
        self._adopt_datamodule()
        dm = getattr(self.trainer, "datamodule", None)
        if dm is not None and hasattr(dm, "describe"):
            if stage == "fit" or self.preprocessing is None:
                pre = getattr(dm, "preprocessor", None)
                self.preprocessing = pre.state_dict() if pre is not None else None
            self.data_description = dm.describe()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    # ---- steps -------------------------------------------------------------------------
    def _loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(
            logits, target, label_smoothing=self.hparams.label_smoothing
        )

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        logits = self(batch["image"])
        loss = self._loss(logits, batch["label"])
        acc = (logits.argmax(1) == batch["label"]).float().mean()
        bs = len(batch["label"])
        self.log("train/loss", loss, prog_bar=True, on_epoch=True, on_step=False, batch_size=bs)
        self.log("train/acc", acc, on_epoch=True, on_step=False, batch_size=bs)
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        logits = self(batch["image"])
        loss = self._loss(logits, batch["label"])
        self.val_cm.update(logits.argmax(1), batch["label"])
        self.log("val/loss", loss, prog_bar=True, batch_size=len(batch["label"]))

    def on_validation_epoch_end(self) -> None:
        cm = self.val_cm.compute().cpu().numpy()
        self.val_cm.reset()
        if cm.sum() == 0:
            return
        m = classification_metrics(cm)
        self.log_dict({"val/OA": m["OA"], "val/AA": m["AA"], "val/kappa": m["kappa"]})
        self.log("val_OA", m["OA"], prog_bar=True)

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        logits = self(batch["image"])
        self.test_cm.update(logits.argmax(1), batch["label"])

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict:
        probs = torch.softmax(self(batch["image"]), dim=1)
        conf, pred = probs.max(1)
        return {"coords": batch["coords"], "pred": pred, "confidence": conf, "probs": probs}

    # ---- timing ------------------------------------------------------------------------
    def on_train_epoch_start(self) -> None:
        self._epoch_start = time.perf_counter()

    def on_train_epoch_end(self) -> None:
        seconds = time.perf_counter() - self._epoch_start
        self.epoch_seconds.append(seconds)
        self.log("train/epoch_seconds", seconds)

    # ---- test report -------------------------------------------------------------------
    def on_test_epoch_start(self) -> None:
        self._test_start = time.perf_counter()

    def on_test_epoch_end(self) -> None:
        cm = self.test_cm.compute().cpu().numpy()
        self.test_cm.reset()
        metrics = classification_metrics(cm)
        self.log_dict(
            {"test/OA": metrics["OA"], "test/AA": metrics["AA"], "test/kappa": metrics["kappa"]}
        )
        if not self.trainer.is_global_zero:
            return
        from hsi.reports import write_classification_report

        out_dir = Path(self.report_dir or self.trainer.log_dir or ".")
        prediction = None
        dm = getattr(self.trainer, "datamodule", None)
        if self.predict_map_after_test and dm is not None and hasattr(dm, "predict_dataloader"):
            prediction = self.predict_map(dm)
        paths = write_classification_report(
            out_dir,
            confusion=cm,
            metrics=metrics,
            data=self.data_description or {},
            task=self.describe(),
            timings={
                "test_seconds": time.perf_counter() - self._test_start,
                "train_epoch_seconds": self.epoch_seconds or None,
            },
            prediction=prediction,
            labels=getattr(getattr(dm, "scene", None), "labels", None),
            split=getattr(dm, "split", None),
        )
        for p in paths:
            log.info("wrote %s", p)
        self.report_paths = paths

    @torch.no_grad()
    def predict_map(self, dm: Any) -> np.ndarray:
        """Class id (1..N, 0 = no-data) of every pixel of the data module's scene.

        Uses the model's fully-convolutional path when it has one (HybridSN: ~50× faster
        than one patch per pixel), else batched patch extraction.
        """
        from hsi.inference import classify_cube

        probs = classify_cube(
            self.net, dm.padded_cube, dm.patch_size, batch_size=dm.batch_size, device=self.device
        )
        out = probs.argmax(0).numpy().astype(np.int64) + 1
        out[~dm.scene.cube.valid_mask] = 0
        return out

    def describe(self) -> dict[str, Any]:
        hp = dict(self.hparams)
        n_params = sum(p.numel() for p in self.net.parameters()) if self.net else None
        n_train = (
            sum(p.numel() for p in self.net.parameters() if p.requires_grad) if self.net else None
        )
        return {
            "model": hp["model"],
            "hparams": hp,
            "parameters": n_params,
            "trainable_parameters": n_train,
            "epochs_run": len(self.epoch_seconds) or None,
            "checkpoint_epoch": self.checkpoint_epoch,
        }

    # ---- optimisation ------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        hp = self.hparams
        params = self.net.parameters()
        if hp.optimizer == "adam":
            opt = torch.optim.Adam(params, lr=hp.lr, weight_decay=hp.weight_decay)
        elif hp.optimizer == "adamw":
            opt = torch.optim.AdamW(params, lr=hp.lr, weight_decay=hp.weight_decay)
        elif hp.optimizer == "sgd":
            opt = torch.optim.SGD(params, lr=hp.lr, momentum=0.9, weight_decay=hp.weight_decay)
        else:
            raise ConfigError(f"unknown optimizer {hp.optimizer!r}; use adam, adamw or sgd")
        if hp.scheduler == "none":
            return opt
        if hp.scheduler == "cosine":
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(
                opt, T_max=max(int(self.trainer.max_epochs or 1), 1)
            )
            return {"optimizer": opt, "lr_scheduler": sched}
        if hp.scheduler == "plateau":
            sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=5)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "monitor": "val/loss"}}
        raise ConfigError(f"unknown scheduler {hp.scheduler!r}; use none, cosine or plateau")

    # ---- checkpoint round trip ---------------------------------------------------------
    def _hsi_meta(self) -> dict[str, Any]:
        return {
            "preprocessing": self.preprocessing,
            "data": self.data_description,
            "format_version": 1,
        }

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["hsi"] = self._hsi_meta()

    def export_checkpoint(self, path: str | Path) -> Path:
        """Write a checkpoint that ``load_from_checkpoint`` and ``hsi predict`` accept.

        For weights made without a Trainer run (tests, conversions, release assets): the
        same layout Lightning writes, minus optimizer and loop state.
        """
        checkpoint = {
            "state_dict": self.state_dict(),
            "hyper_parameters": dict(self.hparams),
            "pytorch-lightning_version": L.__version__,
            "hsi": self._hsi_meta(),
        }
        torch.save(checkpoint, path)
        return Path(path)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.checkpoint_epoch = checkpoint.get("epoch")
        meta = checkpoint.get("hsi") or {}
        self.preprocessing = meta.get("preprocessing")
        self.data_description = meta.get("data")
        if self.net is None:
            # hparams in the checkpoint carry in_bands/num_classes/patch_size
            self._build()

    def get_preprocessor(self) -> Preprocessor | None:
        """The preprocessing the model was trained with (from the checkpoint)."""
        return (
            None if self.preprocessing is None else Preprocessor.from_state_dict(self.preprocessing)
        )
