"""Whole-scene restoration: a denoising or super-resolution checkpoint applied to a GeoTIFF/ENVI
cube of any size, tile by tile, with the tiles blended where they overlap.

``hsi predict --ckpt CKPT --input SCENE.tif --output RESTORED.tif`` lands here when the
checkpoint was written by a :class:`~hsi.tasks.RestorationTask` (``hsi.cli`` looks at the
checkpoint's task). The scene is read in windows of ``tile`` pixels that overlap by
``overlap`` pixels; each restored tile is weighted by a window that rises as ``sin^2`` over
the overlap (a Hann ramp) and is 1 inside, and the weighted sum is divided by the summed
weights, so seams between tiles vanish while a pixel covered by one tile keeps its value.

Memory is bounded by one strip of tiles: ``bands x tile x width`` values (times ``scale^2``
for super-resolution), never the whole scene. Rows of the output are written as soon as no
later tile can touch them.

Before any output is created, a read-only pass checks the scene: its band count, NaN/inf in
valid pixels, constant bands, and that the checkpoint's [0, 1] scaling maps the data near
[0, 1] (data in other units are refused). The output (float32, in the input's units, NaN
where the input has no data) keeps CRS, transform (scaled for super-resolution) and
wavelengths, and is renamed into place only when complete.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hsi.data.restoration import Scaling
from hsi.data.writers import (
    atomic_output,
    geotiff_block_size,
    refuse_existing,
    write_wavelength_tags,
)
from hsi.errors import ConfigError, DataError, HsiError
from hsi.tasks.checkpointing import checkpoint_task, load_task_checkpoint

__all__ = ["blend_weights", "checkpoint_task", "restore_main", "restore_scene", "tile_starts"]

PathLike = str | os.PathLike[str]


# --------------------------------------------------------------------------------------
# tiling
# --------------------------------------------------------------------------------------


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Tile origins covering ``[0, length)`` with tiles of ``min(tile, length)`` pixels that
    overlap by at least ``overlap``; the last tile ends at ``length``."""
    tile = min(tile, length)
    if tile >= length:
        return [0]
    stride = tile - overlap
    starts = list(range(0, length - tile, stride))
    return [*starts, length - tile]


