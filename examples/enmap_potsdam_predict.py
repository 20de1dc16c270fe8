"""Real-scene example: classify the EnMAP Potsdam mosaic and check the map against the
land-cover reference.

Steps (after `hsi fit --config configs/hybridsn/enmap_potsdam_disjoint.yaml`):
1. `hsi predict` runs the checkpoint over the 18 GeoTIFF tiles (mosaicked window by window);
2. the map's CRS and transform are compared with the tiles' mosaic grid;
3. agreement with the land-cover raster is measured on the *test* pixels of the run's split
   (never seen in training, outside every training patch) and, for information only, on all
   labelled pixels (which include the training pixels).

Usage:
    python examples/enmap_potsdam_predict.py --ckpt runs/.../checkpoints/best-epochNNN.ckpt \
        --split runs/.../split.json --out enmap_potsdam_map.tif [--root ../shared/data]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import rasterio

from hsi.data.protocols import Split
from hsi.data.registry import load_dataset, resolve_root
from hsi.inference import predict_scene


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", required=True)
    parser.add_argument("--split", required=True, help="split.json of the training run")
    parser.add_argument("--out", default="enmap_potsdam_map.tif")
    parser.add_argument("--root", default=None)
    args = parser.parse_args()

    scene = load_dataset("enmap_potsdam", root=args.root)
    tiles = [str(p) for p in scene.image_files]
    summary = predict_scene(args.ckpt, tiles, args.out, overwrite=True, progress=False)

    with rasterio.open(args.out) as dst:
        predicted = dst.read(1).astype(np.int64)
        same_grid = dst.crs == scene.cube.crs and dst.transform == scene.cube.transform
        crs, transform = dst.crs, dst.transform
    split = Split.load(args.split, fingerprint=scene.fingerprint)
    labels = scene.labels
    test = split.assignment == 3
    labelled = labels > 0

    landcover = resolve_root(args.root) / "enmap_potsdam" / "enmap_landcover_unstyled.tif"
    with rasterio.open(landcover) as ref:
        window = rasterio.windows.from_bounds(
            *rasterio.transform.array_bounds(predicted.shape[0], predicted.shape[1], transform),
            transform=ref.transform,
        )
        reference = ref.read(1, window=window.round_offsets().round_lengths()).astype(np.int64)

    result = {
        "map": args.out,
        "crs": str(crs),
        "transform_equals_mosaic": bool(same_grid),
        "pixels_per_second": summary.get("pixels_per_second"),
        "reference_equals_registry_labels": bool(np.array_equal(reference, labels)),
        "agreement_test_pixels_%": float(100 * (predicted[test] == labels[test]).mean()),
        "test_pixels": int(test.sum()),
        "agreement_all_labelled_%_includes_training": float(
            100 * (predicted[labelled] == labels[labelled]).mean()
        ),
        "labelled_pixels": int(labelled.sum()),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
