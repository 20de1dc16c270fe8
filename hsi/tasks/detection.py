"""Point-object detection as one LightningModule that trains a DETR-style registry model.

The task builds the model by name (``specdetr``), trains it with SpecDETR's one-to-many
Hungarian loss (:class:`hsi.detection.matching.SetCriterion`) and scores it with COCO
box mAP at the thresholds the SpecDETR paper reports (mAP25, mAP50, mAP75, mAP50:95,
torchmetrics on pycocotools) and with the point-distance AP of
:mod:`hsi.detection.metrics`, which is the meaningful number for sub-pixel targets.

A checkpoint holds the model name and kwargs, ``in_bands``/``num_classes``/class names
(hyper-parameters) and the input normalisation (``checkpoint["hsi"]``), so it alone
rebuilds the model and its input pipeline.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import lightning as L
import numpy as np
import torch
from torchmetrics.detection import MeanAveragePrecision
from torchvision.ops import nms

from hsi.detection.matching import MatchWeights, SetCriterion, to_pixels
from hsi.detection.metrics import DEFAULT_RADIUS, point_average_precision, point_recall_by_size
from hsi.errors import ConfigError
from hsi.models.registry import create_model
from hsi.nn.lora import count_parameters
from hsi.reports import provenance
from hsi.tasks.training import EpochTimer, make_optimizer, report_folder

log = logging.getLogger(__name__)
COCO_MAX_DETECTIONS = 100


@torch.no_grad()
def decode_detections(
    outputs: dict[str, Any],
    image_size: tuple[int, int],
    max_detections: int = 300,
    nms_iou: float | None = 0.01,
) -> list[dict[str, torch.Tensor]]:
    """Per image: the top ``max_detections`` (query, class) pairs by sigmoid score.

    Boxes become pixel (x0, y0, x1, y1), points their centres. SpecDETR's reference
    post-processing then runs class-agnostic NMS at IoU 0.01: its one-to-many training
    teaches several queries to fire on each object, and NMS keeps one of them.
    """
    logits, boxes = outputs["logits"], outputs["boxes"]
    b, q, k = logits.shape
    scores_all = logits.sigmoid().flatten(1)
    top = min(max_detections, q * k)
    result = []
    for i in range(b):
        scores, idx = scores_all[i].topk(top)
        labels = idx % k
        xyxy = to_pixels(boxes[i, idx // k], image_size)
        if nms_iou is not None:
            keep = nms(xyxy, scores, nms_iou)
            scores, labels, xyxy = scores[keep], labels[keep], xyxy[keep]
        points = torch.stack(((xyxy[:, 0] + xyxy[:, 2]) / 2, (xyxy[:, 1] + xyxy[:, 3]) / 2), -1)
        result.append({"boxes": xyxy, "scores": scores, "labels": labels, "points": points})
    return result


class DetectionTask(EpochTimer, L.LightningModule):
    """Train and evaluate a point-object detector (SpecDETR) on a detection folder.

    Args:
        model: registry name of a detector returning SpecDETR's output dict.
        model_kwargs: extra constructor arguments (embed_dim, num_queries, …).
        in_bands, num_classes, class_names: taken from the data module when ``None``;
            a value given here must agree with the data.
        lr, weight_decay: AdamW (SpecDETR: 1e-4, 1e-4).
        embed_lr_mult: learning-rate factor of the pixel-embedding layer (the reference
            config's ``backbone`` lr_mult 0.1).
        lr_milestones, lr_gamma: MultiStepLR epochs and factor (SpecDETR: [90], 0.1 over
            100 epochs); empty for a constant rate.
        match_num, base_match_num, dynamic_match, match_iou_threshold: the one-to-many
            assignment (SpecDETR: 10, 1, True, 0.05).
        point_radius: hit radius of the point AP in pixels (see hsi.detection.metrics).
        max_detections, nms_iou: post-processing (SpecDETR: 300, class-agnostic NMS 0.01).
        recall_score_threshold: score above which detections count for recall-by-size.
        report_dir: where ``test`` writes ``detection_report.json`` (default: log dir).
    """

    def __init__(
        self,
        model: str = "specdetr",
        model_kwargs: dict[str, Any] | None = None,
        in_bands: int | None = None,
        num_classes: int | None = None,
        class_names: list[str] | None = None,
        lr: float = 1e-4,
        weight_decay: float = 1e-4,
        embed_lr_mult: float = 0.1,
        lr_milestones: list[int] | None = None,
        lr_gamma: float = 0.1,
        match_num: int = 10,
        base_match_num: int = 1,
        dynamic_match: bool = True,
        match_iou_threshold: float = 0.05,
        point_radius: float = DEFAULT_RADIUS,
        max_detections: int = 300,
        nms_iou: float | None = 0.01,
        recall_score_threshold: float = 0.3,
        report_dir: str | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["report_dir"])
        self.report_dir = report_dir
        self.net: torch.nn.Module | None = None
        self.criterion: SetCriterion | None = None
        self.normalization: dict[str, list[float]] | None = None
        self.data_description: dict[str, Any] | None = None
        self.image_size: tuple[int, int] | None = None
        self.epoch_seconds: list[float] = []  # logged as train/epoch_seconds (EpochTimer)
        self.epoch_cpu_seconds: list[float] = []  # process CPU time (EpochTimer)
        self._reset_eval()
        if in_bands is not None and num_classes is not None:
            self._build()

    # ---- construction -----------------------------------------------------------------
    def _build(self) -> None:
        hp = self.hparams
        kwargs = dict(hp.model_kwargs or {})
        kwargs.update(in_bands=hp.in_bands, num_classes=hp.num_classes)
        self.net = create_model(hp.model, **kwargs)
        self.criterion = SetCriterion(
            hp.num_classes,
            match_num=hp.match_num,
            base_match_num=hp.base_match_num,
            dynamic=hp.dynamic_match,
            iou_threshold=hp.match_iou_threshold,
            weights=MatchWeights(),
        )

    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None) if self._trainer else None
        if dm is None:
            if self.net is None:
                raise ConfigError("the task needs in_bands and num_classes, or a data module")
            return
        for key, value in (
            ("in_bands", dm.in_bands),
            ("num_classes", dm.num_classes),
            ("class_names", dm.class_names),
        ):
            given = self.hparams.get(key)
            if given is not None and given != value:
                raise ConfigError(
                    f"model.{key}={given} but the data gives {value}: the checkpoint or config "
                    f"was made for other data; remove model.{key} or use matching data"
                )
            self.hparams[key] = value
        self.image_size = tuple(dm.image_size)
        if stage == "fit" or self.normalization is None:
            self.normalization = dm.normalization
        elif self.normalization != dm.normalization:
            log.warning("the data module's normalisation differs from the checkpoint's")
        self.data_description = dm.describe()
        if self.net is None:
            self._build()

    def forward(self, x: torch.Tensor) -> dict[str, Any]:
        return self.net(x)

    # ---- steps ------------------------------------------------------------------------
    def _size(self, images: torch.Tensor) -> tuple[int, int]:
        return int(images.shape[-2]), int(images.shape[-1])

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        images = batch["image"]
        out = self(images)
        losses = self.criterion(out, batch["targets"], self._size(images))
        bs = len(images)
        self.log("train/loss", losses["loss"], prog_bar=True, on_epoch=True, batch_size=bs)
        for key in ("loss_class", "loss_l1", "loss_giou"):
            self.log(f"train/{key}", losses[key], on_epoch=True, on_step=False, batch_size=bs)
        return losses["loss"]

    def _reset_eval(self) -> None:
        self._preds: list[dict[str, torch.Tensor]] = []
        self._targets: list[dict[str, torch.Tensor]] = []

    def _eval_step(self, batch: dict[str, Any], stage: str) -> None:
        images = batch["image"]
        size = self._size(images)
        out = self(images)
        losses = self.criterion(out, batch["targets"], size)
        self.log(f"{stage}/loss", losses["loss"], prog_bar=True, batch_size=len(images))
        dets = decode_detections(out, size, self.hparams.max_detections, self.hparams.nms_iou)
        for det, target in zip(dets, batch["targets"], strict=True):
            self._preds.append({k: v.detach().cpu() for k, v in det.items()})
            self._targets.append(
                {
                    "boxes": to_pixels(target["boxes"], size).cpu(),
                    "labels": target["labels"].cpu(),
                    "points": target["points"].cpu(),
                    "areas": target["areas"].cpu(),
                }
            )

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def on_validation_epoch_start(self) -> None:
        self._reset_eval()

    def on_test_epoch_start(self) -> None:
        self._reset_eval()

    def compute_metrics(self) -> dict[str, Any]:
        """Box mAPs, point AP and recall by size over the images evaluated so far."""
        hp = self.hparams
        # COCO's protocol: at most 100 detections per image (torchmetrics' summary of
        # "map" is only defined for that limit), the highest-scoring ones
        coco = MeanAveragePrecision(box_format="xyxy")
        coco25 = MeanAveragePrecision(box_format="xyxy", iou_thresholds=[0.25])
        box_preds = [
            {k: p[k][:COCO_MAX_DETECTIONS] for k in ("boxes", "scores", "labels")}
            for p in self._preds
        ]
        box_targets = [{k: t[k] for k in ("boxes", "labels")} for t in self._targets]
        coco.update(box_preds, box_targets)
        coco25.update(box_preds, box_targets)
        m, m25 = coco.compute(), coco25.compute()
        point = point_average_precision(
            self._preds, self._targets, hp.point_radius, num_classes=hp.num_classes
        )
        recall = point_recall_by_size(
            self._preds, self._targets, hp.point_radius, hp.recall_score_threshold
        )
        return {
            "mAP50_95": float(m["map"]),
            "mAP50": float(m["map_50"]),
            "mAP75": float(m["map_75"]),
            "mAP25": float(m25["map"]),
            "point_AP": point["AP"],
            "point_AP_per_class": point["per_class"],
            "point_recall_by_area": recall,
        }

    def _log_metrics(self, stage: str) -> dict[str, Any]:
        if not self._preds:
            return {}
        metrics = self.compute_metrics()
        scalars = {k: v for k, v in metrics.items() if isinstance(v, float)}
        self.log_dict({f"{stage}/{k}": (0.0 if np.isnan(v) else v) for k, v in scalars.items()})
        return metrics

    def on_validation_epoch_end(self) -> None:
        self._log_metrics("val")
        self._reset_eval()

    def on_test_epoch_end(self) -> None:
        metrics = self._log_metrics("test")
        self._reset_eval()
        if not self.trainer.is_global_zero or not metrics:
            return
        out_dir = report_folder(self.report_dir, self.trainer, "detection")
        if out_dir is None:
            return
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / "detection_report.json"
        seed = os.environ.get("PL_GLOBAL_SEED")  # set by seed_everything (hsi fit's seed)
        total, trainable = count_parameters(self.net)
        report = {
            **provenance(),
            "seed": int(seed) if seed and seed.lstrip("-").isdigit() else None,
            "metrics": metrics,
            "point_radius_px": self.hparams.point_radius,
            "model": self.hparams.model,
            "hparams": {k: v for k, v in dict(self.hparams).items()},
            "parameters": total,
            "trainable_parameters": trainable,
            "data": self.data_description,
            "train_epoch_seconds": self.epoch_seconds or None,
            "train_epoch_cpu_seconds": self.epoch_cpu_seconds or None,
        }
        from hsi.data.writers import atomic_output

        with atomic_output(path, overwrite=True) as tmp:
            tmp.write_text(json.dumps(report, indent=2, default=str))
        log.info("wrote %s", path)
        self.report_path = path

    # ---- optimisation -----------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        hp = self.hparams
        embed = [p for n, p in self.net.named_parameters() if n.startswith("embed")]
        ids = {id(p) for p in embed}
        rest = [p for p in self.net.parameters() if id(p) not in ids]
        groups = [{"params": rest}]
        if embed:
            groups.append({"params": embed, "lr": hp.lr * hp.embed_lr_mult})
        opt = make_optimizer(groups, "adamw", hp.lr, hp.weight_decay)
        if not hp.lr_milestones:
            return opt
        sched = torch.optim.lr_scheduler.MultiStepLR(
            opt, milestones=list(hp.lr_milestones), gamma=hp.lr_gamma
        )
        return {"optimizer": opt, "lr_scheduler": sched}

    # ---- checkpoint -------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)  # the epoch timings (EpochTimer)
        checkpoint["hsi"] = {
            "task": "detection",  # routes `hsi predict --input` to the detection predictor
            "normalization": self.normalization,
            "image_size": list(self.image_size) if self.image_size else None,
            "data": self.data_description,
            "format_version": 1,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)  # the epoch timings (EpochTimer)
        meta = checkpoint.get("hsi") or {}
        self.normalization = meta.get("normalization")
        self.data_description = meta.get("data")
        size = meta.get("image_size")
        self.image_size = tuple(size) if size else None
        if self.net is None:
            self._build()

    @torch.no_grad()
    def detect(self, image: np.ndarray | torch.Tensor) -> dict[str, torch.Tensor]:
        """Detections on one raw (bands, H, W) image, normalised as in training."""
        if self.normalization is None:
            raise ConfigError("this task has no normalisation: train it or load a checkpoint")
        x = torch.as_tensor(np.asarray(image, dtype=np.float32))
        mean = torch.tensor(self.normalization["mean"], dtype=torch.float32)[:, None, None]
        std = torch.tensor(self.normalization["std"], dtype=torch.float32)[:, None, None]
        if x.ndim != 3 or x.shape[0] != len(mean):
            raise ConfigError(
                f"expected a ({len(mean)}, height, width) image, got shape {tuple(x.shape)}"
            )
        x = ((x - mean) / std)[None].to(self.device)
        self.eval()
        out = self(x)
        hp = self.hparams
        return decode_detections(out, self._size(x), hp.max_detections, hp.nms_iou)[0]
