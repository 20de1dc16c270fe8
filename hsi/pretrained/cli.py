"""``python -m hsi.pretrained list | verify | evaluate | export``."""

from __future__ import annotations

import argparse
import sys

from hsi.errors import HsiError
from hsi.pretrained.export import evaluate_weights, export_main
from hsi.pretrained.index import load_index
from hsi.pretrained.weights import _DTYPES, PretrainedWeights, load_weights


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hsi.pretrained",
        description="Shipped pretrained weights: list, verify, evaluate and export them.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="the shipped weights")
    sub.add_parser("verify", help="check every listed file's sha256 and that it loads")
    ev = sub.add_parser("evaluate", help="re-measure a weight on its split's test pixels")
    ev.add_argument("name", help="model/tag or tag, or a weight file")
    ev.add_argument("--root", help="data root (default $HSI_DATA)")
    ev.add_argument("--split", help="another split file than the recorded one")
    ev.add_argument(
        "--dataset",
        help="restoration weights: a registered scene to measure them on, whole (default: "
        "the test region of the scene they were trained on)",
    )
    ev.add_argument("--seed", type=int, default=0, help="restoration: the test noise's seed")
    ex = sub.add_parser("export", help="write a weight file from a `hsi fit` checkpoint")
    ex.add_argument("--ckpt", required=True, help="the .ckpt of a `hsi fit` run")
    ex.add_argument("--tag", required=True, help="short name, e.g. indian_pines")
    ex.add_argument("--dtype", default="float16", choices=sorted(_DTYPES))
    ex.add_argument("--out", help="folder (default: the checkpoints folder)")
    ex.add_argument("--split", help="split file to record (default: the checkpoint's)")
    ex.add_argument("--root", help="data root for the evaluation (default $HSI_DATA)")
    ex.add_argument("--no-evaluate", action="store_true", help="do not measure metrics")
    args = parser.parse_args(argv)
    try:
        if args.command == "list":
            for e in load_index():
                shown = {k: v for k, v in e.metrics.items() if not k.endswith(("MSSIM", "SAM"))}
                m = ", ".join(f"{k} {v:.2f}" for k, v in shown.items())
                leak = "leaky" if e.leaky else "leak-free"
                print(f"{e.name:32s} {e.dataset} {e.protocol} ({leak}) {e.dtype}  {m}")
        elif args.command == "verify":
            for e in load_index():
                load_weights(e.name)
                print(f"ok {e.name} {e.file} sha256 {e.sha256[:16]}…")
        elif args.command == "evaluate":
            weights = load_weights(args.name)
            if weights.task == "restoration":
                return _evaluate_restoration(weights, args)
            result = evaluate_weights(weights, root=args.root, split_file=args.split)
            print(
                f"{weights.name}: {result['part']} pixels {result['pixels']} of "
                f"{result['split_file']}: OA {result['OA']:.4f} AA {result['AA']:.4f} "
                f"kappa {result['kappa']:.4f} ({result['seconds']:.1f} s)"
            )
            if weights.entry is not None and weights.entry.metrics:
                print(f"index.yaml: {weights.entry.metrics}")
        elif args.command == "export":
            return export_main(args)
    except HsiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def _evaluate_restoration(weights: PretrainedWeights, args: argparse.Namespace) -> int:
    from hsi.pretrained.restoration import evaluate_restoration, flat_metrics

    result = evaluate_restoration(weights, root=args.root, dataset=args.dataset, seed=args.seed)
    shape = "x".join(str(n) for n in result["shape"])
    print(
        f"{weights.name} on {result['dataset']} ({result['region']}; {shape}), noise seed "
        f"{result['seed']}, {result['seconds']:.1f} s: MPSNR / MSSIM / SAM (degrees)"
    )
    for case, scores in result["cases"].items():
        ours, ref = scores["restored"], scores["reference"]
        print(
            f"  {case}: {ours['MPSNR']:.2f} / {ours['MSSIM']:.4f} / {ours['SAM']:.3f}  "
            f"({result['reference']}: {ref['MPSNR']:.2f} / {ref['MSSIM']:.4f} / "
            f"{ref['SAM']:.3f})"
        )
    if (
        weights.entry is not None
        and weights.entry.metrics
        and args.dataset is None
        and args.seed == 0
    ):
        same = flat_metrics(result) == weights.entry.metrics
        print(f"index.yaml: {'the same' if same else weights.entry.metrics}")
    return 0
