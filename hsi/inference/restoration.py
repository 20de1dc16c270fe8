"""Whole-scene restoration: a denoising or super-resolution checkpoint, or a training-free
restorer (HIR-Diff, DDS2M), applied to a GeoTIFF/ENVI cube of any size, tile by tile, with the
tiles blended where they overlap.

``hsi predict --ckpt CKPT --input SCENE.tif --output RESTORED.tif`` lands here when the
checkpoint was written by a :class:`~hsi.tasks.RestorationTask` (``hsi.cli`` looks at the
checkpoint's task), and so does ``hsi predict --model hirdiff --input ...`` (no checkpoint:
the unsupervised method restores each tile from that tile alone). The scene is read in
windows of ``tile`` pixels that overlap by ``overlap`` pixels; each restored tile is weighted
by a window that rises as ``sin^2`` over the overlap (a Hann ramp) and is 1 inside, and the
weighted sum is divided by the summed weights, so seams between tiles vanish while a pixel
covered by one tile keeps its value.

Memory is bounded by one strip of tiles: ``bands x tile x width`` values (times ``scale^2``
for super-resolution), never the whole scene. Rows of the output are written as soon as no
later tile can touch them.

Before any output is created, a read-only pass checks the scene: its band count, NaN/inf in
valid pixels, constant bands, and that the checkpoint's [0, 1] scaling maps the data near
[0, 1] (data in other units are refused; a training-free model's scaling is fitted on the
scene itself, see :func:`restore_scene`). The output (float32, in the input's units, NaN where
the input has no data) keeps CRS, transform (scaled for super-resolution) and wavelengths, and
is renamed into place only when complete.
"""

from __future__ import annotations

import argparse
import inspect
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
    """The RestorationTask of a ``hsi fit`` checkpoint, of an exported weight file or of
    shipped weights named ``checkpoint`` (``hsdt_s/salinas_a_gaussian50``), in eval mode."""
    return _load_checkpoint(checkpoint, device)[0]


def _load_checkpoint(checkpoint: PathLike, device: torch.device) -> tuple[Any, str]:
    """:func:`_load_task` plus a label of what was loaded (for the output's metadata)."""
    from hsi import pretrained
    from hsi.tasks.restoration import RestorationTask

    found = pretrained.pretrained_task(checkpoint, "restoration")
    if found is not None:
        return found[0].to(device).eval(), found[1]
    path = Path(os.fspath(checkpoint)).expanduser()
    task = load_task_checkpoint(
        RestorationTask,
        path,
        device,
        "restoration",
        "pass a checkpoint written by `hsi fit` with a RestorationTask, an exported weight "
        "file, or the name of shipped weights",
    )
    if task.net is None or task.get_scaling() is None:
        raise DataError(
            f"{path}: the checkpoint lacks the model or its [0, 1] scaling; pass one written "
            "by `hsi fit` (or RestorationTask.export_checkpoint after training)"
        )
    return task.to(device).eval(), str(path)


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


def _training_free_task(
    model: str, model_kwargs: dict[str, Any] | None, bands: int, scale: int | None, progress: bool
) -> Any:
    """A :class:`~hsi.tasks.RestorationTask` around a training-free registry model, built by
    the task's own path (``in_bands`` from the scene, ``scale`` from ``--scale``)."""
    from hsi.models.registry import get_model_class, list_models
    from hsi.tasks.restoration import RestorationTask

    ctor = get_model_class(model)
    if not getattr(ctor, "training_free", False):
        free = [n for n in list_models() if getattr(get_model_class(n), "training_free", False)]
        raise ConfigError(
            f"{model} must be trained: pass --ckpt CKPT (a checkpoint written by `hsi fit`); "
            f"--model takes a training-free model ({', '.join(free) or 'none registered'})"
        )
    if model_kwargs is not None and not isinstance(model_kwargs, dict):
        raise ConfigError(f"model_kwargs must be a dict, got {type(model_kwargs).__name__}")
    kwargs = dict(model_kwargs or {})
    clash = sorted({"in_bands", "scale"} & set(kwargs))
    if clash:
        raise ConfigError(
            f"--model-kwargs must not set {', '.join(clash)}: the band count comes from the "
            "scene and the super-resolution factor from --scale"
        )
    if "progress" in inspect.signature(ctor).parameters:
        kwargs.setdefault("progress", progress)  # --no-progress silences the sampler too
    s = 1 if scale is None else scale
    if not isinstance(s, int) or isinstance(s, bool) or s < 1:
        raise ConfigError(f"--scale must be a positive integer, got {scale!r}")
    return RestorationTask(model=model, model_kwargs=kwargs, in_bands=bands, scale=s)


