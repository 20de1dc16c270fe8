"""Selective-scan backends against the step-by-step reference, forward and forward+backward.

Why: ``hsi.nn.selective_scan`` offers a chunked closed form in plain PyTorch (for CPUs and
for GPUs without ``mamba_ssm``) next to the step loop that is its ground truth; this script
measures what the chunked form buys at each sequence length and batch width, and on CUDA
also times the ``mamba_ssm`` kernel when it is installed. Every timed backend is first
checked against the reference (max abs difference printed).

Times are the median of ``--repeats`` runs after one warm-up. ``fwd`` runs under
``torch.no_grad()`` (inference); ``fwd+bwd`` backpropagates a random upstream gradient to
``u, delta, A, B, C, D, z``. Inputs follow the Mamba block (softplus Δ with a bias, D, z).
Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_selective_scan.py
    OMP_NUM_THREADS=1 python benchmarks/bench_selective_scan.py --batch 1 4 64 --lengths 256
    python benchmarks/bench_selective_scan.py --device cuda
"""

from __future__ import annotations

import argparse
import functools

import torch
from timing import timed

from hsi.nn.selective_scan import mamba_ssm_available, selective_scan


def _inputs(batch: int, dim: int, n_state: int, length: int, device: str) -> dict:
    gen = torch.Generator().manual_seed(0)
    t = {
        "u": torch.randn(batch, dim, length, generator=gen),
        "delta": torch.randn(batch, dim, length, generator=gen) * 0.5,
        # Mamba's initial A = −(1..N) and Δ in [1e-3, 1e-1]: the typical operating point
        "A": -torch.arange(1.0, n_state + 1).expand(dim, n_state).contiguous(),
        "B": torch.randn(batch, n_state, length, generator=gen),
        "C": torch.randn(batch, n_state, length, generator=gen),
        "D": torch.ones(dim),
        "z": torch.randn(batch, dim, length, generator=gen),
        "delta_bias": torch.log(torch.expm1(torch.logspace(-3, -1, dim))),
    }
    return {k: v.to(device) for k, v in t.items()}


def _forward(tensors: dict, backend: str, chunk: int) -> torch.Tensor:
    return selective_scan(
        **tensors,
        delta_softplus=True,
        backend=backend,
        chunk_size=chunk,  # type: ignore[arg-type]
    )


def _forward_backward(tensors: dict, grad: torch.Tensor, backend: str, chunk: int) -> None:
    leaves = {k: v.detach().requires_grad_(k != "delta_bias") for k, v in tensors.items()}
    (_forward(leaves, backend, chunk) * grad).sum().backward()


def _measure(
    tensors: dict, grad: torch.Tensor, backend: str, chunk: int, repeats: int, device: str
) -> tuple[float, float]:
    """(forward under no_grad, forward+backward) median seconds of one backend."""
    fwd = timed(
        functools.partial(torch.no_grad()(_forward), tensors, backend, chunk), repeats, device
    )
    fwd_bwd = timed(
        functools.partial(_forward_backward, tensors, grad, backend, chunk), repeats, device
    )
    return fwd, fwd_bwd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[64])
    parser.add_argument("--dim", type=int, default=64, help="channels D (Mamba's d_inner)")
    parser.add_argument("--state", type=int, default=16, help="state size N")
    parser.add_argument("--lengths", type=int, nargs="+", default=[64, 128, 256, 512, 1024])
    parser.add_argument("--chunk-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    backends = ["chunked"]
    if args.device == "cuda" and mamba_ssm_available():
        backends.append("mamba_ssm")
    print(
        f"device={args.device} threads={torch.get_num_threads()} D={args.dim} N={args.state} "
        f"chunk={args.chunk_size} repeats={args.repeats} (median seconds)"
    )
    header = f"{'B':>4} {'L':>5} {'backend':>9} {'max|err|':>9} " + " ".join(
        f"{m + ' ref':>12} {m:>10} {'ratio':>6}" for m in ("fwd", "fwd+bwd")
    )
    print(header)
    for batch in args.batch:
        for length in args.lengths:
            t = _inputs(batch, args.dim, args.state, length, args.device)
            grad = torch.randn(batch, args.dim, length, device=args.device)
            with torch.no_grad():
                ref_out = _forward(t, "reference", args.chunk_size)
            ref_fwd, ref_fb = _measure(t, grad, "reference", 0, args.repeats, args.device)
            for backend in backends:
                with torch.no_grad():
                    err = (_forward(t, backend, args.chunk_size) - ref_out).abs().max().item()
                fwd, fb = _measure(t, grad, backend, args.chunk_size, args.repeats, args.device)
                print(
                    f"{batch:>4} {length:>5} {backend:>9} {err:>9.1e} "
                    f"{ref_fwd:>12.4f} {fwd:>10.4f} {ref_fwd / fwd:>6.2f} "
                    f"{ref_fb:>12.4f} {fb:>10.4f} {ref_fb / fb:>6.2f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
