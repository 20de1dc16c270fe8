"""``hsi predict`` for detectors: a whole GeoTIFF/ENVI scene in, point detections as GeoJSON out.

The scene is read window by window (bounded memory: one tile of ``tile``×``tile`` pixels
at a time, plus its ``overlap`` margin). Each tile goes through the trained detector
(normalised as in training); a detection is kept only when its centre lies in the tile's
*core* — the run a tile shares with a neighbour is split at its middle, so the cores
partition the scene — and an object on a tile border is reported by exactly one tile,
with no cross-tile merging. Detections on no-data
pixels are dropped (no-data pixels are filled with the training mean before detection, so
they look like background). Points are mapped through the scene's affine transform into
its CRS and written atomically as GeoJSON. :func:`detect_cube` runs the same tiling loop
over an in-memory :class:`SpectralCube` and keeps each detection's box as well.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from hsi.data.cube import SpectralCube
from hsi.data.readers import read_cube
from hsi.data.writers import refuse_existing
from hsi.detection.geojson import PointDetection, write_detections_geojson
from hsi.errors import ConfigError, DataError
from hsi.tasks.checkpointing import load_task_checkpoint


def load_detection_task(checkpoint: str | os.PathLike, device: str = "cpu") -> Any:
    """The DetectionTask of an ``hsi fit`` checkpoint, in eval mode on ``device``."""
    from hsi.tasks.detection import DetectionTask

    path = Path(checkpoint).expanduser()
    task = load_task_checkpoint(
        DetectionTask,
        path,
        device,
        "detection",
        "pass a checkpoint written by `hsi fit` with a DetectionTask",
    )
    if task.normalization is None:
        raise ConfigError(f"{path} holds no normalisation: not a trained detection checkpoint")
    return task.eval()


def _axis_windows(n: int, tile: int, overlap: int) -> list[tuple[int, int, float, float]]:
    """Windows (start, stop) along one axis with their cores (lo, hi).

    Neighbouring windows share at least ``overlap`` pixels (the last one is moved back to
    end at the border, so it may share more); each shared run is split at its middle, so
    the cores tile the axis exactly.
    """
    if n <= tile:
        return [(0, n, 0.0, float(n))]
    starts = list(range(0, n - tile, tile - overlap)) + [n - tile]
    stops = [s + tile for s in starts]
    cuts = [0.0] + [(starts[i + 1] + stops[i]) / 2 for i in range(len(starts) - 1)] + [float(n)]
    return [(starts[i], stops[i], cuts[i], cuts[i + 1]) for i in range(len(starts))]


def _tiles(
    height: int, width: int, tile: int, overlap: int
) -> list[tuple[int, int, int, int, tuple[float, float, float, float]]]:
    """Tiles (row0, row1, col0, col1, core) covering the scene; cores partition it."""
    return [
        (r0, r1, c0, c1, (rlo, rhi, clo, chi))
        for r0, r1, rlo, rhi in _axis_windows(height, tile, overlap)
        for c0, c1, clo, chi in _axis_windows(width, tile, overlap)
    ]


@dataclass(frozen=True)
class SceneDetection:
    """A detection with its box in scene pixels: (row0, col0, row1, col1), continuous.

    The box is what a per-pixel score map needs (which pixels the detector says the
    object covers); :class:`PointDetection` keeps only its centre, which is what GeoJSON
    output needs.
    """

    point: PointDetection
    box: tuple[float, float, float, float]


WindowReader = Callable[[int, int, int, int], tuple[np.ndarray, np.ndarray]]


def _check_tiling(tile: int, overlap: int) -> None:
    if tile < 8 or not 0 <= overlap < tile // 2:
        raise ConfigError(f"need tile >= 8 and 0 <= overlap < tile/2, got {tile} and {overlap}")


def _detect_tiles(
    task: Any,
    read_window: WindowReader,
    shape: tuple[int, int],
    where: str,
    tile: int,
    overlap: int,
    score_threshold: float,
    progress: bool,
) -> list[SceneDetection]:
    """The tiling loop shared by files and in-memory cubes (see the module docstring).

    ``read_window(row0, row1, col0, col1)`` returns the window's (bands, h, w) data and
    its (h, w) valid-pixel mask; ``where`` names the scene in error messages.
    """
    height, width = shape
    mean = np.asarray(task.normalization["mean"], dtype=np.float32)[:, None, None]
    names = list(task.hparams.class_names or [])
    detections: list[SceneDetection] = []
    windows = _tiles(height, width, tile, overlap)
    for r0, r1, c0, c1, core in tqdm(windows, desc="detect", unit="tile", disable=not progress):
        data, valid = read_window(r0, r1, c0, c1)
        data = np.asarray(data, dtype=np.float32)
        if not np.isfinite(data[:, valid]).all():
            raise DataError(f"{where}: NaN or infinite values in rows {r0}-{r1}, cols {c0}-{c1}")
        data = np.where(valid[None], data, mean)
        with torch.no_grad():
            found = task.detect(data)
        rlo, rhi, clo, chi = core
        for (x0, y0, x1, y1), (x, y), score, label in zip(
            found["boxes"].cpu().numpy(),
            found["points"].cpu().numpy(),
            found["scores"].cpu().numpy(),
            found["labels"].cpu().numpy(),
            strict=True,
        ):
            row, col = r0 + float(y), c0 + float(x)
            if score < score_threshold or not (rlo <= row < rhi and clo <= col < chi):
                continue
            ri, ci = min(int(y), r1 - r0 - 1), min(int(x), c1 - c0 - 1)
            if not valid[ri, ci]:
                continue
            name = names[int(label)] if int(label) < len(names) else None
            point = PointDetection(row, col, float(score), int(label) + 1, name)
            box = (r0 + float(y0), c0 + float(x0), r0 + float(y1), c0 + float(x1))
            detections.append(SceneDetection(point, box))
    detections.sort(key=lambda d: -d.point.score)
    return detections


def _check_bands(task: Any, bands: int, where: str) -> None:
    in_bands = int(task.hparams.in_bands)
    if bands != in_bands:
        raise DataError(f"{where}: {bands} bands, but the detector was trained on {in_bands}")


def detect_scene(
    task: Any,
    scene: str | os.PathLike | list[str],
    tile: int = 64,
    overlap: int = 16,
    score_threshold: float = 0.3,
    progress: bool = True,
) -> tuple[list[PointDetection], Any, Any]:
    """Detections over a whole scene; returns them with the scene's transform and CRS."""
    _check_tiling(tile, overlap)
    probe = read_cube(scene, window=((0, 1), (0, 1)))
    _check_bands(task, probe.data.shape[0], str(scene))
    full = read_cube(scene, bands=[0])

    def read_window(r0: int, r1: int, c0: int, c1: int) -> tuple[np.ndarray, np.ndarray]:
        cube = read_cube(scene, window=((r0, r1), (c0, c1)))
        return cube.data, cube.valid_mask

    found = _detect_tiles(
        task,
        read_window,
        full.data.shape[1:],
        str(scene),
        tile,
        overlap,
        score_threshold,
        progress,
    )
    return [d.point for d in found], full.transform, full.crs


