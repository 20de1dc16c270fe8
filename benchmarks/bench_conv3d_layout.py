"""A classifier's CPU training step: PyTorch's default memory layout against channels_last_3d.

Why: on the CPU, oneDNN may run 3-D convolutions faster on channels-last (NDHWC) tensors.
HybridSN spends most of its time in three Conv3d layers and one Conv2d layer; LoLA-SpecViT
and VP-Hype have a Conv3d stem before their transformer. Whether the whole training step
gains depends on the layout conversions around those layers, so this times the whole step
(forward, backward and an AdamW update) on batches of their configs' patch size, with the
Conv3d weights in the default layout and in ``channels_last_3d``.

Each candidate is timed as the process's CPU time per step (``time.process_time``) as well
as wall time. On a machine that other jobs share, the wall time also counts the time those
jobs hold the core; the CPU time leaves that out, though those jobs still slow it through
shared caches and memory (on the 2-core development machine the ratio ranged from 1.05 to
1.23 over 8 runs). The candidates are interleaved (default, channels-last, default, ...)
and the fastest of ``--repeats`` steps is kept for each. Both candidates start from the
same weights, in eval mode (so dropout does not make them differ), and their first-step
losses are checked to agree. Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_conv3d_layout.py --batch 64 --repeats 6
    OMP_NUM_THREADS=1 python benchmarks/bench_conv3d_layout.py --model vp_hype
"""

from __future__ import annotations

import argparse
import time

import torch

from hsi import create_model

# the configs' PCA components and patch size per model
SHAPES = {"hybridsn": (30, 25), "lola_specvit": (15, 15), "vp_hype": (15, 15)}


def _step(model: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor):
    opt.zero_grad(set_to_none=True)
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    return loss.detach()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(SHAPES), default="hybridsn")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--bands", type=int, help="PCA components (default: the config's)")
    parser.add_argument("--patch", type=int, help="patch size (default: the config's)")
    parser.add_argument("--classes", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=6)
    args = parser.parse_args()
    bands, patch = SHAPES[args.model]
    args.bands, args.patch = args.bands or bands, args.patch or patch

    torch.manual_seed(0)
    x = torch.randn(args.batch, args.bands, args.patch, args.patch)
    y = torch.randint(0, args.classes, (args.batch,))
    kwargs = {"in_bands": args.bands, "num_classes": args.classes, "patch_size": args.patch}
    default = create_model(args.model, **kwargs)
    last = create_model(args.model, **kwargs)
    last.load_state_dict(default.state_dict())
    for module in last.modules():  # the Conv3d weights only: the format is 5-D
        if isinstance(module, torch.nn.Conv3d):
            module.to(memory_format=torch.channels_last_3d)
    # one input for both: the models add the unit channel, and (N, 1, D, H, W) is
    # channels-last already
    candidates = {
        "default": (default, torch.optim.AdamW(default.parameters(), lr=1e-3)),
        "channels_last_3d": (last, torch.optim.AdamW(last.parameters(), lr=1e-3)),
    }
    for model, _ in candidates.values():
        model.eval()  # no dropout: both candidates compute the same function
    losses = {name: float(_step(*c, x, y)) for name, c in candidates.items()}  # warm-up
    print(f"first-step loss: {losses}")
    if abs(losses["default"] - losses["channels_last_3d"]) > 1e-4 * abs(losses["default"]):
        raise SystemExit("the two layouts disagree: not comparable")

    wall = {name: float("inf") for name in candidates}
    cpu = dict(wall)
    for _ in range(args.repeats):
        for name, candidate in candidates.items():
            w0, c0 = time.perf_counter(), time.process_time()
            _step(*candidate, x, y)
            wall[name] = min(wall[name], time.perf_counter() - w0)
            cpu[name] = min(cpu[name], time.process_time() - c0)
    print(
        f"{args.model}: threads {torch.get_num_threads()}, batch {args.batch}, {args.bands} bands, "
        f"{args.patch}x{args.patch}; fastest of {args.repeats} steps (fwd + bwd + AdamW):"
    )
    for name in candidates:
        print(f"  {name:17s} wall {wall[name]:.3f} s   CPU {cpu[name]:.3f} s")
    print(
        f"  channels_last_3d speed-up: wall {wall['default'] / wall['channels_last_3d']:.2f}x, "
        f"CPU {cpu['default'] / cpu['channels_last_3d']:.2f}x"
    )


if __name__ == "__main__":
    main()
