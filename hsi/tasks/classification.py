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
from hsi.nn.lora import count_parameters
from hsi.tasks.checkpointing import ExportableCheckpoint
from hsi.tasks.training import EpochTimer, make_optimizer, report_folder, standard_scheduler

log = logging.getLogger(__name__)


class ClassificationTask(EpochTimer, ExportableCheckpoint, L.LightningModule):
    """Patch-based pixel classification.

    Args:
        model: registry name (``hsi.list_models()``), e.g. ``hybridsn``.
        model_kwargs: extra constructor arguments of the model.
        in_bands, num_classes, patch_size: taken from the data module when ``None``
            (the usual case); a value given here must agree with the data.
        lr, weight_decay: optimizer settings.
        optimizer: ``adam`` (HybridSN's paper), ``adamw`` or ``sgd``.
        scheduler: ``none``, ``cosine`` (over max_epochs), ``plateau`` (on val loss) or
            ``cosine_restarts`` (SGDR: cycles of ``restart_epochs · restart_mult^i``
            epochs annealing to ``min_lr``, stepped per epoch; LoLA-SpecViT's schedule).
        restart_epochs, restart_mult, min_lr: the ``cosine_restarts`` cycle.
        label_smoothing: cross-entropy label smoothing.
        report_dir: where ``hsi test`` writes its report (default: the run's log dir).
        predict_map: also predict every pixel after testing, for the map picture.
        init_from: an hsi checkpoint (``.ckpt``) of the same registry model, e.g. trained
            on another scene, whose weights start this run (all but the classifier head,
            which is new: the label set may differ). Read with ``weights_only=True``.
        finetune: ``full`` trains every weight; ``lora`` (needs ``init_from``) freezes
            the loaded base and trains only the LoRA adapters and the head
            (:func:`hsi.nn.mark_only_lora_trainable`). BatchNorm running statistics, being
            buffers, still adapt to the new scene.
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
        scheduler: Literal["none", "cosine", "plateau", "cosine_restarts"] = "none",
        restart_epochs: int = 10,
        restart_mult: int = 2,
        min_lr: float = 0.0,
        label_smoothing: float = 0.0,
        report_dir: str | None = None,
        predict_map: bool = True,
        init_from: str | None = None,
        finetune: Literal["full", "lora"] = "full",
    ) -> None:
        super().__init__()
        if finetune not in ("full", "lora"):
            raise ConfigError(f"finetune must be 'full' or 'lora', got {finetune!r}")
        if finetune == "lora" and not init_from:
            raise ConfigError(
                "finetune='lora' trains adapters on a pretrained base: give init_from=<a "
                "checkpoint of the same model>"
            )
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
        self.epoch_cpu_seconds: list[float] = []  # process CPU time (EpochTimer)
        self._init_applied = False
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
        if stage == "fit" and not self._init_applied:
            # only when fitting: a checkpoint of this run loaded later for test/predict
            # already holds the weights and must not need the base checkpoint's file
            self._apply_init_from()
            self._init_applied = True
        elif self.hparams.get("finetune") == "lora":
            # a LoRA run's checkpoint reloaded: same frozen set, so reports count the same
            from hsi.nn.lora import mark_only_lora_trainable

            mark_only_lora_trainable(self.net, train_head=self._head_name())
        dm = getattr(self.trainer, "datamodule", None)
        if dm is not None and hasattr(dm, "describe"):
            if stage == "fit" or self.preprocessing is None:
                pre = getattr(dm, "preprocessor", None)
                self.preprocessing = pre.state_dict() if pre is not None else None
            self.data_description = dm.describe()

    # ---- starting from another run's weights --------------------------------------------
    def _head_name(self) -> str:
        head = getattr(self.net, "head_name", "head")
        try:
            module = self.net.get_submodule(head)
        except AttributeError:
            module = None
        if module is None or not any(True for _ in module.parameters()):
            raise ConfigError(
                f"model {self.hparams.model!r} names no classifier head (attribute head_name, "
                f"default 'head'), so init_from cannot leave it out for the new classes"
            )
        return head

    def _read_init_checkpoint(self, path: Path) -> dict[str, Any]:
        if not path.is_file():
            raise ConfigError(f"init_from checkpoint not found: {path}")
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # unpickling errors come in many types
            raise ConfigError(
                f"init_from {path} is not a readable hsi checkpoint ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''})"
            ) from None
        if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
            raise ConfigError(f"init_from {path} holds no state_dict; is it an hsi .ckpt?")
        theirs = ckpt.get("hyper_parameters") or {}
        hp = self.hparams
        if str(theirs.get("model", "")).lower() != str(hp.model).lower():
            raise ConfigError(
                f"init_from {path} is a {theirs.get('model')!r} checkpoint, but this run "
                f"trains {hp.model!r}; weights only carry over within one model"
            )
        if theirs.get("in_bands") != hp.in_bands:
            raise ConfigError(
                f"init_from {path} was trained on {theirs.get('in_bands')} input bands, this "
                f"data gives {hp.in_bands}: use the same number of PCA components "
                f"(data.pca_components) as the pretraining run"
            )
        return ckpt

    def _apply_init_from(self) -> None:
        """Load ``init_from`` (all but the head) and, for ``finetune='lora'``, freeze the base."""
        hp = self.hparams
        if not hp.get("init_from"):
            return
        path = Path(hp.init_from)
        ckpt = self._read_init_checkpoint(path)
        head = self._head_name()
        theirs = {
            key[len("net.") :]: value
            for key, value in ckpt["state_dict"].items()
            if key.startswith("net.")
        }
        own = self.net.state_dict()
        wanted = {k: v for k, v in own.items() if not k.startswith(head + ".")}
        problems = [
            f"{k}: missing"
            if k not in theirs
            else f"{k}: {tuple(theirs[k].shape)} vs {tuple(v.shape)}"
            for k, v in wanted.items()
            if k not in theirs or theirs[k].shape != v.shape
        ]
        if problems:
            theirs_hp = ckpt.get("hyper_parameters") or {}
            raise ConfigError(
                f"init_from {path} does not fit this {hp.model} ({len(problems)} tensors differ,"
                f" e.g. {'; '.join(problems[:3])}): build it with the pretraining run's "
                f"model_kwargs ({theirs_hp.get('model_kwargs')}) and patch_size "
                f"({theirs_hp.get('patch_size')})"
            )
        self.net.load_state_dict({k: theirs[k] for k in wanted}, strict=False)
        if hp.finetune == "lora":
            from hsi.nn.lora import mark_only_lora_trainable

            mark_only_lora_trainable(self.net, train_head=head)
            total, trainable = count_parameters(self.net)
            log.info(
                "LoRA fine-tuning from %s: %s of %s parameters trainable (%.2f%%, %.1f%% fewer)",
                path,
                f"{trainable:,}",
                f"{total:,}",
                100 * trainable / total,
                100 * (1 - trainable / total),
            )
        else:
            log.info("initialised %s from %s (head %r left new)", hp.model, path, head)

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

        out_dir = report_folder(self.report_dir, self.trainer, "classification")
        if out_dir is None:
            return
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
                "train_epoch_cpu_seconds": self.epoch_cpu_seconds or None,
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
        n_params, n_train = count_parameters(self.net) if self.net else (None, None)
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
        # frozen weights (LoRA fine-tuning) stay out of the optimizer and its state
        params = [p for p in self.net.parameters() if p.requires_grad]
        opt = make_optimizer(params, hp.optimizer, hp.lr, hp.weight_decay)
        config = standard_scheduler(opt, hp.scheduler, lambda: self.trainer.max_epochs)
        if config is not None:
            return config
        if hp.scheduler == "cosine_restarts":
            if hp.restart_epochs < 1 or hp.restart_mult < 1:
                raise ConfigError(
                    f"cosine_restarts needs restart_epochs >= 1 and restart_mult >= 1, got "
                    f"{hp.restart_epochs} and {hp.restart_mult}"
                )
            sched = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
                opt, T_0=hp.restart_epochs, T_mult=hp.restart_mult, eta_min=hp.min_lr
            )
            return {"optimizer": opt, "lr_scheduler": sched}
        raise ConfigError(
            f"unknown scheduler {hp.scheduler!r}; use none, cosine, plateau or cosine_restarts"
        )

    # ---- checkpoint round trip ---------------------------------------------------------
    def _hsi_meta(self) -> dict[str, Any]:
        return {
            "task": "classification",
            "preprocessing": self.preprocessing,
            "data": self.data_description,
            "format_version": 1,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)  # the epoch timings (EpochTimer)
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