def detect_cube(
    task: Any,
    cube: SpectralCube,
    tile: int = 64,
    overlap: int = 16,
    score_threshold: float = 0.3,
    progress: bool = False,
) -> list[SceneDetection]:
    """Detections, with their boxes, over an in-memory cube (same tiling as detect_scene).

    For scenes that are already arrays (the real target scenes are ``.mat`` files read
    whole) and for evaluations that need boxes, not only points.
    """
    _check_tiling(tile, overlap)
    _check_bands(task, cube.bands, cube.source)
    valid = cube.valid_mask

    def read_window(r0: int, r1: int, c0: int, c1: int) -> tuple[np.ndarray, np.ndarray]:
        return cube.data[:, r0:r1, c0:c1], valid[r0:r1, c0:c1]

    return _detect_tiles(
        task,
        read_window,
        (cube.height, cube.width),
        cube.source,
        tile,
        overlap,
        score_threshold,
        progress,
    )


def detect_main(argv: list[str]) -> int:
    """``hsi predict --ckpt DET.ckpt --input SCENE.tif --output DETECTIONS.geojson``."""
    parser = argparse.ArgumentParser(
        prog="hsi predict",
        description="Detect point objects over a whole scene with a trained detection "
        "checkpoint; write them as GeoJSON points in the scene's CRS.",
    )
    parser.add_argument("--ckpt", required=True, help="a detection checkpoint from hsi fit")
    parser.add_argument("--input", required=True, nargs="+", help="GeoTIFF/ENVI scene or tiles")
    parser.add_argument("--output", required=True, help="the .geojson file to write")
    parser.add_argument("--tile", type=int, default=64, help="tile side in pixels")
    parser.add_argument("--overlap", type=int, default=16, help="pixels shared by neighbours")
    parser.add_argument("--score-threshold", type=float, default=0.3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if not args.output.endswith((".geojson", ".json")):
        raise ConfigError(f"--output {args.output}: detections are written as .geojson")
    refuse_existing(Path(args.output), args.overwrite)
    task = load_detection_task(args.ckpt, args.device)
    scene = args.input[0] if len(args.input) == 1 else args.input
    detections, transform, crs = detect_scene(
        task, scene, args.tile, args.overlap, args.score_threshold, not args.no_progress
    )
    provenance = {
        "input": [str(i) for i in args.input],
        "checkpoint": str(args.ckpt),
        "model": str(task.hparams.model),
        "score_threshold": args.score_threshold,
        "tile": args.tile,
        "overlap": args.overlap,
    }
    write_detections_geojson(
        args.output, detections, transform, crs, overwrite=args.overwrite, provenance=provenance
    )
    print(f"wrote {args.output}: {len(detections)} detections")
    return 0
