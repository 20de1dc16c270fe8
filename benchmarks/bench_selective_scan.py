"""Selective-scan backends against the step-by-step reference, forward and forward+backward.

Why: ``hsi.nn.selective_scan`` offers a time-blocked chunked scan in plain PyTorch (for
CPUs and for GPUs without ``mamba_ssm``) next to the step loop that is its ground truth;
this script measures what the chunked scan buys at each sequence length and batch width
(and what ``auto`` picks), and on CUDA also times hsi's Triton kernels and the ``mamba_ssm``
kernel when it is installed. Every timed backend is first checked against the reference (max
abs difference printed).

Times are the fastest of ``--repeats`` runs after one warm-up, and the candidates are
interleaved (reference, backend, reference, ...) rather than timed one after the other:
on a shared machine a burst of someone else's load then hits all of them alike, and the
minimum is the run least disturbed by it. ``fwd`` runs under ``torch.no_grad()``
(inference); ``fwd+bwd`` backpropagates a random upstream gradient to
``u, delta, A, B, C, D, z``. Inputs follow the Mamba block (softplus Δ with a bias, D, z).
The ``exp floor`` line times the ``B·D·L·N`` exponentials ``exp(Δ·A)`` that every
implementation must compute, with ``torch.exp`` on a cache-resident tile (2^15 elements,
reused), i.e. at its compute-bound rate with no memory traffic, in the same interleaved
run: ``reference / floor`` bounds the forward speed-up of any implementation, fused or
not, that evaluates those exponentials at ``torch.exp``'s speed.
``--previous FILE`` also times ``selective_scan_chunked`` from an older
copy of ``hsi/nn/selective_scan.py`` (``git show HEAD:hsi/nn/selective_scan.py > old.py``),
giving a before/after in the same run. Usage::

    OMP_NUM_THREADS=2 python benchmarks/bench_selective_scan.py --batch 1 64 --lengths 64 256
    OMP_NUM_THREADS=2 python benchmarks/bench_selective_scan.py --previous /tmp/old.py
    python benchmarks/bench_selective_scan.py --device cuda
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import time
from collections.abc import Callable

import torch

from hsi.nn.selective_scan import mamba_ssm_available, selective_scan

Scan = Callable[..., torch.Tensor]


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


def _scan_fn(backend: str, chunk: int) -> Scan:
    return functools.partial(selective_scan, backend=backend, chunk_size=chunk)


def _previous_chunked(path: str) -> Scan:
    """``selective_scan_chunked`` of an older copy of the module, loaded from ``path``."""
    spec = importlib.util.spec_from_file_location("previous_selective_scan", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"--previous: cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.selective_scan_chunked


def _forward(tensors: dict, scan: Scan) -> torch.Tensor:
    return scan(**tensors, delta_softplus=True)


def _forward_backward(tensors: dict, grad: torch.Tensor, scan: Scan) -> None:
    leaves = {k: v.detach().requires_grad_(k != "delta_bias") for k, v in tensors.items()}
    (_forward(leaves, scan) * grad).sum().backward()


def _exp_floor(tile: torch.Tensor, times: int) -> None:
    """``times`` exponentials of an in-cache ``tile`` (into a reused output)."""
    out = torch.empty_like(tile)
    for _ in range(times):
        torch.exp(tile, out=out)


def _interleaved(fns: dict[str, Callable[[], object]], repeats: int, device: str) -> dict:
    """Fastest wall time of each function, running them in turn ``repeats`` times."""
    for fn in fns.values():
        fn()  # warm-up (allocator, kernels), not timed
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(repeats):
        for name, fn in fns.items():
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            fn()
            if device == "cuda":
                torch.cuda.synchronize()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[64])
    parser.add_argument("--dim", type=int, default=64, help="channels D (Mamba's d_inner)")
    parser.add_argument("--state", type=int, default=16, help="state size N")
    parser.add_argument("--lengths", type=int, nargs="+", default=[64, 128, 256, 512, 1024])
    parser.add_argument("--chunk-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--previous", help="older selective_scan.py to time as 'previous'")
    args = parser.parse_args()

    scans = {"chunked": _scan_fn("chunked", args.chunk_size), "auto": _scan_fn("auto", 32)}
    if args.previous:
        scans["previous"] = functools.partial(
            _previous_chunked(args.previous), chunk_size=args.chunk_size
        )
    if args.device == "cuda" and mamba_ssm_available():
        scans["mamba_ssm"] = _scan_fn("mamba_ssm", args.chunk_size)
    if args.device == "cuda" and importlib.util.find_spec("triton") is not None:
        scans["triton"] = _scan_fn("triton", args.chunk_size)  # hsi's own kernels
    reference = _scan_fn("reference", 0)
    print(
        f"device={args.device} threads={torch.get_num_threads()} D={args.dim} N={args.state} "
        f"chunk={args.chunk_size} repeats={args.repeats} (fastest of repeats, seconds; "
        f"ratio = reference time / backend time)"
    )
    print(
        f"{'B':>4} {'L':>5} {'backend':>9} {'max|err|':>9} "
        f"{'fwd ref':>9} {'fwd':>8} {'ratio':>6} {'f+b ref':>9} {'f+b':>8} {'ratio':>6}"
    )
    for batch in args.batch:
        for length in args.lengths:
            t = _inputs(batch, args.dim, args.state, length, args.device)
            grad = torch.randn(batch, args.dim, length, device=args.device)
            every = {"reference": reference, **scans}
            with torch.no_grad():
                ref_out = _forward(t, reference)
                errs = {n: (_forward(t, f) - ref_out).abs().max().item() for n, f in scans.items()}
            n_exp = batch * args.dim * length * args.state
            tile = -torch.rand(min(n_exp, 1 << 15), device=args.device)
            exp_floor = functools.partial(_exp_floor, tile, -(-n_exp // tile.numel()))
            fwd = _interleaved(
                {
                    **{
                        n: functools.partial(torch.no_grad()(_forward), t, f)
                        for n, f in every.items()
                    },
                    "exp floor": exp_floor,
                },
                args.repeats,
                args.device,
            )
            fwd_bwd = _interleaved(
                {n: functools.partial(_forward_backward, t, grad, f) for n, f in every.items()},
                args.repeats,
                args.device,
            )
            for name in scans:
                print(
                    f"{batch:>4} {length:>5} {name:>9} {errs[name]:>9.1e} "
                    f"{fwd['reference']:>9.4f} {fwd[name]:>8.4f} "
                    f"{fwd['reference'] / fwd[name]:>6.2f} "
                    f"{fwd_bwd['reference']:>9.4f} {fwd_bwd[name]:>8.4f} "
                    f"{fwd_bwd['reference'] / fwd_bwd[name]:>6.2f}",
                    flush=True,
                )
            floor = fwd["exp floor"]
            print(
                f"{batch:>4} {length:>5} exp floor {floor:.4f} s: reference fwd / floor = "
                f"{fwd['reference'] / floor:.2f} (forward ceiling)",
                flush=True,
            )


if __name__ == "__main__":
    main()
