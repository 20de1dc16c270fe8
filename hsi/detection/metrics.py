"""Point-distance detection metrics for (sub-)pixel targets.

Box IoU is a poor criterion for targets smaller than a pixel: a 0.5×0.5 px target and a
prediction offset by half a pixel have IoU 0 although the detector found the right pixel.
So, besides COCO mAP on boxes (SpecDETR reports mAP25, mAP50, mAP75 and mAP50:95), hsi
scores detections by the distance of their centre to the target centre:

A detection is a **hit** when its centre lies within ``radius`` pixels of a not yet
matched target centre of the same class in the same image; detections are taken greedily
in order of decreasing score (over all images), each matching the nearest such target.
Later detections of an already matched target are false positives (duplicates).

The default ``radius = 1.0`` pixel: the farthest point of a pixel from its centre is
√2/2 ≈ 0.71 px, so a detection placed at the centre of the pixel that holds the target
centre is always a hit, a sub-pixel estimate may err a little beyond that, but a
detection two pixels away never is. The simulator keeps targets at least 3 px apart
(``SimulationSpec.min_separation``), so no detection is within ``radius`` of two targets.

A target may carry its own hit radius (``targets[i]["radii"]``, pixels), for objects of
very different extents in one scene (a 1-pixel vehicle and an 8-pixel plane); a detection
then matches the nearest not yet matched target whose own radius it lies within.

Average precision is the area under the precision-recall curve with the precision made
monotone (all-point interpolation, as PASCAL VOC 2010+ and COCO do).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hsi.errors import DataError

DEFAULT_RADIUS = 1.0
# target areas (pixels) that split targets into size groups for recall: sub-pixel, 1-4 px, >4 px
DEFAULT_SIZE_EDGES = (1.0, 4.0)


def _arr(d: Mapping[str, Any], key: str, shape_tail: tuple[int, ...], where: str) -> np.ndarray:
    if key not in d:
        raise DataError(f"{where} has no {key!r}")
    a = np.asarray(d[key].detach().cpu() if hasattr(d[key], "detach") else d[key], dtype=float)
    if shape_tail and a.size == 0:
        a = a.reshape((0, *shape_tail))
    if a.shape[1:] != shape_tail:
        raise DataError(f"{where}[{key!r}] has shape {a.shape}, expected (n, {shape_tail})")
    return a


def _match_points(
    preds: Sequence[Mapping[str, Any]],
    targets: Sequence[Mapping[str, Any]],
    radius: float,
    class_id: int | None,
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Scores and hit flags of every detection (score-sorted), and per-image target hits."""
    if len(preds) != len(targets):
        raise DataError(f"{len(preds)} prediction sets for {len(targets)} images")
    if radius <= 0:
        raise DataError(f"the hit radius must be positive, got {radius}")
    dets = []  # (score, image, x, y)
    gts = []
    for i, (p, t) in enumerate(zip(preds, targets, strict=True)):
        pts = _arr(p, "points", (2,), f"predictions[{i}]")
        scores = _arr(p, "scores", (), f"predictions[{i}]")
        labels = _arr(p, "labels", (), f"predictions[{i}]")
        t_pts = _arr(t, "points", (2,), f"targets[{i}]")
        t_labels = _arr(t, "labels", (), f"targets[{i}]")
        if not (len(pts) == len(scores) == len(labels)) or len(t_pts) != len(t_labels):
            raise DataError(f"image {i}: points, scores and labels differ in length")
        if "radii" in t:
            t_radii = _arr(t, "radii", (), f"targets[{i}]")
            if len(t_radii) != len(t_pts) or not (t_radii > 0).all():
                raise DataError(f"targets[{i}]['radii']: one positive radius per target")
        else:
            t_radii = np.full(len(t_pts), float(radius))
        keep = labels == class_id if class_id is not None else np.ones(len(labels), bool)
        t_keep = t_labels == class_id if class_id is not None else np.ones(len(t_labels), bool)
        for s, (x, y), lab in zip(scores[keep], pts[keep], labels[keep], strict=True):
            dets.append((s, i, x, y, lab))
        gts.append((t_pts[t_keep], t_labels[t_keep], t_radii[t_keep]))
    dets.sort(key=lambda d: -d[0])
    taken = [np.zeros(len(g[0]), dtype=bool) for g in gts]
    hits = np.zeros(len(dets), dtype=bool)
    for k, (_, i, x, y, lab) in enumerate(dets):
        g_pts, g_labels, g_radii = gts[i]
        if len(g_pts) == 0:
            continue
        d = np.hypot(g_pts[:, 0] - x, g_pts[:, 1] - y)
        d[taken[i] | (g_labels != lab) | (d > g_radii)] = np.inf
        j = int(np.argmin(d))
        if np.isfinite(d[j]):
            taken[i][j] = True
            hits[k] = True
    scores = np.array([d[0] for d in dets], dtype=float)
    return scores, hits, taken