def _scene_scaling(scene: Any, rows: int) -> Scaling:
    """Global min-max scaling of the scene itself, robust to its noise, read strip by strip.

    The range is that of 3 x 3 spatial means of the valid pixels, not of the raw values: noise
    widens a noisy scene's raw min-max (sigma 30/255 nearly doubles Indian Pines' range), which
    squeezes the signal into part of [0, 1] and costs HIR-Diff, whose guidance is tuned for
    data filling [0, 1], ~5 dB (whole Indian Pines with sigma 30 noise, ``hsi predict --model
    hirdiff --tile 64``: 32.2 dB with the raw noisy range, 37.5 dB with the 3 x 3-mean range).
    Only the running min and max are kept, so memory stays at one strip.
    """
    from scipy.ndimage import uniform_filter

    lo, hi = np.inf, -np.inf
    for r0, r1 in _strips(scene.height, rows):
        data, valid = scene.read(r0, r1, 0, scene.width)
        if not valid.any():
            continue
        filled = np.where(valid, data, 0.0).astype(np.float64)
        weight = uniform_filter(valid.astype(np.float64), size=3, mode="nearest")
        means = uniform_filter(filled, size=(1, 3, 3), mode="nearest") / np.maximum(weight, 1e-12)
        pixels = means[:, valid]
        lo, hi = min(lo, float(pixels.min())), max(hi, float(pixels.max()))
    if not np.isfinite(lo):
        raise DataError(f"{scene.source}: the scene holds no valid pixel")
    if hi <= lo:
        raise DataError(f"{scene.source}: every valid value is {lo:g}; nothing to restore")
    return Scaling("minmax", [lo] * scene.bands, [hi] * scene.bands)


def _checkpoint_scaling(
    task: Any, scene: Any, scaling: str, checkpoint: PathLike
) -> Scaling | None:
    """The checkpoint's [0, 1] scaling for ``scene``, or None when the scene is to be scaled
    by its own range (``--scaling scene``, or a ``minmax_scene`` checkpoint); refuses a band
    count the model cannot take (another one is fine only for a band-agnostic model, e.g.
    HSDT with ``flex``, on a scene-scaled cube)."""
    fixed = task.get_scaling()
    per_scene = fixed.method == "minmax_scene"
    expected = int(task.hparams.in_bands) if per_scene else fixed.bands
    scene_scaled = scaling == "scene" or per_scene
    flex = bool(getattr(task.net, "flex", False))
    if scene.bands != expected and not (scene_scaled and flex):
        hint = (
            "; this model takes any band count: add --scaling scene to scale the scene by its "
            "own range"
            if flex
            else "; use a scene of the same sensor and band selection"
        )
        raise DataError(
            f"{scene.source} has {scene.bands} bands but checkpoint {checkpoint} was trained on "
            f"{expected}{hint}"
        )
    return None if scene_scaled else fixed


