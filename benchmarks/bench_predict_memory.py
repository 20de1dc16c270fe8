"""Peak memory of ``predict_scene`` does not grow with the scene: a small and a large scene.

Why: :func:`hsi.inference.predict_scene` reads, classifies and writes a scene window by
window, so its memory should be set by the window (``--tile``, ``--batch-size``), not by
the scene. This script writes two synthetic 200-band int16 GeoTIFF scenes (a small one and
a large one, in a temporary directory deleted afterwards), builds a small HybridSN
checkpoint (30 PCA components, randomly initialised: speed and memory do not depend on
the weights), runs ``predict_scene`` on each in a fresh child process and prints each
child's peak RSS (``VmHWM``), its RSS after the imports (before ``predict_scene``), and
pixels/s, then the ratio of the peak RSS of the two runs.

The default large scene is 2048×2048 (1.6 GiB of int16 data): on one CPU thread HybridSN
with 9×9 patches classifies about 2·10⁴ pixels/s, so 4096×4096 (6.7 GiB) takes 15 minutes
or more; pass ``--large 4096`` for it. Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_predict_memory.py
    OMP_NUM_THREADS=1 python benchmarks/bench_predict_memory.py --large 4096 --patch 9
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BANDS = 200
PCA = 30
CLASSES = 16
_BLOCK = 256


def _vm_hwm_mib() -> float:
    """Peak resident set size of this process (MiB): VmHWM, else ru_maxrss."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def _vm_rss_mib() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def _signatures(seed: int) -> np.ndarray:
    """``(CLASSES, BANDS)`` smooth spectra, reflectance ×10000 as stored by many products."""
    rng = np.random.default_rng(seed)
    bands = np.linspace(0.0, 1.0, BANDS)
    sig = np.empty((CLASSES, BANDS))
    for k in range(CLASSES):
        a, b, c = rng.uniform(0.05, 0.5, 3)
        sig[k] = a + b * np.sin(2 * np.pi * (bands * rng.uniform(0.5, 2.0) + c))
    return (np.clip(sig, 0.01, 0.95) * 10000).astype(np.int16)


