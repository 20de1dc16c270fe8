"""``hsi predict --ckpt ... --input ...``: the command line of scene prediction."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from hsi.errors import HsiError
from hsi.inference.predict import predict_scene


def _format_summary(summary: dict[str, Any]) -> str:
    lines = [
        f"classified {summary['height']}×{summary['width']} pixels "
        f"({summary['valid_pixels']} with data) in {summary['seconds']:.1f} s "
        f"({summary['pixels_per_second']:.0f} pixels/s on {summary['device']})",
    ]
    for kind, path in summary["outputs"].items():
        lines.append(f"  {kind}: {path}")
    lines.append("  class histogram (pixels):")
    width = max([len(n) for n in summary["class_histogram"]] + [len("(no data)")])
    for name, count in summary["class_histogram"].items():
        lines.append(f"    {name:<{width}}  {count}")
    lines.append(f"    {'(no data)':<{width}}  {summary['nodata_pixels']}")
    return "\n".join(lines)


def scene_main(argv: list[str]) -> int:
    """``hsi predict --ckpt CKPT --input SCENE [SCENE ...] --output MAP.tif [...]``."""
    parser = argparse.ArgumentParser(
        prog="hsi predict",
        description="Classify every pixel of a scene (any size, read window by window) "
        "with a trained checkpoint; write a georeferenced GeoTIFF class map.",
    )
    parser.add_argument(
        "--ckpt",
        required=True,
        help="checkpoint written by `hsi fit` (.ckpt), an exported weight file (.pt), or "
        "shipped weights by name (indian_pines, hybridsn/indian_pines; "
        "`python -m hsi.pretrained list`)",
    )
    parser.add_argument(
        "--input",
        required=True,
        nargs="+",
        metavar="SCENE",
        help="GeoTIFF/VRT/ENVI file, or several GeoTIFF tiles of one scene (mosaicked)",
    )
    parser.add_argument("--output", required=True, metavar="MAP.tif", help="class map GeoTIFF")
    parser.add_argument("--tile", type=int, default=256, help="window side in pixels")
    parser.add_argument("--batch-size", type=int, default=256, help="bounds model memory")
    parser.add_argument(
        "--probabilities", action="store_true", help="also write <stem>_probabilities.tif"
    )
    parser.add_argument(
        "--confidence", action="store_true", help="also write <stem>_confidence.tif"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.add_argument("--no-quicklook", action="store_true", help="skip the <stem>.png")
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    # several processes (hsi.inference.distributed): the scene's windows shared out
    parser.add_argument(
        "--devices",
        type=int,
        help="processes (GPUs) per node; more than one in all shards the scene "
        "(default: torchrun's world, else 1)",
    )
    parser.add_argument("--num-nodes", type=int, help="nodes of a multi-node run (SLURM)")
    parser.add_argument(
        "--accelerator",
        choices=["auto", "cpu", "gpu"],
        default="auto",
        help="device kind of a multi-process run (--device is for one process)",
    )
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error argparse already printed
        return exc.code if isinstance(exc.code, int) else 2
    try:
        from hsi.inference import distributed as dist

        devices, nodes = args.devices, args.num_nodes
        if devices is None and nodes is None:
            devices, nodes = dist.launched_world() or (1, 1)
        inputs = args.input[0] if len(args.input) == 1 else args.input
        common = {
            "tile": args.tile,
            "batch_size": args.batch_size,
            "probabilities": args.probabilities,
            "confidence": args.confidence,
            "overwrite": args.overwrite,
            "quicklook": not args.no_quicklook,
            "progress": not args.no_progress,
        }
        if (devices or 1) * (nodes or 1) > 1:
            summary = dist.predict_scene_distributed(
                args.ckpt,
                inputs,
                args.output,
                devices=devices or 1,
                num_nodes=nodes or 1,
                accelerator=args.accelerator,
                **common,
            )
            if summary is None:  # a rank other than 0: rank 0 wrote the outputs
                return 0
            print(_format_summary(summary))
            return 0
        summary = predict_scene(args.ckpt, inputs, args.output, device=args.device, **common)
    except HsiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(_format_summary(summary))
    return 0
