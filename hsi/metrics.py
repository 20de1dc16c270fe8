"""Classification accuracy figures as the hyperspectral literature reports them.

All are derived from one confusion matrix (rows = reference, columns = prediction):
overall accuracy (OA), average accuracy (AA: the mean of per-class recall over classes
present in the reference), Cohen's kappa, and per-class accuracy (recall).
"""

from __future__ import annotations

import numpy as np


def classification_metrics(confusion: np.ndarray) -> dict[str, object]:
    """OA, AA, kappa (in %), per-class recall (in %, ``None`` for absent classes)."""
    cm = np.asarray(confusion, dtype=np.float64)
    total = cm.sum()
    if total == 0:
        raise ValueError("empty confusion matrix: nothing was evaluated")
    support = cm.sum(axis=1)
    diag = np.diag(cm)
    present = support > 0
    per_class = np.where(present, diag / np.where(present, support, 1), np.nan)
    oa = diag.sum() / total
    expected = (support * cm.sum(axis=0)).sum() / total**2
    kappa = (oa - expected) / (1 - expected) if expected < 1 else 1.0
    return {
        "OA": 100 * float(oa),
        "AA": 100 * float(np.nanmean(per_class[present])),
        "kappa": 100 * float(kappa),
        "per_class": [None if np.isnan(v) else 100 * float(v) for v in per_class],
        "support": support.astype(int).tolist(),
        "classes_absent_from_reference": np.flatnonzero(~present).tolist(),
    }