def restore_scene(
    checkpoint: PathLike | None = None,
    inputs: PathLike | Sequence[PathLike] | None = None,
    output: PathLike | None = None,
    *,
    tile: int = 128,
    overlap: int | None = None,
    batch_size: int = 4,
    scale: int | None = None,
    overwrite: bool = False,
    device: str = "cpu",
    progress: bool = True,
    model: str | None = None,
    model_kwargs: dict[str, Any] | None = None,
    scaling: str = "checkpoint",
) -> dict[str, Any]:
    """Restore (denoise or super-resolve) a whole scene with a restoration checkpoint or a
    training-free model.

    Give exactly one of ``checkpoint`` (a trained model with the [0, 1] scaling of its
    training data) or ``model`` (a registry model with ``training_free = True``: ``hirdiff``
    or ``dds2m``, built with ``model_kwargs``). A training-free model gets the scene's own
    global min-max scaling, computed over its valid pixels strip by strip. Fitting on the
    input is legitimate here: an unsupervised method sees nothing but its input (there is no
    training data whose scaling it should reuse), and nothing is evaluated against the scene,
    so no held-out data leak into the result. The cost: noise widens the input's range, so
    the signal fills less of [0, 1] than with a clean-data scaling, and HIR-Diff's guidance
    weights are tuned for data filling [0, 1]. Such a model restores each tile on its own
    (diffusion runs per tile; ``seed`` in ``model_kwargs`` gives the same result each run).

    Args:
        checkpoint: ``.ckpt`` of a :class:`~hsi.tasks.RestorationTask`.
        inputs: a GeoTIFF/VRT/ENVI (or ``.mat``/``.npy``) file, or GeoTIFF tiles of one scene.
        output: the restored GeoTIFF (float32, input units; ``scale`` times larger for SR).
        tile: input tile side (pixels); at least the model's ``min_tile``.
        overlap: input pixels shared by neighbouring tiles and blended (< tile / 2;
            default ``min(16, tile // 4)``).
        batch_size: tiles per model call.
        scale: with a checkpoint, the super-resolution factor you expect (refused if it was
            trained for another; ``None``: the checkpoint's); with ``model``, the factor to
            super-resolve by (``None``: 1, denoising).
        overwrite: replace an existing output.
        device: torch device.
        progress: show a progress bar (and the model's own, unless ``model_kwargs`` says).
        model: registry name of a training-free restorer, instead of ``checkpoint``.
        model_kwargs: its constructor arguments (``steps``, ``seed``, ``prior``, ...).
        scaling: for a checkpoint, ``checkpoint`` (the [0, 1] scaling of its training data)
            or ``scene`` (the scene's own noise-robust min-max, :func:`_scene_scaling`): for a
            model trained on other data, and the only way to run a band-count-agnostic model
            (HSDT with ``flex``) on another band count. Checkpoints trained with
            ``minmax_scene`` always scale each scene by its own range.

    Returns a summary (sizes, tiles, seconds, output path, and the checkpoint or the model
    with its arguments).
    """
    from hsi.inference.plan import _torch_device
    from hsi.inference.scenes import _open_scene

    start = time.perf_counter()
    if (checkpoint is None) == (model is None):
        raise ConfigError(
            "give exactly one of a checkpoint (--ckpt) or a training-free model (--model)"
        )
    if scaling not in ("checkpoint", "scene"):
        raise ConfigError(f"scaling must be 'checkpoint' or 'scene', got {scaling!r}")
    if checkpoint is not None and model_kwargs is not None:
        raise ConfigError("model_kwargs go with --model, not with a checkpoint")
    if inputs is None or output is None:
        raise ConfigError("restore_scene needs inputs (the scene) and output (the GeoTIFF)")
    dev = _torch_device(device)
    task, fixed = None, None  # fixed: a checkpoint's scaling; None = fit on the scene
    label = None  # what was loaded, as the output's metadata names it
    if checkpoint is not None:
        task, label = _load_checkpoint(checkpoint, dev)
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
    final = Path(os.fspath(output)).expanduser()
    refuse_existing(final, overwrite)
    scene = _open_scene(list(inputs) if isinstance(inputs, (list, tuple)) else inputs)
    if task is None:
        assert model is not None
        task = _training_free_task(model, model_kwargs, scene.bands, scale, progress)
        task = task.to(dev).eval()
        source: dict[str, Any] = {"model": model, "model_kwargs": dict(task.hparams.model_kwargs)}
    else:
        source = {"checkpoint": str(checkpoint)}
        fixed = _checkpoint_scaling(task, scene, scaling, checkpoint)
    if tile < task.min_tile:
        raise ConfigError(
            f"--tile {tile} is smaller than the {task.min_tile} pixels {task.hparams.model} "
            f"needs (its min_tile); use --tile {task.min_tile} or more"
        )
    th, tw = min(tile, scene.height), min(tile, scene.width)
    if min(th, tw) < task.min_tile:
        raise DataError(
            f"{scene.source} is {scene.height}x{scene.width} pixels, smaller than the "
            f"{task.min_tile} pixels {task.hparams.model} needs (its min_tile)"
        )
    if fixed is None:
        fitted = _scene_scaling(scene, th)
        task.scaling = fitted.state_dict()
        source["scaling_fitted_on_input"] = [fitted.lo[0], fitted.hi[0]]
    else:
        fitted = fixed
    _precheck(scene, fitted, th)

    s = int(task.hparams.scale or 1)
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
            dst.update_tags(**_provenance_tags(task, scene, label, source))
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
                    scaled = _fill_invalid(fitted.apply(data), valid)
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
                    block = fitted.invert(block)
                    block[:, ~valid_out[:done_rows] | (wsum[:done_rows] == 0)] = np.nan
                    dst.write(block, window=Window(0, base, out_w, done_rows))
            bar.close()
    total = time.perf_counter() - start
    return {
        "input": scene.source,
        **source,
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


def _provenance_tags(
    task: Any, scene: Any, label: str | None, source: dict[str, Any]
) -> dict[str, str]:
    """What made the restored cube, as GeoTIFF tags (a class map carries the same ``hsi_*``
    tags): the input, the model and the checkpoint or weights (with sha256 for shipped
    ones), the restoration, the [0, 1] scaling used and, for a trained model, the noise or
    degradation it was trained for."""
    tags = {
        "hsi_input": str(scene.source),
        "hsi_model": str(task.hparams.model),
        "hsi_restoration": f"{task.kind} x{int(task.hparams.scale or 1)}",
    }
    if label is not None:
        tags["hsi_checkpoint"] = label
        if task.degradation:
            tags["hsi_trained_degradation"] = json.dumps(task.degradation)
    else:
        tags["hsi_model_kwargs"] = json.dumps(source.get("model_kwargs") or {}, default=str)
    fitted = source.get("scaling_fitted_on_input")
    tags["hsi_scaling"] = (
        f"the scene's own min-max {fitted[0]:g}..{fitted[1]:g}"
        if fitted
        else "the checkpoint's (its training data's min-max)"
    )
    return tags


def _write_band_metadata(dst: Any, scene: Any) -> None:
    """Wavelengths where read_cube, GDAL and QGIS look for them (as write_geotiff does)."""
    if scene.wavelengths is not None:
        write_wavelength_tags(dst, scene.wavelengths)


# --------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------


def _parse_model_kwargs(text: str | None) -> dict[str, Any] | None:
    """``--model-kwargs`` as a dict, or a one-line ConfigError."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"--model-kwargs is not valid JSON ({exc.msg} at char {exc.pos})"
        ) from None
    if not isinstance(value, dict):
        raise ConfigError(
            f"--model-kwargs must be a JSON object such as '{{\"steps\": 20}}', got "
            f"{type(value).__name__}"
        )
    return value


def restore_main(argv: list[str]) -> int:
    """``hsi predict --ckpt RESTORATION.ckpt | --model NAME --input SCENE --output OUT.tif``."""
    parser = argparse.ArgumentParser(
        prog="hsi predict",
        description="Restore (denoise / super-resolve) a whole scene with a restoration "
        "checkpoint or a training-free diffusion restorer (hirdiff, dds2m), in overlapping "
        "blended tiles; writes a georeferenced float32 GeoTIFF.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--ckpt",
        help="checkpoint written by `hsi fit` (.ckpt), an exported weight file (.pt), or "
        "shipped weights by name (salinas_a_blind, hsdt_s/salinas_a_gaussian50; `python -m "
        "hsi.pretrained list`)",
    )
    source.add_argument(
        "--model",
        metavar="NAME",
        help="a training-free registry model instead of a checkpoint (hirdiff, dds2m); the "
        "scene's own min-max scaling is used",
    )
    parser.add_argument(
        "--model-kwargs",
        metavar="JSON",
        help='--model arguments as a JSON object, e.g. \'{"steps": 20, "seed": 0, '
        '"prior": "runs/.../best.ckpt"}\'',
    )
    parser.add_argument(
        "--scaling",
        choices=("checkpoint", "scene"),
        default="checkpoint",
        help="with --ckpt: scale the scene as the training data were (default) or by its own "
        "noise-robust range (a model trained on other data or another band count)",
    )
    parser.add_argument("--input", required=True, nargs="+", metavar="SCENE")
    parser.add_argument("--output", required=True, metavar="OUT.tif")
    parser.add_argument(
        "--tile",
        type=int,
        default=128,
        help="input tile side in pixels (a diffusion --model restores each tile on its own: "
        "its time grows with the tile count and size)",
    )
    parser.add_argument(
        "--overlap", type=int, help="blended overlap in pixels (default: min(16, tile / 4))"
    )
    parser.add_argument("--batch-size", type=int, default=4, help="tiles per model call")
    parser.add_argument(
        "--scale",
        type=int,
        help="SR factor: checked against a --ckpt; with --model, the factor (default 1)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    try:
        if args.model_kwargs is not None and args.model is None:
            raise ConfigError("--model-kwargs needs --model (a checkpoint holds its arguments)")
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
            model=args.model,
            model_kwargs=_parse_model_kwargs(args.model_kwargs),
            scaling=args.scaling,
        )
    except HsiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2))
    return 0
