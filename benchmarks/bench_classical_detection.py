"""ROC AUC of the classical detectors (RX, CEM, AMF, ACE) on the real target scenes.

Why: these are the figures the target-detection literature reports for ABU, San Diego and
HYDICE, and the baselines hsi's learned detector must be compared with. Both signature
protocols of :mod:`hsi.detection.evaluation` are run and named in the table.

Usage::

    HSI_DATA=../shared/data python benchmarks/bench_classical_detection.py \
        [--out benchmarks/results/classical_detection.md]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from hsi.data.writers import atomic_output
from hsi.detection.evaluation import evaluate_scene
from hsi.detection.real_scenes import list_target_scenes, load_target_scene
from hsi.detection.targets import annotate_targets

DETECTORS = ("rx", "cem", "amf", "ace")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=None, help="folder with the scene files")
    parser.add_argument("--out", default="benchmarks/results/classical_detection.md")
    args = parser.parse_args()

    header = (
        "| scene | bands | objects | target px | RX | CEM held-out | AMF held-out | "
        "ACE held-out | CEM oracle | AMF oracle | ACE oracle | s |"
    )
    lines = [header, "|" + "---|" * 12]
    columns: dict[str, list[float]] = {}
    for name in list_target_scenes():
        scene = load_target_scene(name, args.root)
        start = time.perf_counter()
        held = evaluate_scene(scene.cube, scene.target_map, "held_out", DETECTORS)
        oracle = evaluate_scene(scene.cube, scene.target_map, "oracle_mean", DETECTORS[1:])
        seconds = time.perf_counter() - start
        row = [held["rx"]] + [held[d] for d in DETECTORS[1:]] + [oracle[d] for d in DETECTORS[1:]]
        for key, value in zip(("rx", "ch", "ah", "eh", "co", "ao", "eo"), row, strict=True):
            columns.setdefault(key, []).append(value)
        cells = " | ".join("n/a" if np.isnan(v) else f"{v:.4f}" for v in row)
        lines.append(
            f"| {name} | {scene.cube.data.shape[0]} | {len(annotate_targets(scene.target_map))} "
            f"| {int((scene.target_map > 0).sum())} | {cells} | {seconds:.1f} |"
        )
        print(lines[-1], flush=True)
    means = " | ".join(f"{np.nanmean(v):.4f}" for v in columns.values())
    lines.append(f"| **mean** (n/a skipped) | | | | {means} | |")
    text = (
        "ROC AUC per scene, pixel level. held-out: signature = mean spectrum of the other half "
        "of the scene's target objects, donor objects left out of the ROC; oracle: mean of all "
        "target pixels (the literature's prior signature; it has seen the scored pixels). "
        "n/a: a single target object, so no held-out signature exists.\n\n" + "\n".join(lines)
    )
    print("\n" + text)
    out = Path(args.out)
    with atomic_output(out, overwrite=True) as tmp:
        Path(tmp).write_text(text + "\n")


if __name__ == "__main__":
    main()
