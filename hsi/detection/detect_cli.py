"""``hsi detect``: classical target detection over a whole scene, GeoJSON points out.

For users who have a target spectrum and no trained detector::

    hsi detect --input scene.tif --library targets.csv --detector ace --threshold 0.3 \\
        --output detections.geojson [--target steel] [--scores ace.tif]

The library CSV (``wavelength_nm,<name>,...``) is resampled to the scene's bands when both
have wavelengths (else the band counts must agree). The scene is read in row strips twice:
once to accumulate background statistics (mean, covariance, correlation over every valid
pixel), once to score; only the 2-D score map is held whole. Local maxima above the
threshold, at least ``--min-distance`` pixels apart, become points in the scene's CRS.
Outputs are written atomically; an existing file is refused without ``--overwrite``.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np

from hsi.data.readers import read_cube
from hsi.data.writers import refuse_existing, write_geotiff
from hsi.detection.classical import StatsAccumulator, ace, adaptive_matched_filter, cem, rx
from hsi.detection.geojson import score_peaks, write_detections_geojson
from hsi.detection.simulator import read_spectral_library
from hsi.errors import ConfigError

DETECTORS = {"ace": ace, "amf": adaptive_matched_filter, "cem": cem, "rx": None}


def _strips(height: int, rows: int) -> list[tuple[int, int]]:
    return [(r, min(r + rows, height)) for r in range(0, height, rows)]


def detect_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="hsi detect", description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", required=True, help="GeoTIFF/ENVI/.mat/.npy scene")
    parser.add_argument("--output", required=True, help="the .geojson file to write")
    parser.add_argument("--detector", choices=sorted(DETECTORS), default="ace")
    parser.add_argument("--library", help="CSV spectral library (not needed for rx)")
    parser.add_argument("--target", action="append", help="library column(s); default all")
    parser.add_argument("--threshold", type=float, required=True, help="minimum score")
    parser.add_argument("--min-distance", type=int, default=2, help="pixels between peaks")
    parser.add_argument("--max-detections", type=int, default=None)
    parser.add_argument("--scores", help="also write the score map(s) as a GeoTIFF")
    parser.add_argument("--strip-rows", type=int, default=256, help="rows read at a time")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    if not args.output.endswith((".geojson", ".json")):
        raise ConfigError(f"--output {args.output}: detections are written as .geojson")
    refuse_existing(Path(args.output), args.overwrite)
    if args.scores:
        refuse_existing(Path(args.scores), args.overwrite)

    probe = read_cube(args.input, window=((0, 1), (0, 1)))
    height, width = read_cube(args.input, bands=[0]).data.shape[1:]
    if args.detector == "rx":
        signatures = {"anomaly": None}
    else:
        if not args.library:
            raise ConfigError(f"--detector {args.detector} needs --library with target spectra")
        library = read_spectral_library(args.library, probe)
        wanted = args.target or list(library)
        unknown = [t for t in wanted if t not in library]
        if unknown:
            raise ConfigError(f"--target {unknown} not in the library; it has {list(library)}")
        signatures = {t: library[t] for t in wanted}

    strips = _strips(height, max(1, args.strip_rows))
    acc = StatsAccumulator(probe.data.shape[0])
    for r0, r1 in strips:
        acc.add(read_cube(args.input, window=((r0, r1), (0, width))))
    stats = acc.finish()
    maps = {name: np.full((height, width), np.nan) for name in signatures}
    for r0, r1 in strips:
        cube = read_cube(args.input, window=((r0, r1), (0, width)))
        for name, signature in signatures.items():
            if signature is None:
                maps[name][r0:r1] = rx(cube, stats)
            else:
                maps[name][r0:r1] = DETECTORS[args.detector](cube, signature, stats)

    detections = []
    for class_id, (name, scores) in enumerate(maps.items(), start=1):
        for d in score_peaks(
            scores, args.threshold, args.min_distance, args.max_detections, class_id
        ):
            detections.append(replace(d, class_name=name))
    detections.sort(key=lambda d: -d.score)
    if args.scores:
        write_geotiff(
            args.scores,
            np.stack(list(maps.values())).astype(np.float32),
            crs=probe.crs,
            transform=probe.transform,
            band_descriptions=[f"{args.detector}:{n}" for n in maps],
            overwrite=args.overwrite,
        )
    provenance = {
        "input": str(args.input),
        "detector": args.detector,
        "library": args.library,
        "targets": list(signatures),
        "threshold": args.threshold,
        "min_distance": args.min_distance,
    }
    write_detections_geojson(
        args.output,
        detections,
        probe.transform,
        probe.crs,
        overwrite=args.overwrite,
        provenance=provenance,
    )
    print(f"wrote {args.output}: {len(detections)} detections ({args.detector})")
    return 0
