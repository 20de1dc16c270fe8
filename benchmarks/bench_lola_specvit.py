"""LoLA-SpecViT training-step time and parameter counts: training from scratch vs LoRA fine-tuning.

Why: the paper sells LoRA fine-tuning by its trainable-parameter cut ("over 80%"); this script
reports the counts of the paper-size model (15 PCA bands, 15×15 patches, 16 classes) and the
time of one AdamW training step (forward, backward, optimizer) at the paper's batch size in
both modes, in the same process, with the LoRA step's time as a ratio of the full step's.
On the CPU it also times the full step with PyTorch's default (per-tensor) AdamW beside the
fused one that hsi's tasks use there (``hsi.tasks.training.cpu_fused``), as a ratio.
Random inputs: the time does not depend on the data. Usage::

    OMP_NUM_THREADS=2 python benchmarks/bench_lola_specvit.py --batch 32 --repeats 3
    python benchmarks/bench_lola_specvit.py --device cuda --repeats 20
"""

from __future__ import annotations

import argparse

import torch
from timing import timed

from hsi.models.registry import create_model
from hsi.nn import count_parameters, mark_only_lora_trainable
from hsi.tasks.training import make_optimizer


def step_fn(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, default: bool = False):
    """One AdamW step over the model's trainable parameters: the optimizer hsi's tasks build
    (fused on the CPU), or with ``default`` PyTorch's default implementation."""
    params = [p for p in model.parameters() if p.requires_grad]
    if default:
        opt = torch.optim.AdamW(params, lr=2e-5, weight_decay=0.01)
    else:
        opt = make_optimizer(params, "adamw", lr=2e-5, weight_decay=0.01)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    torch.manual_seed(0)
    model = create_model("lola_specvit", in_bands=15, num_classes=16, patch_size=15)
    model = model.to(args.device).train()
    x = torch.randn(args.batch, 15, 15, 15, device=args.device)
    y = torch.randint(0, 16, (args.batch,), device=args.device)
    print(f"device {args.device}, threads {torch.get_num_threads()}, batch {args.batch}")

    total, trainable = count_parameters(model)
    full = timed(step_fn(model, x, y), args.repeats, args.device)
    print(f"full:  {total:,} parameters, {trainable:,} trainable, {full:.2f} s/step")
    if args.device == "cpu":
        default = timed(step_fn(model, x, y, default=True), args.repeats, args.device)
        print(
            f"full, PyTorch's default AdamW: {default:.2f} s/step (the fused step takes "
            f"{full / default:.2f}x its time)"
        )
        params = [p for p in model.parameters() if p.requires_grad]
        fused = make_optimizer(params, "adamw", lr=2e-5, weight_decay=0.01)
        plain = torch.optim.AdamW(params, lr=2e-5, weight_decay=0.01)
        update_fused = timed(fused.step, args.repeats, args.device)
        update_plain = timed(plain.step, args.repeats, args.device)
        print(
            f"AdamW update alone: fused {update_fused:.2f} s, default {update_plain:.2f} s "
            f"({update_plain / update_fused:.1f}x)"
        )

    mark_only_lora_trainable(model, train_head="head")
    total, trainable = count_parameters(model)
    lora = timed(step_fn(model, x, y), args.repeats, args.device)
    print(
        f"lora:  {total:,} parameters, {trainable:,} trainable "
        f"({100 * (1 - trainable / total):.1f}% fewer), {lora:.2f} s/step "
        f"({lora / full:.2f}x the full step's time)"
    )


if __name__ == "__main__":
    main()
