"""``hsi simulate``: write a SPOD-style point-target dataset from a registry scene.

Example (training and test sets from the top and bottom halves of Indian Pines, target
spectra = class means of four labelled Indian Pines classes)::

    hsi simulate --dataset indian_pines --region 0:72,0:145 --n-images 400 --seed 0 \
        --classes Stone-Steel-Towers,Alfalfa,Oats,Grass-pasture-mowed --out sim/ip_train
    hsi simulate --dataset indian_pines --region 80:145,0:145 --n-images 100 --seed 1 \
        --classes Stone-Steel-Towers,Alfalfa,Oats,Grass-pasture-mowed --out sim/ip_test

The two regions are 8 rows apart, so no background pixel is shared.
"""

from __future__ import annotations

import argparse

from hsi.data.registry import load_dataset
from hsi.detection.simulator import (
    SimulationSpec,
    library_from_labels,
    read_spectral_library,
    simulate,
)
from hsi.errors import ConfigError


def _region(text: str | None) -> tuple[int, int, int, int] | None:
    if text is None:
        return None
    try:
        rows, cols = text.split(",")
        r0, r1 = (int(v) for v in rows.split(":"))
        c0, c1 = (int(v) for v in cols.split(":"))
    except ValueError:
        raise ConfigError(f"--region {text!r}: expected ROW0:ROW1,COL0:COL1") from None
    return r0, r1, c0, c1


def simulate_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="hsi simulate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True, help="registry name, e.g. indian_pines")
    parser.add_argument("--root", default=None, help="data root (else $HSI_DATA)")
    parser.add_argument("--classes", default=None, help="comma-separated class names")
    parser.add_argument("--library", default=None, help="CSV spectral library instead")
    parser.add_argument("--out", required=True)
    parser.add_argument("--region", default=None, help="ROW0:ROW1,COL0:COL1 of the scene")
    parser.add_argument("--n-images", type=int, default=100)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--targets-per-image", default="1:6", help="MIN:MAX")
    parser.add_argument("--sizes", default="0.25,0.5,1,2,3", help="target sides in pixels")
    parser.add_argument("--abundance", default="0.5:1.0", help="MIN:MAX")
    parser.add_argument("--snr-db", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--boxes",
        choices=("pixel", "exact"),
        default="pixel",
        help="pixel (default, as SPOD): a target's box is the bounding box of the pixels it "
        "touches; exact: its footprint square, fractional for sub-pixel targets",
    )
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    if (args.classes is None) == (args.library is None):
        raise ConfigError("give exactly one of --classes (class-mean spectra) or --library (CSV)")
    scene = load_dataset(args.dataset, root=args.root)
    if args.library:
        library = read_spectral_library(args.library, scene.cube)
    else:
        names = [c.strip() for c in args.classes.split(",") if c.strip()]
        library = library_from_labels(scene.cube, scene.labels, scene.class_names, names)
    try:
        lo, hi = (int(v) for v in args.targets_per_image.split(":"))
        a0, a1 = (float(v) for v in args.abundance.split(":"))
        sizes = tuple(float(v) for v in args.sizes.split(","))
    except ValueError:
        raise ConfigError("--targets-per-image, --abundance: MIN:MAX; --sizes: a,b,c") from None
    spec = SimulationSpec(
        n_images=args.n_images,
        image_size=args.image_size,
        targets_per_image=(lo, hi),
        sizes=sizes,
        abundance=(a0, a1),
        snr_db=args.snr_db,
        region=_region(args.region),
        seed=args.seed,
        boxes=args.boxes,
    )
    stats = simulate(scene.cube, library, spec, args.out, overwrite=args.overwrite)
    print(f"wrote {args.out}: {stats.summary()}")
    return 0
