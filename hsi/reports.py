"""Test reports: a JSON file with every number and its provenance, and a map picture.

A report always names its protocol and whether it is leaky, so a number can never be
quoted without the conditions that produced it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from hsi.data.writers import atomic_output
from hsi.provenance import provenance


def class_colors(n: int) -> np.ndarray:
    """``(n + 1, 3)`` uint8 palette; index 0 (unlabelled / no-data) is black."""
    import matplotlib

    cmap = matplotlib.colormaps["tab20"] if n <= 20 else matplotlib.colormaps["gist_ncar"]
    colors = [(0, 0, 0)] + [
        tuple(int(255 * c) for c in cmap(i / max(n - 1, 1) if n > 20 else i)[:3]) for i in range(n)
    ]
    return np.asarray(colors, dtype=np.uint8)


def save_map_figure(
    path: Path,
    prediction: np.ndarray,
    labels: np.ndarray | None,
    class_names: list[str],
    title: str,
    test_mask: np.ndarray | None = None,
) -> Path:
    """PNG with the predicted map beside the ground truth (and the test-pixel errors)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    palette = class_colors(len(class_names))
    panels = [("prediction (every pixel)", palette[prediction])]
    if labels is not None:
        panels.insert(0, ("ground truth", palette[labels]))
        if test_mask is not None:
            err = np.zeros(labels.shape + (3,), dtype=np.uint8)
            ok = test_mask & (prediction == labels)
            bad = test_mask & (prediction != labels)
            err[ok] = (40, 160, 40)
            err[bad] = (220, 30, 30)
            panels.append(("test pixels: correct / wrong", err))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels) + 2.5, 4.6))
    for ax, (name, img) in zip(np.atleast_1d(axes), panels, strict=True):
        ax.imshow(img, interpolation="nearest")
        ax.set_title(name, fontsize=9)
        ax.set_axis_off()
    handles = [Patch(color=palette[i + 1] / 255, label=n) for i, n in enumerate(class_names)]
    fig.legend(handles=handles, loc="center right", fontsize=7, frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(right=1 - 2.3 / fig.get_figwidth(), top=0.86)
    try:
        with atomic_output(path, overwrite=True) as tmp:
            fig.savefig(tmp, dpi=120, format="png")
    finally:
        plt.close(fig)
    return path


def write_classification_report(
    out_dir: Path,
    *,
    confusion: np.ndarray,
    metrics: dict[str, Any],
    data: dict[str, Any],
    task: dict[str, Any],
    timings: dict[str, Any],
    prediction: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    split: Any = None,
) -> list[Path]:
    """Write ``test_report.json`` (and ``test_map.png`` when a map is given) to out_dir."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    class_names = data.get("class_names") or [f"class_{i + 1}" for i in range(len(confusion))]
    split_info = data.get("split") or {}
    per_class = [
        {
            "class": name,
            "accuracy": acc,
            "test_pixels": sup,
            "train_pixels": (split_info.get("counts", {}).get("train", {}) or {}).get(name),
        }
        for name, acc, sup in zip(
            class_names, metrics["per_class"], metrics["support"], strict=True
        )
    ]
    report = {
        **provenance(),
        "dataset": data.get("dataset"),
        "protocol": split_info.get("protocol"),
        "leaky": data.get("leaky"),
        "leaky_reasons": data.get("leaky_reasons"),
        "seed": split_info.get("seed"),
        "split_file": data.get("split_file"),
        "model": task.get("model"),
        "parameters": task.get("parameters"),
        "epochs_run": task.get("epochs_run"),
        "checkpoint_epoch": task.get("checkpoint_epoch"),
        "metrics": {k: metrics[k] for k in ("OA", "AA", "kappa")},
        "per_class": per_class,
        "confusion_matrix": np.asarray(confusion).astype(int).tolist(),
        "timings": timings,
        "data": {k: v for k, v in data.items() if k not in ("wavelengths",)},
        "task": task,
    }
    paths = []
    json_path = out_dir / "test_report.json"
    with atomic_output(json_path, overwrite=True) as tmp:
        tmp.write_text(json.dumps(report, indent=2, default=str))
    paths.append(json_path)
    if prediction is not None:
        test_mask = None if split is None else split.assignment == 3
        title = (
            f"{task.get('model')} on {data.get('dataset')} — protocol "
            f"{split_info.get('protocol')}{' (leaky)' if data.get('leaky') else ''}: "
            f"OA {metrics['OA']:.2f}  AA {metrics['AA']:.2f}  κ {metrics['kappa']:.2f}"
        )
        paths.append(
            save_map_figure(
                out_dir / "test_map.png", prediction, labels, class_names, title, test_mask
            )
        )
    return paths
