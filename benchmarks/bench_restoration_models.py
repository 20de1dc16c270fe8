"""Forward time of the restoration models on one 128×128×200 tile (inference, no grad).

Why: the restoration task tiles whole scenes, so the time per tile of the default models
sets the cost of denoising / super-resolving a cube. HSDT-M denoises a 128×128 tile of 200
bands; ESSAformer (dim 256) super-resolves a 32×32×200 tile ×4 to 128×128×200. Bicubic
interpolation of the same tile is timed in the same run as the floor any learned
super-resolver is compared with. Parameter counts are printed next to the times.

Usage (from the repository root)::

    OMP_NUM_THREADS=2 python benchmarks/bench_restoration_models.py --repeats 3
    python benchmarks/bench_restoration_models.py --device cuda --repeats 10
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
import torch.nn.functional as F
from timing import timed

from hsi.models.essaformer import ESSAformer
from hsi.models.hsdt import HSDT


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bands", type=int, default=200)
    parser.add_argument("--tile", type=int, default=128)
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    torch.manual_seed(0)
    bands, tile, scale, device = args.bands, args.tile, args.scale, args.device
    noisy = torch.rand(1, bands, tile, tile, device=device)
    low = torch.rand(1, bands, tile // scale, tile // scale, device=device)
    print(
        f"device={device} threads={torch.get_num_threads()} tile={tile}x{tile}x{bands} "
        f"repeats={args.repeats} (median seconds, one untimed warm-up)"
    )

    hsdt = HSDT(in_bands=bands).to(device).eval()
    essa = ESSAformer(in_bands=bands, scale=scale).to(device).eval()

    def run(fn: Callable[[], object]) -> float:
        def call() -> None:
            with torch.no_grad():
                fn()

        return timed(call, args.repeats, device)

    rows = [
        ("hsdt denoise", hsdt, run(lambda: hsdt(noisy))),
        (f"essaformer x{scale}", essa, run(lambda: essa(low))),
        (
            f"bicubic x{scale}",
            None,
            run(lambda: F.interpolate(low, scale_factor=scale, mode="bicubic")),
        ),
    ]
    bicubic = rows[-1][2]
    print(f"{'model':<16} {'params':>11} {'seconds':>9} {'x bicubic':>10}")
    for name, model, seconds in rows:
        params = sum(p.numel() for p in model.parameters()) if model is not None else 0
        print(f"{name:<16} {params:>11,} {seconds:>9.3f} {seconds / bicubic:>10.0f}")


if __name__ == "__main__":
    main()