def blend_weights(n: int, overlap: int) -> np.ndarray:
    """1-D weights of a tile of ``n`` pixels: a ``sin^2`` ramp over ``overlap`` pixels at both
    ends, 1 in between; strictly positive so border pixels are never lost."""
    w = np.ones(n, dtype=np.float64)
    ramp = min(overlap, n // 2)
    if ramp > 0:
        up = np.sin(0.5 * np.pi * (np.arange(ramp) + 0.5) / ramp) ** 2
        w[:ramp] = up
        w[n - ramp :] = up[::-1]
    return w


# --------------------------------------------------------------------------------------
# checkpoints
# --------------------------------------------------------------------------------------


def _load_task(checkpoint: PathLike, device: torch.device) -> Any:
    from hsi.tasks.restoration import RestorationTask

    path = Path(os.fspath(checkpoint)).expanduser()
    task = load_task_checkpoint(
        RestorationTask,
        path,
        device,
        "restoration",
        "pass a checkpoint written by `hsi fit` with a RestorationTask",
    )
    if task.net is None or task.get_scaling() is None:
        raise DataError(
            f"{path}: the checkpoint lacks the model or its [0, 1] scaling; pass one written "
            "by `hsi fit` (or RestorationTask.export_checkpoint after training)"
        )
    return task.to(device).eval()


# --------------------------------------------------------------------------------------
# checks before writing
# --------------------------------------------------------------------------------------


def _strips(height: int, rows: int) -> list[tuple[int, int]]:
    return [(r, min(height, r + rows)) for r in range(0, height, rows)]


def _precheck(scene: Any, scaling: Scaling, rows: int) -> None:
    """One read-only pass: NaN/inf in valid pixels, constant bands, and the value range."""
    lo = np.full(scene.bands, np.inf)
    hi = np.full(scene.bands, -np.inf)
    outside = total = 0
    for r0, r1 in _strips(scene.height, rows):
        data, valid = scene.read(r0, r1, 0, scene.width)
        finite = np.isfinite(data)
        # a pixel NaN in every band is no-data by convention; NaN/inf in some bands is damage
        partial = ~finite.all(axis=0) & finite.any(axis=0)
        if partial.any():
            rr, cc = np.nonzero(partial)
            raise DataError(
                f"{scene.source}: {int(partial.sum())} pixels hold NaN/inf in some bands "
                f"(first at row {r0 + int(rr[0])}, col {int(cc[0])}); fill them, or mark them "
                "as no-data (NaN in every band, or the file's no-data value), before restoring"
            )
        if not valid.any():
            continue
        pixels = data[:, valid]
        lo = np.minimum(lo, pixels.min(axis=1))
        hi = np.maximum(hi, pixels.max(axis=1))
        scaled = scaling.apply(pixels)
        outside += int(np.count_nonzero((scaled < -0.5) | (scaled > 1.5)))
        total += scaled.size
    if total == 0:
        raise DataError(f"{scene.source}: the scene holds no valid pixel")
    constant = np.flatnonzero(hi <= lo)
    if constant.size:
        shown = ", ".join(str(int(b)) for b in constant[:10])
        raise DataError(
            f"{scene.source}: bands {shown} (0-based) are constant over the scene: a dead or "
            "zeroed band cannot be restored; repair or drop them (the model needs every band "
            "it was trained on)"
        )
    if outside / total > 0.01:
        raise DataError(
            f"{scene.source}: {outside / total:.0%} of the values fall far outside the range "
            f"the model was trained on (the scene spans {lo.min():.4g}..{hi.max():.4g}, the "
            f"training data {min(scaling.lo):.4g}..{max(scaling.hi):.4g}); the data are not "
            "scaled as the model expects (other units or product?)"
        )


# --------------------------------------------------------------------------------------
# restore_scene
# --------------------------------------------------------------------------------------


def _profile(scene: Any, bands: int, scale: int) -> dict[str, Any]:
    height, width = scene.height * scale, scene.width * scale
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": bands,
        "dtype": "float32",
        "nodata": float("nan"),
        "tiled": True,
        "blockxsize": geotiff_block_size(width),
        "blockysize": geotiff_block_size(height),
        "compress": "deflate",
        "predictor": 3,
        "interleave": "band",
        "BIGTIFF": "IF_SAFER",
    }
    if scene.crs is not None:
        profile["crs"] = scene.crs
    if scene.transform is not None:
        from affine import Affine

        profile["transform"] = scene.transform @ Affine.scale(1 / scale)
    return profile


