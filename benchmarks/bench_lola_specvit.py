"""LoLA-SpecViT training-step time and parameter counts: training from scratch vs LoRA fine-tuning.

Why: the paper sells LoRA fine-tuning by its trainable-parameter cut ("over 80%"); this script
reports the counts of the paper-size model (15 PCA bands, 15×15 patches, 16 classes) and the
time of one AdamW training step (forward, backward, optimizer) at the paper's batch size in
both modes, in the same process, with the LoRA step's time as a ratio of the full step's.
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


def step_fn(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor):
    """One AdamW step over the model's trainable parameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=2e-5, weight_decay=0.01)

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
