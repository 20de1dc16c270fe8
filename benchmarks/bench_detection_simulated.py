"""Classical detectors (CEM, AMF, ACE) and trained SpecDETR checkpoints on a simulated
point-target test set, by point AP.

Why: the non-learned detectors are the baselines a learned point detector (SpecDETR) must
beat, scored here by the same point-distance metric (hsi.detection.metrics) on the same
simulated test images. The classical detectors are given the library spectra the targets
were made from (the classical setting: the target spectrum is known); background statistics
come from each test image alone. Each detector's score map per class becomes detections
through ``score_peaks`` (local maxima, 1 px apart, the ``--top`` best per class and image).
A SpecDETR checkpoint (``--ckpt LABEL=PATH``, repeatable) sees only the image; it keeps the
same budget, its ``--top`` best detections per class and image, so recall is comparable.

Usage::

    HSI_DATA=../shared/data python benchmarks/bench_detection_simulated.py \
        --test sim/ip_test [--top 20] [--ckpt specdetr_small=runs/.../best.ckpt] \
        [--out benchmarks/results/detection_simulated.md]

``--test`` is a folder written by ``hsi simulate`` (see hsi/detection/simulate_cli.py); its
``simulation.json`` names the classes, and the library is rebuilt from the same scene.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from hsi.data.cube import SpectralCube
from hsi.data.registry import load_dataset
from hsi.data.writers import atomic_output
from hsi.detection.classical import ace, adaptive_matched_filter, background_stats, cem
from hsi.detection.geojson import score_peaks
from hsi.detection.metrics import point_average_precision, point_recall_by_size
from hsi.detection.scene import load_detection_task
from hsi.detection.simulator import library_from_labels

DETECTORS = {"cem": cem, "amf": adaptive_matched_filter, "ace": ace}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--test", required=True, help="a folder written by hsi simulate")
    parser.add_argument("--dataset", default="indian_pines")
    parser.add_argument("--root", default=None)
    parser.add_argument("--top", type=int, default=20, help="detections per class and image")
    parser.add_argument(
        "--ckpt", action="append", default=[], help="LABEL=PATH of a SpecDETR checkpoint"
    )
    parser.add_argument("--out", default="benchmarks/results/detection_simulated.md")
    args = parser.parse_args()
    checkpoints = [_label_path(text) for text in args.ckpt]

    folder = Path(args.test)
    coco = json.loads((folder / "annotations.json").read_text())
    names = [c["name"] for c in sorted(coco["categories"], key=lambda c: c["id"])]
    scene = load_dataset(args.dataset, root=args.root)
    library = library_from_labels(scene.cube, scene.labels, scene.class_names, names)
    targets = []
    for image in coco["images"]:
        anns = [a for a in coco["annotations"] if a["image_id"] == image["id"]]
        targets.append(
            {
                "points": np.array([a["point"] for a in anns], dtype=float).reshape(-1, 2),
                "labels": np.array([a["category_id"] - 1 for a in anns], dtype=int),
                "areas": np.array([a["area"] for a in anns], dtype=float),
            }
        )
    rows = []
    for det_name, detector in DETECTORS.items():
        start = time.perf_counter()
        preds = []
        for image in coco["images"]:
            cube = SpectralCube(np.load(folder / image["file_name"]))
            stats = background_stats(cube, loading=1e-3)
            points, scores, labels = [], [], []
            for k, name in enumerate(names):
                for d in score_peaks(
                    detector(cube, library[name], stats), min_distance=1, max_detections=args.top
                ):
                    points.append((d.col, d.row))
                    scores.append(d.score)
                    labels.append(k)
            preds.append(
                {
                    "points": np.array(points, dtype=float).reshape(-1, 2),
                    "scores": np.array(scores, dtype=float),
                    "labels": np.array(labels, dtype=int),
                }
            )
        seconds = time.perf_counter() - start
        ap = point_average_precision(preds, targets, num_classes=len(names))
        recall = point_recall_by_size(preds, targets, score_threshold=-np.inf)
        rows.append((det_name, ap, recall, seconds / len(coco["images"])))
        print(det_name, f"AP {ap['AP']:.4f}", recall, flush=True)
    for label, path in checkpoints:
        task = load_detection_task(path)
        if list(task.hparams.class_names or []) != names:
            raise SystemExit(
                f"{path} was trained on classes {task.hparams.class_names}, not {names}"
            )
        n_params = sum(p.numel() for p in task.net.parameters())
        start = time.perf_counter()
        preds = [
            _top_per_class(task.detect(np.load(folder / image["file_name"])), len(names), args.top)
            for image in coco["images"]
        ]
        seconds = time.perf_counter() - start
        ap = point_average_precision(preds, targets, num_classes=len(names))
        recall = point_recall_by_size(preds, targets, score_threshold=-np.inf)
        det_name = f"{label} ({n_params / 1e6:.2f} M parameters, {Path(path).name})"
        rows.append((det_name, ap, recall, seconds / len(coco["images"])))
        print(det_name, f"AP {ap['AP']:.4f}", recall, flush=True)

    size_keys = [k for k in rows[0][2] if k != "all"]
    header = (
        "| detector | point AP (r = 1 px) | "
        + " | ".join(f"recall {k} px²" for k in size_keys)
        + " | recall all | s / image |"
    )
    lines = [header, "|" + "---|" * (4 + len(size_keys))]
    for det_name, ap, recall, per_image in rows:
        cells = " | ".join(f"{recall[k]:.3f}" for k in size_keys)
        lines.append(
            f"| {det_name} | {ap['AP']:.4f} | {cells} | {recall['all']:.3f} | {per_image:.2f} |"
        )
    spec = json.loads((folder / "simulation.json").read_text())
    text = (
        f"Simulated test set {folder} ({len(coco['images'])} images, "
        f"{len(coco['annotations'])} targets, classes {', '.join(names)}; "
        f"spec {json.dumps(spec['spec'])}). Recall counts targets found among the {args.top} "
        "best peaks (SpecDETR: detections) per class and image.\n\n" + "\n".join(lines)
    )
    print("\n" + text)
    with atomic_output(args.out, overwrite=True) as tmp:
        Path(tmp).write_text(text + "\n")


def _label_path(text: str) -> tuple[str, str]:
    label, sep, path = text.partition("=")
    if not sep or not label or not Path(path).is_file():
        raise SystemExit(f"--ckpt takes LABEL=PATH of an existing checkpoint, got {text!r}")
    return label, path


def _top_per_class(detections: dict, num_classes: int, top: int) -> dict[str, np.ndarray]:
    """A detector's output cut to its ``top`` best detections per class (the peak budget
    the classical detectors get), as the numpy dict the point metrics take."""
    scores = detections["scores"].cpu().numpy()
    labels = detections["labels"].cpu().numpy()
    points = detections["points"].cpu().numpy()
    keep = np.concatenate(
        [
            np.flatnonzero(labels == k)[np.argsort(-scores[labels == k])][:top]
            for k in range(num_classes)
        ]
    ).astype(int)
    return {"points": points[keep].reshape(-1, 2), "scores": scores[keep], "labels": labels[keep]}


if __name__ == "__main__":
    main()