def _average_precision(hits: np.ndarray, n_targets: int) -> float:
    if n_targets == 0:
        return float("nan")
    if len(hits) == 0:
        return 0.0
    tp = np.cumsum(hits)
    fp = np.cumsum(~hits)
    recall = tp / n_targets
    precision = tp / (tp + fp)
    # monotone envelope, then the area under the step curve
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.diff(np.concatenate(([0.0], recall)))
    return float((steps * envelope).sum())


def point_average_precision(
    preds: Sequence[Mapping[str, Any]],
    targets: Sequence[Mapping[str, Any]],
    radius: float = DEFAULT_RADIUS,
    num_classes: int | None = None,
) -> dict[str, Any]:
    """Point-distance AP per class and their mean (see the module docstring).

    ``preds[i]``: ``points`` (N, 2) pixel (x, y) centres, ``scores`` (N,), ``labels`` (N,);
    ``targets[i]``: ``points`` (M, 2), ``labels`` (M,), optionally ``radii`` (M,) hit
    radii that replace ``radius`` for those targets. Classes without targets are
    left out of the mean (their AP is NaN). Returns ``{"AP": mean, "per_class": {...}}``.
    """
    labels = set()
    for t in targets:
        labels |= {int(v) for v in _arr(t, "labels", (), "targets")}
    classes = range(num_classes) if num_classes is not None else sorted(labels)
    per_class = {}
    for c in classes:
        _, hits, taken = _match_points(preds, targets, radius, c)
        per_class[int(c)] = _average_precision(hits, int(sum(len(t) for t in taken)))
    valid = [v for v in per_class.values() if not np.isnan(v)]
    return {"AP": float(np.mean(valid)) if valid else float("nan"), "per_class": per_class}


def point_recall_by_size(
    preds: Sequence[Mapping[str, Any]],
    targets: Sequence[Mapping[str, Any]],
    radius: float = DEFAULT_RADIUS,
    score_threshold: float = 0.3,
    size_edges: Sequence[float] = DEFAULT_SIZE_EDGES,
) -> dict[str, float]:
    """Recall of targets grouped by area (``targets[i]["areas"]``, pixels) at a fixed score.

    Detections scoring below ``score_threshold`` are dropped; the rest are matched as in
    :func:`point_average_precision` (class-aware). Groups are ``area < e0``,
    ``e0 <= area < e1``, …, ``area >= e_last``, keyed like ``"<1"``, ``"1-4"``, ``">=4"``;
    a group without targets gets NaN.
    """
    kept = []
    for i, p in enumerate(preds):
        s = _arr(p, "scores", (), f"predictions[{i}]")
        m = s >= score_threshold
        kept.append({k: _arr(p, k, tail, "p")[m] for k, tail in (
            ("points", (2,)), ("scores", ()), ("labels", ()))})  # fmt: skip
    _, _, taken = _match_points(kept, targets, radius, None)
    areas = np.concatenate([_arr(t, "areas", (), f"targets[{i}]") for i, t in enumerate(targets)])
    found = np.concatenate(taken) if taken else np.zeros(0, bool)
    edges = [float(e) for e in size_edges]
    names = [f"<{edges[0]:g}"]
    names += [f"{a:g}-{b:g}" for a, b in zip(edges[:-1], edges[1:], strict=True)]
    names += [f">={edges[-1]:g}"]
    group = np.searchsorted(edges, areas, side="right")
    out = {}
    for g, name in enumerate(names):
        sel = group == g
        out[name] = float(found[sel].mean()) if sel.any() else float("nan")
    out["all"] = float(found.mean()) if len(found) else float("nan")
    return out
