"""Window attention on ``scaled_dot_product_attention`` vs the explicit softmax formula.

Why: ``hsi.nn.attention.WindowAttention`` hands the relative-position bias (and the
padding mask) to PyTorch's SDPA so that CUDA can use a fused kernel; this script measures
that path against ``attention_reference`` (``softmax(QKᵀ/√d + bias)V`` written out) inside
the same module, forward and forward+backward, and checks that both agree.

Defaults are a Swin-T stage-1 block on a 14×14 token grid (dim 96, 3 heads, 7×7
windows); ``--grid 15`` exercises the padded, masked path. Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_attention.py
    OMP_NUM_THREADS=1 python benchmarks/bench_attention.py --grid 15 --batch 32
    python benchmarks/bench_attention.py --device cuda --batch 256
"""

from __future__ import annotations

import argparse

import torch
from timing import timed

from hsi.nn.attention import WindowAttention


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--grid", type=int, nargs="+", default=[14, 15])
    parser.add_argument("--dim", type=int, default=96)
    parser.add_argument("--heads", type=int, default=3)
    parser.add_argument("--window", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    torch.manual_seed(0)
    module = WindowAttention(args.dim, args.heads, window=args.window, pad=True)
    module = module.to(args.device).eval()
    print(
        f"device={args.device} threads={torch.get_num_threads()} batch={args.batch} "
        f"dim={args.dim} heads={args.heads} window={args.window} repeats={args.repeats} "
        f"(median seconds)"
    )
    print(
        f"{'grid':>5} {'padded':>6} {'max|err|':>9} {'fwd ref':>9} {'fwd sdpa':>9} {'ratio':>6} "
        f"{'f+b ref':>9} {'f+b sdpa':>9} {'ratio':>6}"
    )
    for grid in args.grid:
        x = torch.randn(args.batch, grid, grid, args.dim, device=args.device)
        with torch.no_grad():
            err = (module(x) - module(x, reference=True)).abs().max().item()

        def fwd(reference: bool, x: torch.Tensor = x) -> None:
            with torch.no_grad():
                module(x, reference=reference)

        def fwd_bwd(reference: bool, x: torch.Tensor = x) -> None:
            module.zero_grad(set_to_none=True)
            module(x.requires_grad_(), reference=reference).sum().backward()

        times = [
            timed(lambda f=f, r=r: f(r), args.repeats, args.device)
            for f in (fwd, fwd_bwd)
            for r in (True, False)
        ]
        padded = grid % args.window != 0
        print(
            f"{grid:>5} {padded!s:>6} {err:>9.1e} {times[0]:>9.4f} {times[1]:>9.4f} "
            f"{times[0] / times[1]:>6.2f} {times[2]:>9.4f} {times[3]:>9.4f} "
            f"{times[2] / times[3]:>6.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
