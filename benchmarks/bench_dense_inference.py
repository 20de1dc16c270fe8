"""Dense (fully-convolutional) vs per-pixel-patch HybridSN inference on one scene.

Why: per-pixel patches repeat the convolutions of overlapping neighbourhoods about
``(patch − 8)²`` times; ``HybridSN.forward_dense`` computes them once per window. This
script measures what that buys on a random preprocessed scene (the paper's setting by
default: 30 PCA bands, 16 classes, 25×25 patches), and checks both give the same map.

Each mode runs in its own child process so that its peak RSS (``resource.getrusage``) is
its own. Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_dense_inference.py --size 32
    python benchmarks/bench_dense_inference.py --height 128 --width 96 --device cuda
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn


def _peak_rss_mib() -> float:
    # ru_maxrss is KiB on Linux (bytes on macOS)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


class _PatchOnly(nn.Module):
    """HybridSN without forward_dense: classify_cube then cuts one patch per pixel."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.inner = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)


def run_mode(args: argparse.Namespace) -> dict:
    """One timed run of ``classify_cube`` in this process; returns its numbers."""
    from hsi.data.patches import pad_cube
    from hsi.inference import classify_cube
    from hsi.models.hybridsn import HybridSN

    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    scene = rng.standard_normal((args.bands, args.height, args.width)).astype(np.float32)
    padded = pad_cube(scene, args.patch // 2, "reflect")
    device = torch.device(args.device)
    net = HybridSN(args.bands, args.classes, args.patch).to(device).eval()
    model = net if args.mode == "dense" else _PatchOnly(net)
    rss_before = _peak_rss_mib()  # imports, model and scene: the same for both modes
    # warm-up on a small corner (allocator, cuDNN algorithm choice), not timed
    classify_cube(model, padded[:, : args.patch + 3, : args.patch + 3], args.patch, device=device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    probs = classify_cube(model, padded, args.patch, batch_size=args.batch_size, device=device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    pixels = args.height * args.width
    np.save(args.save, probs.numpy())
    result = {
        "mode": args.mode,
        "seconds": seconds,
        "pixels_per_second": pixels / seconds,
        "peak_rss_mib": _peak_rss_mib(),
        "rss_before_mib": rss_before,
    }
    if device.type == "cuda":
        result["peak_cuda_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--height", type=int, default=64)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--size", type=int, help="square scene side (sets height and width)")
    parser.add_argument("--bands", type=int, default=30)
    parser.add_argument("--classes", type=int, default=16)
    parser.add_argument("--patch", type=int, default=25)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mode", choices=["dense", "patch"], help=argparse.SUPPRESS)
    parser.add_argument("--save", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.size:
        args.height = args.width = args.size
    if args.mode:  # child process
        print(json.dumps(run_mode(args)))
        return 0

    print(
        f"HybridSN {args.bands} bands, {args.classes} classes, patch {args.patch}; scene "
        f"{args.height}×{args.width}; batch {args.batch_size}; device {args.device}; "
        f"torch threads {torch.get_num_threads()}"
    )
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("dense", "patch"):
            save = str(Path(tmp) / f"{mode}.npy")
            child = list(argv if argv is not None else sys.argv[1:])
            cmd = [sys.executable, __file__, *child, "--mode", mode, "--save", save]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            results[mode] = json.loads(out.strip().splitlines()[-1])
            results[mode]["probs"] = np.load(save)
    for mode in ("dense", "patch"):
        r = results[mode]
        extra = f", peak CUDA {r['peak_cuda_mib']:.0f} MiB" if "peak_cuda_mib" in r else ""
        print(
            f"{mode:>5}: {r['seconds']:8.2f} s  {r['pixels_per_second']:10.1f} pixels/s  "
            f"peak RSS {r['peak_rss_mib']:.0f} MiB (before the run {r['rss_before_mib']:.0f})"
            f"{extra}"
        )
    dense, patch = results["dense"], results["patch"]
    diff = float(np.abs(dense["probs"] - patch["probs"]).max())
    same = float((dense["probs"].argmax(0) == patch["probs"].argmax(0)).mean())
    print(f"speed-up dense / patch: {dense['pixels_per_second'] / patch['pixels_per_second']:.1f}×")
    print(f"max |Δ probability| {diff:.2e}; identical class for {100 * same:.2f}% of pixels")
    return 0


if __name__ == "__main__":
    sys.exit(main())
