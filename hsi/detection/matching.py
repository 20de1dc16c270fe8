"""Set matching and losses for DETR-style detectors (SpecDETR's one-to-many variant).

A DETR predicts a fixed set of Q boxes; training first assigns predictions to ground-truth
objects by minimising a matching cost, then applies the losses to that assignment.

- :func:`match_cost`: the (Q, M) cost SpecDETR's reference config uses: 2 × focal class
  cost + 5 × L1 on normalised (cx, cy, w, h) + 2 × (−GIoU) on pixel boxes.
- :func:`hungarian_match`: the one-to-one optimum (scipy's ``linear_sum_assignment``).
- :func:`one_to_many_match`: SpecDETR's dynamic one-to-many assignment (Li et al. 2025,
  the reference code's ``DynamicIOUHungarianAssigner``): after a first Hungarian round,
  matched predictions are removed and further rounds add at most one more prediction per
  object, up to ``match_num`` in all. In ``dynamic`` mode the later rounds match on
  ``1 − IoU`` and keep only pairs whose IoU exceeds ``1 − iou_threshold`` (0.95), so an
  object gains extra positives only from predictions that already fit it tightly.
- :class:`SetCriterion`: sigmoid focal classification loss (α 0.25, γ 2) + 5 × L1 +
  2 × GIoU, normalised by the number of positive predictions, summed over the last
  decoder layer, every earlier layer (auxiliary losses) and the encoder proposals, each
  with its own assignment. A softmax cross-entropy variant is not offered: SpecDETR's
  heads are per-class sigmoids without a "no object" logit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import nn
from torchvision.ops import box_iou, generalized_box_iou, sigmoid_focal_loss

from hsi.errors import ConfigError


def cxcywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), dim=-1)


def xyxy_to_cxcywh(boxes: torch.Tensor) -> torch.Tensor:
    x0, y0, x1, y1 = boxes.unbind(-1)
    return torch.stack(((x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0), dim=-1)


def to_pixels(boxes: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """Normalised (cx, cy, w, h) → pixel (x0, y0, x1, y1); ``image_size`` is (height, width)."""
    h, w = image_size
    scale = boxes.new_tensor([w, h, w, h])
    return cxcywh_to_xyxy(boxes) * scale


@dataclass(frozen=True)
class MatchWeights:
    """Weights of the matching cost and of the losses (SpecDETR's SPOD config)."""

    cost_class: float = 2.0
    cost_l1: float = 5.0
    cost_giou: float = 2.0
    loss_class: float = 1.0
    loss_l1: float = 5.0
    loss_giou: float = 2.0
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0


def focal_class_cost(
    logits: torch.Tensor, labels: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0
) -> torch.Tensor:
    """(Q, M) focal cost: focal loss of predicting the object's class minus that of not."""
    p = logits.sigmoid()
    eps = 1e-12
    neg = -(1 - p + eps).log() * (1 - alpha) * p.pow(gamma)
    pos = -(p + eps).log() * alpha * (1 - p).pow(gamma)
    return (pos - neg)[:, labels]


@torch.no_grad()
def match_cost(
    logits: torch.Tensor,
    boxes: torch.Tensor,
    gt_labels: torch.Tensor,
    gt_boxes: torch.Tensor,
    image_size: tuple[int, int],
    weights: MatchWeights = MatchWeights(),
) -> torch.Tensor:
    """(Q, M) matching cost of Q predictions against M objects of one image.

    Boxes are normalised (cx, cy, w, h); GIoU is taken on pixel boxes (as the reference
    code does), which matters for non-square images.
    """
    cls = focal_class_cost(logits, gt_labels, weights.focal_alpha, weights.focal_gamma)
    l1 = torch.cdist(boxes, gt_boxes, p=1)
    giou = generalized_box_iou(to_pixels(boxes, image_size), to_pixels(gt_boxes, image_size))
    return weights.cost_class * cls + weights.cost_l1 * l1 - weights.cost_giou * giou


def hungarian_match(cost: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(prediction indices, object indices) of the minimum-cost one-to-one assignment."""
    c = cost.detach().cpu().numpy() if isinstance(cost, torch.Tensor) else np.asarray(cost)
    if not np.isfinite(c).all():
        raise ValueError("the matching cost has NaN or infinite entries")
    rows, cols = linear_sum_assignment(c)
    return rows.astype(np.int64), cols.astype(np.int64)


def _as_array(a: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().double().numpy()
    return np.array(a, dtype=np.float64)


def one_to_many_match(
    cost: torch.Tensor | np.ndarray,
    iou_cost: torch.Tensor | np.ndarray | None = None,
    match_num: int = 10,
    base_match_num: int = 1,
    dynamic: bool = True,
    iou_threshold: float = 0.05,
    max_total: int = 100,
) -> tuple[np.ndarray, np.ndarray]:
    """SpecDETR's one-to-many assignment (see the module docstring).

    Round 1 is the Hungarian optimum on ``cost``; each later round (up to ``match_num``)
    removes the predictions matched so far and matches again, on ``cost`` for rounds
    ``<= base_match_num`` or when ``dynamic`` is False, else on ``iou_cost`` (1 − IoU)
    keeping only pairs below ``iou_threshold`` (stopping when none is left). Every
    prediction is matched at most once and at most ``max_total`` predictions are matched.
    With ``dynamic=False`` and enough predictions, every object gets exactly ``match_num``.
    """
    if match_num < 1 or base_match_num < 1:
        raise ConfigError("match_num and base_match_num must be >= 1")
    c = _as_array(cost)
    q, m = c.shape
    if q == 0 or m == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    ic = None
    if dynamic and match_num > base_match_num:
        if iou_cost is None:
            raise ConfigError("dynamic one-to-many matching needs the IoU cost")
        ic = _as_array(iou_cost)
    free = np.ones(q, dtype=bool)
    rows_all: list[np.ndarray] = []
    cols_all: list[np.ndarray] = []
    for round_ in range(1, match_num + 1):
        n_done = sum(len(r) for r in rows_all)
        if n_done >= max_total or not free.any():
            break
        idx = np.flatnonzero(free)
        use_iou = ic is not None and round_ > base_match_num
        sub = (ic if use_iou else c)[idx]
        r, cols = linear_sum_assignment(sub)
        if use_iou:
            keep = sub[r, cols] < iou_threshold
            r, cols = r[keep], cols[keep]
            if len(r) == 0:
                break
        r, cols = idx[r][: max_total - n_done], cols[: max_total - n_done]
        free[r] = False
        rows_all.append(r)
        cols_all.append(cols)
    return np.concatenate(rows_all).astype(np.int64), np.concatenate(cols_all).astype(np.int64)


class SetCriterion(nn.Module):
    """SpecDETR's training loss on a model's output dict (see the module docstring).

    ``targets`` is one dict per image with ``labels`` (M,) 0-based class ids and
    ``boxes`` (M, 4) normalised (cx, cy, w, h). Returns a dict of the weighted loss
    terms of the last layer (``loss_class``, ``loss_l1``, ``loss_giou``), and ``loss``,
    the total over every layer the model returns (``aux`` and ``enc`` included).
    """

    def __init__(
        self,
        num_classes: int,
        match_num: int = 10,
        base_match_num: int = 1,
        dynamic: bool = True,
        iou_threshold: float = 0.05,
        max_total: int = 100,
        weights: MatchWeights = MatchWeights(),
        aux_loss: bool = True,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.match_kw = dict(
            match_num=match_num,
            base_match_num=base_match_num,
            dynamic=dynamic,
            iou_threshold=iou_threshold,
            max_total=max_total,
        )
        self.weights = weights
        self.aux_loss = aux_loss

    @torch.no_grad()
    def assign(
        self, logits: torch.Tensor, boxes: torch.Tensor, target: dict, image_size: tuple[int, int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Matched (prediction, object) indices for one image."""
        if len(target["labels"]) == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        cost = match_cost(
            logits, boxes, target["labels"], target["boxes"], image_size, self.weights
        )
        iou_cost = None
        if (
            self.match_kw["dynamic"]
            and self.match_kw["match_num"] > self.match_kw["base_match_num"]
        ):
            iou = box_iou(to_pixels(boxes, image_size), to_pixels(target["boxes"], image_size))
            iou_cost = 1.0 - iou
        return one_to_many_match(cost, iou_cost, **self.match_kw)

    def layer_loss(
        self,
        logits: torch.Tensor,
        boxes: torch.Tensor,
        targets: Sequence[dict],
        image_size: tuple[int, int],
    ) -> dict[str, torch.Tensor]:
        """Weighted class, L1 and GIoU losses of one layer's (B, Q, ·) predictions."""
        w = self.weights
        onehot = torch.zeros_like(logits)
        pred_boxes, gt_boxes = [], []
        for b, target in enumerate(targets):
            rows, cols = self.assign(logits[b], boxes[b], target, image_size)
            if len(rows) == 0:
                continue
            r = torch.as_tensor(rows, device=logits.device)
            c = torch.as_tensor(cols, device=logits.device)
            onehot[b, r, target["labels"][c]] = 1.0
            pred_boxes.append(boxes[b, r])
            gt_boxes.append(target["boxes"][c])
        n_pos = max(sum(len(p) for p in pred_boxes), 1)
        focal = sigmoid_focal_loss(
            logits, onehot, alpha=w.focal_alpha, gamma=w.focal_gamma, reduction="sum"
        )
        loss_class = w.loss_class * focal / n_pos
        if pred_boxes:
            pb, gb = torch.cat(pred_boxes), torch.cat(gt_boxes)
            loss_l1 = w.loss_l1 * (pb - gb).abs().sum() / n_pos
            giou = torch.diag(
                generalized_box_iou(to_pixels(pb, image_size), to_pixels(gb, image_size))
            )
            loss_giou = w.loss_giou * (1 - giou).sum() / n_pos
        else:  # no objects in the batch: only the class loss (all negatives) applies
            loss_l1 = loss_giou = boxes.sum() * 0.0
        return {"loss_class": loss_class, "loss_l1": loss_l1, "loss_giou": loss_giou}

    def forward(
        self, outputs: dict, targets: Sequence[dict], image_size: tuple[int, int]
    ) -> dict[str, torch.Tensor]:
        last = self.layer_loss(outputs["logits"], outputs["boxes"], targets, image_size)
        total = sum(last.values())
        if self.aux_loss:
            extra = list(outputs.get("aux", []))
            if outputs.get("enc") is not None:
                extra.append(outputs["enc"])
            for layer in extra:
                total = total + sum(
                    self.layer_loss(layer["logits"], layer["boxes"], targets, image_size).values()
                )
        return {**last, "loss": total}
