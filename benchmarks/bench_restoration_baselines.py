"""Classical restoration baselines on real cubes: what a learned model must beat.

Why: HSDT/ESSAformer figures only mean something beside the numbers a non-learned method
reaches on the same cube and noise. This script degrades a held-out crop of real scenes
with hsi's seeded degradations and scores the classical restorers with hsi.image_quality
(MPSNR/MSSIM over bands, SAM in degrees, ERGAS). These are not the papers' datasets (ICVL,
CAVE, Chikusei): the figures are not comparable with the published ones.

Scaling: each cube is min-max scaled to [0, 1] with its own global min and max, as
QRNN3D/HSDT scale ICVL. BM4D is given the true sigma (its best case).

Usage::

    HSI_DATA=../shared/data OMP_NUM_THREADS=1 python benchmarks/bench_restoration_baselines.py \
        [--crop 64] [--no-bm4d] [--out benchmarks/results/restoration_baselines.md]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import time
from pathlib import Path

import numpy as np
import torch

from hsi.data.degradations import build_degradation
from hsi.data.registry import load_dataset
from hsi.data.restoration import load_clean_cube
from hsi.data.writers import atomic_output
from hsi.image_quality import quality_report
from hsi.restoration_baselines import (
    bicubic_upsample,
    bm4d_denoise,
    gaussian_filter_denoise,
    median_filter_denoise,
)


def _scenes(crop: int) -> dict[str, np.ndarray]:
    """Held-out crops (bottom-right corner) of the real scenes, scaled to [0, 1]."""
    out = {}
    cube = load_dataset("indian_pines").cube.data
    out["indian_pines"] = cube
    root = Path(os.environ.get("HSI_DATA", "../shared/data"))
    jasper = load_clean_cube(
        image=str(root / "jasper_ridge" / "jasperRidge2_R198.mat"),
        variable="Y",
        pixels_shape=(100, 100),
    )
    out["jasper_ridge"] = jasper.data
    scaled = {}
    for name, x in out.items():
        x = np.asarray(x, dtype=np.float32)
        x = (x - x.min()) / (x.max() - x.min())
        scaled[name] = np.ascontiguousarray(x[:, -crop:, -crop:])
    return scaled


def _score(pred: np.ndarray, clean: np.ndarray, ratio: float = 1.0) -> dict[str, float]:
    q = quality_report(torch.from_numpy(pred)[None], torch.from_numpy(clean)[None], ratio=ratio)
    return {k: float(v.mean()) for k, v in q.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crop", type=int, default=64)
    parser.add_argument("--no-bm4d", action="store_true")
    parser.add_argument("--out", default="benchmarks/results/restoration_baselines.md")
    args = parser.parse_args()
    use_bm4d = not args.no_bm4d and importlib.util.find_spec("bm4d") is not None

    lines = [
        "| scene | setting | method | MPSNR | MSSIM | SAM (°) | ERGAS | s |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def row(scene: str, setting: str, method: str, pred, clean, seconds, ratio=1.0) -> None:
        s = _score(pred, clean, ratio)
        lines.append(
            f"| {scene} | {setting} | {method} | {s['MPSNR']:.2f} | {s['MSSIM']:.4f} | "
            f"{s['SAM']:.2f} | {s['ERGAS']:.2f} | {seconds:.1f} |"
        )
        print(lines[-1], flush=True)

    for scene, clean in _scenes(args.crop).items():
        for setting in ("gaussian30", "gaussian50", "gaussian70"):
            sigma = float(setting.removeprefix("gaussian"))
            noisy = build_degradation(setting)(clean, np.random.default_rng(0))
            row(scene, setting, "noisy input", noisy, clean, 0.0)
            for method, fn in (
                ("gaussian filter (1 px)", gaussian_filter_denoise),
                ("median filter (3 px)", median_filter_denoise),
            ):
                start = time.perf_counter()
                out = fn(noisy)
                row(scene, setting, method, out, clean, time.perf_counter() - start)
            if use_bm4d:
                start = time.perf_counter()
                out = bm4d_denoise(noisy, sigma)
                row(scene, setting, "BM4D (true sigma)", out, clean, time.perf_counter() - start)
        degradation = build_degradation("bicubic_x4")
        low = degradation(clean, np.random.default_rng(0))
        start = time.perf_counter()
        up = bicubic_upsample(low, 4)
        row(scene, "bicubic_x4", "bicubic upsampling", up, clean, time.perf_counter() - start, 4)

    text = (
        f"Held-out {args.crop}x{args.crop} bottom-right crops, all bands, min-max scaled per "
        "cube; noise seed 0. Not the papers' datasets.\n\n" + "\n".join(lines)
    )
    print("\n" + text)
    with atomic_output(args.out, overwrite=True) as tmp:
        Path(tmp).write_text(text + "\n")


if __name__ == "__main__":
    main()