def _fill_invalid(x: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """No-data pixels get their band's mean over the tile's valid pixels (0.5 if none), so
    the model sees no arbitrary values; they are written as no-data anyway."""
    if valid.all():
        return x
    x = x.copy()
    fill = x[:, valid].mean(axis=1) if valid.any() else np.full(x.shape[0], 0.5, np.float32)
    x[:, ~valid] = fill[:, None]
    return x


def restore_scene(
    checkpoint: PathLike,
    inputs: PathLike | Sequence[PathLike],
    output: PathLike,
    *,
    tile: int = 128,
    overlap: int | None = None,
    batch_size: int = 4,
    scale: int | None = None,
    overwrite: bool = False,
    device: str = "cpu",
    progress: bool = True,
) -> dict[str, Any]:
    """Restore (denoise or super-resolve) a whole scene with a restoration checkpoint.

    Args:
        checkpoint: ``.ckpt`` of a :class:`~hsi.tasks.RestorationTask`.
        inputs: a GeoTIFF/VRT/ENVI (or ``.mat``/``.npy``) file, or GeoTIFF tiles of one scene.
        output: the restored GeoTIFF (float32, input units; ``scale`` times larger for SR).
        tile: input tile side (pixels); at least the model's ``min_tile``.
        overlap: input pixels shared by neighbouring tiles and blended (< tile / 2;
            default ``min(16, tile // 4)``).
        batch_size: tiles per model call.
        scale: the super-resolution factor you expect; refused if the checkpoint was
            trained for another (``None``: the checkpoint's).
        overwrite: replace an existing output.
        device: torch device.
        progress: show a progress bar.

    Returns a summary (sizes, tiles, seconds, output path).
    """
    from hsi.inference import _open_scene, _torch_device

    start = time.perf_counter()
    dev = _torch_device(device)
    task = _load_task(checkpoint, dev)
    trained_scale = int(task.hparams.scale or 1)
    if scale is not None and int(scale) != trained_scale:
        raise ConfigError(
            f"--scale {scale} but checkpoint {checkpoint} was trained for x{trained_scale} "
            f"({task.kind}); use a checkpoint trained for x{scale} or drop --scale"
        )
    if overlap is None:
        overlap = min(16, max(tile, 0) // 4)
    if tile < 1 or not 0 <= overlap < (tile + 1) // 2:
        raise ConfigError(f"need tile >= 1 and 0 <= overlap < tile / 2, got {tile}, {overlap}")
    if tile < task.min_tile:
        raise ConfigError(
            f"--tile {tile} is smaller than the {task.min_tile} pixels {task.hparams.model} "
            f"needs (its min_tile); use --tile {task.min_tile} or more"
        )
    final = Path(os.fspath(output)).expanduser()
    refuse_existing(final, overwrite)
    scaling = task.get_scaling()
    scene = _open_scene(list(inputs) if isinstance(inputs, (list, tuple)) else inputs)
    if scene.bands != int(task.hparams.in_bands):
        raise DataError(
            f"{scene.source} has {scene.bands} bands but checkpoint {checkpoint} was trained on "
            f"{task.hparams.in_bands}; use a scene of the same sensor and band selection"
        )
    th, tw = min(tile, scene.height), min(tile, scene.width)
    if min(th, tw) < task.min_tile:
        raise DataError(
            f"{scene.source} is {scene.height}x{scene.width} pixels, smaller than the "
            f"{task.min_tile} pixels {task.hparams.model} needs (its min_tile)"
        )
    _precheck(scene, scaling, th)

    s = trained_scale
    row_starts = tile_starts(scene.height, th, overlap)
    col_starts = tile_starts(scene.width, tw, overlap)
    wr, wc = blend_weights(th * s, overlap * s), blend_weights(tw * s, overlap * s)
    weight = np.outer(wr, wc).astype(np.float32)
    out_w = scene.width * s
    bands = scene.bands
    n_tiles = len(row_starts) * len(col_starts)

    from rasterio.errors import NotGeoreferencedWarning
    from rasterio.windows import Window
    from tqdm.auto import tqdm

    model_seconds = 0.0
    with atomic_output(final, overwrite=overwrite) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        import rasterio

        with rasterio.open(tmp, "w", **_profile(scene, bands, s)) as dst:
            _write_band_metadata(dst, scene)
            base = 0  # first output row held by the accumulators
            acc = np.zeros((bands, th * s, out_w), dtype=np.float32)
            wsum = np.zeros((th * s, out_w), dtype=np.float32)
            valid_out = np.zeros((th * s, out_w), dtype=bool)
            bar = tqdm(total=n_tiles, unit="tile", desc="restore", disable=not progress)
            for k, r0 in enumerate(row_starts):
                shift = r0 * s - base
                if shift:  # slide the accumulators down to this strip's first row
                    acc = np.concatenate([acc[:, shift:], np.zeros_like(acc[:, :shift])], 1)
                    wsum = np.concatenate([wsum[shift:], np.zeros_like(wsum[:shift])], 0)
                    valid_out = np.concatenate(
                        [valid_out[shift:], np.zeros_like(valid_out[:shift])], 0
                    )
                    base = r0 * s
                tiles, places = [], []
                for c0 in col_starts:
                    data, valid = scene.read(r0, r0 + th, c0, c0 + tw)
                    if not valid.any():
                        continue
                    scaled = _fill_invalid(scaling.apply(data), valid)
                    tiles.append(scaled)
                    places.append((c0, valid))
                for i in range(0, len(tiles), batch_size):
                    batch = torch.from_numpy(np.stack(tiles[i : i + batch_size])).to(dev)
                    t0 = time.perf_counter()
                    restored = task.restore(batch).float().cpu().numpy()
                    model_seconds += time.perf_counter() - t0
                    for out, (c0, valid) in zip(restored, places[i : i + batch_size], strict=True):
                        cs = slice(c0 * s, (c0 + tw) * s)
                        acc[:, :, cs] += out * weight
                        wsum[:, cs] += weight
                        ok = np.repeat(np.repeat(valid, s, axis=0), s, axis=1)
                        valid_out[:, cs] |= ok
                bar.update(len(col_starts))
                last = k == len(row_starts) - 1
                done_rows = th * s if last else (row_starts[k + 1] - r0) * s
                done_rows = min(done_rows, scene.height * s - base)
                if done_rows > 0:
                    block = acc[:, :done_rows] / np.maximum(wsum[:done_rows], 1e-12)
                    block = scaling.invert(block)
                    block[:, ~valid_out[:done_rows] | (wsum[:done_rows] == 0)] = np.nan
                    dst.write(block, window=Window(0, base, out_w, done_rows))
            bar.close()
    total = time.perf_counter() - start
    return {
        "input": scene.source,
        "checkpoint": str(checkpoint),
        "task": task.kind,
        "scale": s,
        "input_size": [scene.height, scene.width],
        "output_size": [scene.height * s, scene.width * s],
        "bands": bands,
        "tiles": n_tiles,
        "tile": [th, tw],
        "overlap": overlap,
        "seconds": round(total, 3),
        "model_seconds": round(model_seconds, 3),
        "device": str(dev),
        "output": str(final),
    }


def _write_band_metadata(dst: Any, scene: Any) -> None:
    """Wavelengths where read_cube, GDAL and QGIS look for them (as write_geotiff does)."""
    if scene.wavelengths is not None:
        write_wavelength_tags(dst, scene.wavelengths)


# --------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------


def restore_main(argv: list[str]) -> int:
    """``hsi predict --ckpt RESTORATION.ckpt --input SCENE --output OUT.tif [...]``."""
    parser = argparse.ArgumentParser(
        prog="hsi predict",
        description="Restore (denoise / super-resolve) a whole scene with a restoration "
        "checkpoint, in overlapping blended tiles; writes a georeferenced float32 GeoTIFF.",
    )
    parser.add_argument("--ckpt", required=True, help="checkpoint written by `hsi fit`")
    parser.add_argument("--input", required=True, nargs="+", metavar="SCENE")
    parser.add_argument("--output", required=True, metavar="OUT.tif")
    parser.add_argument("--tile", type=int, default=128, help="input tile side in pixels")
    parser.add_argument(
        "--overlap", type=int, help="blended overlap in pixels (default: min(16, tile / 4))"
    )
    parser.add_argument("--batch-size", type=int, default=4, help="tiles per model call")
    parser.add_argument("--scale", type=int, help="expected SR factor (checked)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    try:
        summary = restore_scene(
            args.ckpt,
            args.input[0] if len(args.input) == 1 else args.input,
            args.output,
            tile=args.tile,
            overlap=args.overlap,
            batch_size=args.batch_size,
            scale=args.scale,
            overwrite=args.overwrite,
            device=args.device,
            progress=not args.no_progress,
        )
    except HsiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2))
    return 0
