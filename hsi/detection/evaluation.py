"""Pixel-level ROC AUC of detectors on scenes with target maps, under named protocols.

A target detector needs a target spectrum. Where it comes from decides what an AUC means:

- ``held_out`` (the default, leak-free): the scene's target objects (connected components)
  are split into two folds alternately in id order; each fold is scored with the mean
  spectrum of the *other* fold's objects, and the donor objects are left out of that fold's
  ROC. The AUC is the mean over the two folds. Needs at least two objects.
- ``oracle_mean``: the mean spectrum of every target pixel, the pixels then scored. This is
  how much of the literature reports CEM/ACE on these scenes (a prior spectrum taken from
  the ground truth); it is named so in every report because the signature has seen the
  pixels it is scored on.

RX needs no signature, so it is scored once over all pixels in both protocols. Background
statistics always come from the whole scene: in practice targets are unknown.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
from sklearn.metrics import roc_auc_score

from hsi.data.cube import SpectralCube
from hsi.detection.classical import (
    BackgroundStats,
    ace,
    adaptive_matched_filter,
    background_stats,
    cem,
    rx,
)
from hsi.detection.targets import component_map
from hsi.errors import DataError

Protocol = Literal["held_out", "oracle_mean"]
SignatureDetector = Callable[[SpectralCube, np.ndarray, BackgroundStats], np.ndarray]

SIGNATURE_DETECTORS: dict[str, SignatureDetector] = {
    "cem": cem,
    "amf": adaptive_matched_filter,
    "ace": ace,
}


def roc_auc(scores: np.ndarray, truth: np.ndarray, keep: np.ndarray | None = None) -> float:
    """Area under the ROC curve of ``scores`` against binary ``truth`` over ``keep`` pixels."""
    keep = np.ones(truth.shape, dtype=bool) if keep is None else keep
    keep = keep & np.isfinite(scores)
    y = truth[keep] > 0
    if y.all() or not y.any():
        raise DataError("ROC AUC needs both target and background pixels among those scored")
    return float(roc_auc_score(y, scores[keep]))


def mean_spectrum(cube: SpectralCube, mask: np.ndarray) -> np.ndarray:
    if not mask.any():
        raise DataError("no target pixels to build a signature from")
    return np.asarray(cube.data[:, mask], dtype=np.float64).mean(axis=1)


def held_out_folds(target_map: np.ndarray) -> np.ndarray:
    """H×W ints: the ``held_out`` fold (0 or 1) of each target pixel's object, -1 elsewhere.

    Objects are the connected components of :func:`component_map`, assigned alternately
    in id order (1 → fold 0, 2 → fold 1, …). Every held-out evaluation (classical here,
    learned in :mod:`hsi.detection.scene_training`) takes its split from this one function,
    so they score the same objects with the same donors. With fewer than two objects
    fold 1 is empty and no held-out score exists.
    """
    ids = component_map(target_map)
    n_objects = int(ids.max())
    fold_of = np.zeros(n_objects + 1, dtype=np.int64)
    fold_of[1:] = np.arange(n_objects) % 2
    return np.where(ids > 0, fold_of[ids], -1)


def evaluate_scene(
    cube: SpectralCube,
    target_map: np.ndarray,
    protocol: Protocol = "held_out",
    detectors: tuple[str, ...] = ("rx", "cem", "amf", "ace"),
) -> dict[str, float]:
    """ROC AUC of each detector on one scene under ``protocol`` (see the module docstring).

    A detector that cannot be scored under the protocol (one target object with
    ``held_out``) gets NaN, never a number computed some other way.
    """
    if target_map.shape != cube.data.shape[1:]:
        raise DataError(f"target map {target_map.shape} for an image of {cube.data.shape[1:]}")
    unknown = set(detectors) - set(SIGNATURE_DETECTORS) - {"rx"}
    if unknown:
        raise DataError(f"unknown detectors {sorted(unknown)}; known: rx, cem, amf, ace")
    truth = target_map > 0
    stats = background_stats(cube)
    results: dict[str, float] = {}
    if "rx" in detectors:
        results["rx"] = roc_auc(rx(cube, stats), truth)
    wanted = [d for d in detectors if d != "rx"]
    if not wanted:
        return results
    if protocol == "oracle_mean":
        signature = mean_spectrum(cube, truth)
        for name in wanted:
            results[name] = roc_auc(SIGNATURE_DETECTORS[name](cube, signature, stats), truth)
        return results
    if protocol != "held_out":
        raise DataError(f"unknown protocol {protocol!r}; use 'held_out' or 'oracle_mean'")
    pixel_fold = held_out_folds(target_map)
    if not (pixel_fold == 1).any():
        return {**results, **{name: float("nan") for name in wanted}}
    for name in wanted:
        aucs = []
        for fold in (0, 1):
            donor = pixel_fold == 1 - fold
            signature = mean_spectrum(cube, donor)
            scores = SIGNATURE_DETECTORS[name](cube, signature, stats)
            aucs.append(roc_auc(scores, truth, keep=~donor))
        results[name] = float(np.mean(aucs))
    return results