def _block(
    sig: np.ndarray, rng: np.random.Generator, r0: int, r1: int, c0: int, c1: int
) -> np.ndarray:
    """Pixels ``(BANDS, r1 - r0, c1 - c0)`` int16: fields of classes plus noise."""
    rows, cols = np.mgrid[r0:r1, c0:c1]
    classes = ((rows // 37) * 7 + (cols // 53) * 3) % CLASSES
    noise = rng.integers(-300, 300, size=(BANDS, r1 - r0, c1 - c0), dtype=np.int16)
    return sig[classes].transpose(2, 0, 1) + noise


def write_scene(path: Path, side: int, seed: int = 0) -> Path:
    """A ``side``×``side`` 200-band int16 GeoTIFF (tiled, uncompressed), written in blocks."""
    import rasterio
    from rasterio.windows import Window

    sig = _signatures(seed)
    rng = np.random.default_rng(seed + 1)
    profile = {
        "driver": "GTiff",
        "width": side,
        "height": side,
        "count": BANDS,
        "dtype": "int16",
        "tiled": True,
        "blockxsize": _BLOCK,
        "blockysize": _BLOCK,
        "BIGTIFF": "YES" if side * side * BANDS * 2 > 3.5e9 else "IF_SAFER",
        "crs": "EPSG:32633",
        "transform": rasterio.transform.from_origin(500000.0, 5000000.0, 30.0, 30.0),
    }
    with rasterio.open(path, "w", **profile) as dst:
        for r0 in range(0, side, _BLOCK):
            for c0 in range(0, side, _BLOCK):
                r1, c1 = min(side, r0 + _BLOCK), min(side, c0 + _BLOCK)
                dst.write(_block(sig, rng, r0, r1, c0, c1), window=Window(c0, r0, c1 - c0, r1 - r0))
    return path


def write_checkpoint(path: Path, patch: int, seed: int = 0) -> Path:
    """A HybridSN ClassificationTask checkpoint with PCA(30) fitted on scene-like pixels."""
    import torch

    from hsi.data.preprocessing import Preprocessor
    from hsi.tasks.classification import ClassificationTask

    torch.manual_seed(seed)
    task = ClassificationTask(model="hybridsn", in_bands=PCA, num_classes=CLASSES, patch_size=patch)
    sample = _block(_signatures(seed), np.random.default_rng(seed + 2), 0, 200, 0, 200)
    pixels = sample.reshape(BANDS, -1).T.astype(np.float32)
    task.preprocessing = Preprocessor(PCA).fit(pixels).state_dict()
    task.data_description = {
        "class_names": [f"class_{k}" for k in range(1, CLASSES + 1)],
        "pad_mode": "reflect",
        "patch_size": patch,
    }
    task.export_checkpoint(path)
    return path


def run_child(args: argparse.Namespace) -> dict:
    """In the child: predict_scene on one scene; returns its numbers."""
    import rasterio  # noqa: F401  (imported here so that the baseline includes them)
    import torch
    import tqdm.auto  # noqa: F401

    import hsi.tasks.classification  # noqa: F401  (lightning, torchmetrics, the models)
    from hsi.inference import predict_scene

    torch.set_num_threads(args.threads)
    rss_before = _vm_rss_mib()  # the libraries: what any run costs, whatever the scene
    start = time.perf_counter()
    summary = predict_scene(
        args.ckpt,
        args.input,
        args.output,
        tile=args.tile,
        batch_size=args.batch_size,
        progress=False,
    )
    seconds = time.perf_counter() - start
    return {
        "pixels": summary["pixels"],
        "seconds": seconds,
        "pixels_per_second": summary["pixels"] / seconds,
        "peak_rss_mib": _vm_hwm_mib(),
        "rss_before_mib": rss_before,
        "map_bytes": Path(args.output).stat().st_size,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", type=int, default=512, help="small scene side")
    parser.add_argument("--large", type=int, default=2048, help="large scene side (or 4096)")
    parser.add_argument("--patch", type=int, default=9, help="HybridSN patch size (9 or 25)")
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1, help="torch threads in the child")
    parser.add_argument("--tmpdir", help="where the scenes are written (default: system tmp)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--ckpt", help=argparse.SUPPRESS)
    parser.add_argument("--input", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(run_child(args)))
        return 0

    sides = [args.small, args.large]
    need = sum(s * s * BANDS * 2 for s in sides)
    with tempfile.TemporaryDirectory(prefix="hsi_bench_mem_", dir=args.tmpdir) as tmp:
        root = Path(tmp)
        free = shutil.disk_usage(root).free
        if free < 1.2 * need:
            print(
                f"error: the scenes need {need / 2**30:.1f} GiB but {root} has "
                f"{free / 2**30:.1f} GiB free; pass --tmpdir or a smaller --large",
                file=sys.stderr,
            )
            return 2
        print(
            f"HybridSN, {PCA} PCA components of {BANDS} int16 bands, {CLASSES} classes, "
            f"patch {args.patch}; tile {args.tile}, batch {args.batch_size}; "
            f"{args.threads} torch thread(s) per run"
        )
        ckpt = write_checkpoint(root / "model.ckpt", args.patch)
        results = {}
        for side in sides:
            t0 = time.perf_counter()
            scene = write_scene(root / f"scene_{side}.tif", side)
            gib = scene.stat().st_size / 2**30
            print(f"wrote {side}×{side} scene ({gib:.2f} GiB) in {time.perf_counter() - t0:.0f} s")
            cmd = [
                sys.executable,
                os.path.abspath(__file__),
                "--child",
                "--ckpt",
                str(ckpt),
                "--input",
                str(scene),
                "--output",
                str(root / f"map_{side}.tif"),
                "--tile",
                str(args.tile),
                "--batch-size",
                str(args.batch_size),
                "--threads",
                str(args.threads),
            ]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            r = results[side] = json.loads(out.strip().splitlines()[-1])
            r["scene_gib"] = gib
            print(
                f"{side:>5}×{side:<5} {r['pixels']:>10} px  {r['seconds']:8.1f} s  "
                f"{r['pixels_per_second']:9.0f} pixels/s  peak RSS {r['peak_rss_mib']:6.0f} MiB "
                f"(after imports {r['rss_before_mib']:.0f} MiB)"
            )
            scene.unlink()  # free the disk before the next scene
        small, large = results[args.small], results[args.large]
        print(
            f"large/small: {large['pixels'] / small['pixels']:.0f}× the pixels "
            f"({large['scene_gib'] / small['scene_gib']:.0f}× the file), "
            f"{large['peak_rss_mib'] / small['peak_rss_mib']:.2f}× the peak RSS; "
            f"peak above the imports: {small['peak_rss_mib'] - small['rss_before_mib']:.0f} "
            f"vs {large['peak_rss_mib'] - large['rss_before_mib']:.0f} MiB"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
