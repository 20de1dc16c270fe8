"""Scene inference: a trained checkpoint applied to a whole scene, window by window.

Two layers:

- :func:`classify_cube` turns a padded, preprocessed ``(C, H + 2r, W + 2r)`` tensor into
  ``(K, H, W)`` class probabilities. Models with ``forward_dense`` (HybridSN) are run
  fully-convolutionally, which shares the convolutions of overlapping patches; any other
  patch model gets batched patches cut with ``Tensor.unfold`` (no Python loop per pixel).
- :func:`predict_scene` (``hsi predict --input``) reads a scene of any size in windows with
  a halo of ``r = patch_size // 2`` pixels, applies the checkpoint's preprocessing (fitted
  on the training pixels, never refitted on the scene), and writes a georeferenced class
  map (plus optional confidence/probability rasters and a PNG quick-look) atomically.

Memory is bounded by the window size: the scene and its maps are never held whole, so a
100 km satellite scene needs no more memory than a 256×256 window.
(``benchmarks/bench_predict_memory.py`` measures it.) Several processes, GPUs or nodes
share a scene's windows in :mod:`hsi.inference_distributed` (``hsi predict --devices N``).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hsi.data.cube import SpectralCube
from hsi.data.patches import PAD_MODES
from hsi.data.preprocessing import Preprocessor
from hsi.data.readers import check_tiles_compatible, read_cube, read_envi_header
from hsi.data.writers import atomic_output, geotiff_block_size, refuse_existing
from hsi.errors import ConfigError, DataError, HsiError
from hsi.reports import class_colors
from hsi.tasks.checkpointing import load_task_checkpoint

__all__ = ["classify_cube", "predict_scene", "scene_main"]

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]

# Wavelengths of the scene may differ from the training sensor's by this much (nm) before
# the scene is refused: band centres of one sensor's products agree to well under 1 nm,
# while a different sensor or band subset differs by tens of nanometres.
WAVELENGTH_TOLERANCE_NM = 5.0
# Mean |value| of standardised (or whitened) data is about sqrt(2/pi) ~ 0.8; a scene whose
# transformed pixels average ten times that was almost surely stored in other units.
_MEAN_ABS_STANDARD = math.sqrt(2.0 / math.pi)
_RANGE_FACTOR = 10.0
_QUICKLOOK_MAX_SIDE = 2048


# --------------------------------------------------------------------------------------
# classify_cube
# --------------------------------------------------------------------------------------


def _dense_net(model: nn.Module, patch_size: int) -> nn.Module | None:
    """The module whose ``forward_dense`` computes this model's patch logits, if any.

    A task (LightningModule) that wraps its network as ``.net`` is unwrapped, so the
    classification task can pass itself. The dense path is only used when the network
    was built for this patch size: its first Linear layer is sized for it.
    """
    for candidate in (model, getattr(model, "net", None)):
        if isinstance(candidate, nn.Module) and callable(getattr(candidate, "forward_dense", None)):
            if getattr(candidate, "patch_size", patch_size) == patch_size:
                return candidate
    return None


def _model_device(model: nn.Module) -> torch.device:
    for param in model.parameters():
        return param.device
    return torch.device("cpu")


def _dense_block(height: int, width: int, radius: int, batch_size: int) -> tuple[int, int]:
    """Output rows/cols of one dense block, sized like one patch batch of ``batch_size``.

    A batch of ``batch_size`` patches holds ``batch_size·p²`` input positions; a dense
    block of as many padded positions needs about as much activation memory, so
    ``batch_size`` bounds memory the same way on both paths. Blocks are full-width row
    strips when a strip of at least ``p`` rows fits, otherwise squares.
    """
    p = 2 * radius + 1
    budget = max(1, batch_size) * p * p
    padded_w = width + 2 * radius
    side = max(p, math.isqrt(budget))
    block_w = padded_w if padded_w <= side else side
    block_h = max(p, budget // block_w)
    return max(1, block_h - 2 * radius), max(1, block_w - 2 * radius)


@torch.no_grad()
def classify_cube(
    model: nn.Module,
    padded: torch.Tensor,
    patch_size: int,
    batch_size: int = 256,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Class probabilities ``(K, H, W)`` of every pixel of a padded ``(C, H + 2r, W + 2r)`` cube.

    ``padded`` is preprocessed and padded by ``r = patch_size // 2`` on each side (as
    :func:`hsi.data.patches.pad_cube` does), so pixel ``(i, j)``'s patch is
    ``padded[:, i : i + p, j : j + p]``. With ``forward_dense`` (see :func:`_dense_net`)
    the model runs over blocks of the cube (:func:`_dense_block`); otherwise patches are
    cut with ``Tensor.unfold`` in blocks of about ``batch_size`` pixels and fed to
    ``model(patches) -> logits``. Either way memory is bounded by ``batch_size``, not by
    the cube. The model is evaluated in eval mode (and its mode restored afterwards);
    ``device`` defaults to the model's. The result is float32 on the CPU.
    """
    if padded.ndim != 3:
        raise ConfigError(
            f"classify_cube expects a (bands, H + 2r, W + 2r) tensor, got {tuple(padded.shape)}"
        )
    if patch_size < 1 or patch_size % 2 == 0:
        raise ConfigError(f"patch_size must be a positive odd number, got {patch_size}")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
    p, r = patch_size, patch_size // 2
    bands, padded_h, padded_w = padded.shape
    height, width = padded_h - 2 * r, padded_w - 2 * r
    if height < 1 or width < 1:
        raise ConfigError(
            f"a cube of padded size {padded_h}×{padded_w} holds no pixel for patch size {p}; "
            f"pad it by {r} on each side first (hsi.data.patches.pad_cube)"
        )
    dev = torch.device(device) if device is not None else _model_device(model)
    dense = _dense_net(model, p)
    out: torch.Tensor | None = None

    def put(probs: torch.Tensor, r0: int, c0: int) -> None:
        nonlocal out
        if out is None:
            out = torch.empty((probs.shape[0], height, width), dtype=torch.float32)
        out[:, r0 : r0 + probs.shape[1], c0 : c0 + probs.shape[2]] = probs.float().cpu()

    was_training = model.training
    model.eval()
    try:
        if dense is not None:
            rows, cols = _dense_block(height, width, r, batch_size)
            for r0 in range(0, height, rows):
                r1 = min(height, r0 + rows)
                for c0 in range(0, width, cols):
                    c1 = min(width, c0 + cols)
                    x = padded[:, r0 : r1 + 2 * r, c0 : c1 + 2 * r].unsqueeze(0)
                    logits = dense.forward_dense(x.to(dev, torch.float32))
                    put(torch.softmax(logits[0], dim=0), r0, c0)
        else:
            cols = min(width, batch_size)
            rows = max(1, batch_size // cols)
            for r0 in range(0, height, rows):
                r1 = min(height, r0 + rows)
                for c0 in range(0, width, cols):
                    c1 = min(width, c0 + cols)
                    block = padded[:, r0 : r1 + 2 * r, c0 : c1 + 2 * r]
                    # (C, rows, cols, p, p) view -> (rows·cols, C, p, p): one copy per batch
                    patches = block.unfold(1, p, 1).unfold(2, p, 1)
                    patches = patches.permute(1, 2, 0, 3, 4).reshape(-1, bands, p, p)
                    logits = model(patches.to(dev, torch.float32))
                    probs = torch.softmax(logits, dim=1)
                    put(probs.T.reshape(-1, r1 - r0, c1 - c0), r0, c0)
    finally:
        model.train(was_training)
    assert out is not None
    return out


# --------------------------------------------------------------------------------------
# scenes read window by window
# --------------------------------------------------------------------------------------


class _Scene(ABC):
    """A scene read window by window: size, georeference, wavelengths and ``read``."""

    source: str
    height: int
    width: int
    bands: int
    crs: Any
    transform: Any
    wavelengths: np.ndarray | None
    dtype: np.dtype

    @abstractmethod
    def read(self, r0: int, r1: int, c0: int, c1: int) -> tuple[np.ndarray, np.ndarray]:
        """Float32 ``(bands, r1 - r0, c1 - c0)`` pixels and their validity mask."""


def _float_and_valid(cube: SpectralCube) -> tuple[np.ndarray, np.ndarray]:
    """Float32 pixels (as training used them) and validity; NaN/inf pixels are no-data.

    Training refuses non-finite valid pixels (``check_finite``); at inference a pixel with
    a NaN in some band cannot be classified, so it is written as no-data instead.
    """
    data = np.asarray(cube.data, dtype=np.float32)
    valid = cube.valid_mask.copy()
    if np.issubdtype(cube.data.dtype, np.floating):
        valid &= np.isfinite(data).all(axis=0)
    return data, valid


class _FileScene(_Scene):
    """One GeoTIFF/VRT/ENVI file read through :func:`read_cube` windows.

    ``.mat``/``.npy`` files cannot be read in windows cheaply (and the community scenes
    stored that way are small), so they are read whole once.
    """

    def __init__(self, path: PathLike) -> None:
        self.path = Path(os.fspath(path)).expanduser()
        suffix = self.path.suffix.lower()
        self._whole: tuple[np.ndarray, np.ndarray] | None = None
        if suffix in (".mat", ".npy"):
            probe = read_cube(self.path)
            self._whole = _float_and_valid(probe)
            self.height, self.width = probe.height, probe.width
        else:
            # a one-pixel read checks the file opens and gives bands, georef, wavelengths
            probe = read_cube(self.path, window=((0, 1), (0, 1)))
            self.height, self.width = self._size()
        self.source = str(self.path)
        self.bands = probe.bands
        self.crs = probe.crs
        self.transform = probe.transform  # the (0, 0) window's transform is the scene's
        self.wavelengths = probe.wavelengths
        self.dtype = probe.data.dtype

    def _envi_header(self) -> Path | None:
        p = self.path
        if p.suffix.lower() == ".hdr":
            return p
        for cand in (p.with_suffix(".hdr"), Path(str(p) + ".hdr")):
            if cand != p and cand.is_file():
                return cand
        return None

    def _size(self) -> tuple[int, int]:
        hdr = self._envi_header()
        if hdr is not None:
            header = read_envi_header(hdr)
            try:
                return int(float(header["lines"])), int(float(header["samples"]))
            except (KeyError, ValueError) as exc:
                raise DataError(
                    f"{hdr}: ENVI header lacks valid 'lines'/'samples'; fix the header"
                ) from exc
        import rasterio
        from rasterio.errors import NotGeoreferencedWarning, RasterioError

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                with rasterio.open(self.path) as src:
                    return int(src.height), int(src.width)
        except RasterioError as exc:  # read_cube opened it a moment ago; unlikely
            raise DataError(f"{self.path}: cannot open as a raster ({exc})") from exc

    def read(self, r0: int, r1: int, c0: int, c1: int) -> tuple[np.ndarray, np.ndarray]:
        if self._whole is not None:
            data, valid = self._whole
            return np.ascontiguousarray(data[:, r0:r1, c0:c1]), valid[r0:r1, c0:c1]
        return _float_and_valid(read_cube(self.path, window=((r0, r1), (c0, c1))))


class _MosaicScene(_Scene):
    """GeoTIFF tiles of one scene on one pixel grid, read window by window.

    Each window reads only the parts of the tiles it overlaps; where tiles overlap the
    first tile's valid pixels win (rasterio.merge's ``first`` rule), and gaps between
    tiles are no-data.
    """

    def __init__(self, paths: Sequence[PathLike]) -> None:
        self.tiles = [_FileScene(p) for p in paths]
        first = self.tiles[0]
        name = first.path.name
        for t in self.tiles:
            if t.transform is None:
                raise DataError(
                    f"{t.source}: has no georeference, so its place in the mosaic is unknown; "
                    "pass georeferenced GeoTIFF tiles (or one file)"
                )
            if t.transform.b != 0 or t.transform.d != 0:
                raise DataError(
                    f"{t.source}: rotated/sheared grid; warp the tiles north-up before mosaicking"
                )
        check_tiles_compatible(
            [(t.source, t.crs, t.bands, (t.transform.a, -t.transform.e)) for t in self.tiles]
        )
        from affine import Affine

        xres, yres = first.transform.a, first.transform.e  # yres < 0 for north-up
        left = min(t.transform.c for t in self.tiles)
        top = (
            max(t.transform.f for t in self.tiles)
            if yres < 0
            else min(t.transform.f for t in self.tiles)
        )
        self.offsets: list[tuple[int, int]] = []
        height = width = 0
        for t in self.tiles:
            col = (t.transform.c - left) / xres
            row = (t.transform.f - top) / yres
            if abs(col - round(col)) > 1e-3 or abs(row - round(row)) > 1e-3:
                raise DataError(
                    f"{t.source}: not aligned with {name}'s pixel grid (offset {row:.3f} rows, "
                    f"{col:.3f} cols); resample the tiles to one grid before mosaicking"
                )
            row, col = int(round(row)), int(round(col))
            self.offsets.append((row, col))
            height, width = max(height, row + t.height), max(width, col + t.width)
        self.source = f"{first.source} (+{len(self.tiles) - 1} tiles)"
        self.height, self.width = height, width
        self.bands = first.bands
        self.crs = first.crs
        self.transform = Affine(xres, 0.0, left, 0.0, yres, top)
        self.wavelengths = first.wavelengths
        self.dtype = first.dtype

    def read(self, r0: int, r1: int, c0: int, c1: int) -> tuple[np.ndarray, np.ndarray]:
        data = np.zeros((self.bands, r1 - r0, c1 - c0), dtype=np.float32)
        valid = np.zeros((r1 - r0, c1 - c0), dtype=bool)
        for tile, (ro, co) in zip(self.tiles, self.offsets, strict=True):
            tr0, tr1 = max(r0, ro), min(r1, ro + tile.height)
            tc0, tc1 = max(c0, co), min(c1, co + tile.width)
            if tr0 >= tr1 or tc0 >= tc1:
                continue
            part, ok = tile.read(tr0 - ro, tr1 - ro, tc0 - co, tc1 - co)
            rows, cols = slice(tr0 - r0, tr1 - r0), slice(tc0 - c0, tc1 - c0)
            fill = ok & ~valid[rows, cols]
            data[:, rows, cols][:, fill] = part[:, fill]
            valid[rows, cols] |= fill
        return data, valid


def _open_scene(inputs: PathLike | Sequence[PathLike]) -> _Scene:
    if isinstance(inputs, (list, tuple)):
        if not inputs:
            raise ConfigError("no input scene given; pass a file or a list of GeoTIFF tiles")
        if len(inputs) == 1:
            return _FileScene(inputs[0])
        return _MosaicScene(inputs)
    return _FileScene(inputs)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------
# predict_scene
# --------------------------------------------------------------------------------------


def _torch_device(device: str | torch.device) -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"--device {device!r} is not a device; use cpu, cuda or cuda:N") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {device} but no CUDA GPU is available; use --device cpu")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"--device {device} but MPS is not available; use --device cpu")
    return dev


def _load_task(checkpoint: PathLike, device: torch.device) -> Any:
    """The ClassificationTask of a checkpoint, on ``device`` and in eval mode.

    ``checkpoint`` is a ``.ckpt`` written by ``hsi fit``, a weight file exported by
    :mod:`hsi.pretrained`, or the name of shipped weights (``indian_pines``,
    ``hybridsn/indian_pines``) when no file of that name exists. Everything is loaded
    with ``weights_only=True``.
    """
    return _load_checkpoint(checkpoint, device)[0]


def _load_checkpoint(checkpoint: PathLike, device: torch.device) -> tuple[Any, str]:
    """:func:`_load_task` plus a label of what was loaded (for the map's metadata)."""
    from hsi import pretrained
    from hsi.tasks.classification import ClassificationTask

    text = os.fspath(checkpoint)
    path = Path(text).expanduser()
    if not path.is_file():
        if pretrained.looks_like_name(text):
            try:
                weights = pretrained.load_weights(text)
            except ConfigError as exc:  # an unknown name: say a file was looked for too
                raise DataError(
                    f"{path}: checkpoint not found, and not the name of shipped weights ({exc})"
                ) from exc
            label = f"{weights.name} ({weights.path.name}, sha256 {weights.entry.sha256})"
            return weights.to_task().to(device).eval(), label
        raise DataError(
            f"{path}: checkpoint not found; pass a .ckpt written by `hsi fit` "
            "(runs/<name>/version_N/checkpoints/), an exported .pt, or shipped weights "
            f"({', '.join(pretrained.list_pretrained()) or 'none installed'})"
        )
    if path.suffix.lower() != ".ckpt" and pretrained.is_weight_file(path):
        weights = pretrained.load_weights(path)
        return weights.to_task().to(device).eval(), str(path)
    task = load_task_checkpoint(
        ClassificationTask,
        path,
        device,
        "classification",
        "pass a checkpoint written by `hsi fit` with a ClassificationTask, or a weight file "
        "exported by `python -m hsi.pretrained export`",
    )
    if task.net is None:
        raise DataError(f"{path}: the checkpoint holds no model; pass one written by `hsi fit`")
    return task.to(device).eval(), str(path)


def _side_paths(output: Path) -> dict[str, Path]:
    stem = output.stem
    return {
        "confidence": output.with_name(f"{stem}_confidence.tif"),
        "probabilities": output.with_name(f"{stem}_probabilities.tif"),
        "quicklook": output.with_name(f"{stem}.png"),
    }


def _profile(scene: _Scene, count: int, dtype: str, nodata: float) -> dict[str, Any]:
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "width": scene.width,
        "height": scene.height,
        "count": count,
        "dtype": dtype,
        "nodata": nodata,
        "tiled": True,
        "blockxsize": geotiff_block_size(scene.width),
        "blockysize": geotiff_block_size(scene.height),
        "compress": "deflate",
        "predictor": 3 if dtype.startswith("float") else 2,
        "interleave": "band",
        "BIGTIFF": "IF_SAFER",
    }
    if scene.crs is not None:
        profile["crs"] = scene.crs
    if scene.transform is not None:
        profile["transform"] = scene.transform
    return profile


def _expected_mean_abs(pre: Preprocessor) -> float | None:
    """Mean |value| that transformed training-like pixels have, or None if unknown.

    Standardised bands and whitened components have unit variance (mean |z| ~ 0.8);
    unwhitened components of standardised data have at most ``in_bands / k`` variance on
    average. Without standardisation the scale is the data's own, so nothing is checked.
    """
    if not pre.standardize:
        return None
    if pre.components is not None and not pre.whiten:
        k = len(pre.components)
        return _MEAN_ABS_STANDARD * math.sqrt(max(1.0, (pre.in_bands or k) / k))
    return _MEAN_ABS_STANDARD


def _check_wavelengths(scene: _Scene, trained: Sequence[float] | None, checkpoint: Path) -> None:
    if trained is None or scene.wavelengths is None:
        return
    theirs = np.asarray(trained, dtype=np.float64)
    ours = scene.wavelengths
    if theirs.shape != ours.shape:
        return  # band counts are checked (and reported) separately
    diff = float(np.max(np.abs(theirs - ours)))
    if diff > WAVELENGTH_TOLERANCE_NM:
        raise DataError(
            f"{scene.source}: wavelengths {ours.min():.1f}-{ours.max():.1f} nm differ from "
            f"those checkpoint {checkpoint} was trained on ({theirs.min():.1f}-"
            f"{theirs.max():.1f} nm) by up to {diff:.1f} nm (> {WAVELENGTH_TOLERANCE_NM:g} nm); "
            "use a scene from the same sensor with the same band selection"
        )


Window = tuple[int, int, int, int]  # (r0, r1, c0, c1): rows r0..r1-1, columns c0..c1-1


def _windows(height: int, width: int, tile: int) -> list[Window]:
    return [
        (r0, min(height, r0 + tile), c0, min(width, c0 + tile))
        for r0 in range(0, height, tile)
        for c0 in range(0, width, tile)
    ]


# The pieces below are predict_scene's steps, shared with hsi.inference_distributed (which
# runs them on several processes): _plan_prediction checks everything and loads the model,
# _WindowReader prepares one window, _window_maps turns its probabilities into the output
# arrays, and _SceneOutputs writes the rasters window by window.


@dataclass
class _Plan:
    """Everything one prediction run needs, checked before any output is created."""

    ckpt_path: Path
    out_path: Path
    targets: dict[str, Path]  # output kind (map, confidence, ...) -> final path
    overwrite: bool
    device: torch.device
    task: Any  # ClassificationTask, on ``device`` and in eval mode
    pre: Preprocessor
    patch: int
    num_classes: int
    class_names: list[str]
    scene: _Scene
    pad_mode: str  # the checkpoint's, adapted to the scene size
    map_dtype: str
    windows: list[Window]
    batch_size: int
    tags: dict[str, str]

    @property
    def radius(self) -> int:
        return self.patch // 2

    def reader(self) -> _WindowReader:
        return _WindowReader(
            self.scene, self.pre, self.radius, self.pad_mode, _expected_mean_abs(self.pre)
        )


def _plan_prediction(
    checkpoint: PathLike,
    inputs: PathLike | Sequence[PathLike],
    output: PathLike,
    *,
    tile: int,
    batch_size: int,
    probabilities: bool,
    confidence: bool,
    overwrite: bool,
    quicklook: bool,
    device: str | torch.device,
) -> _Plan:
    """All of predict_scene's checks (before any output exists) and the loaded model."""
    if tile < 1:
        raise ConfigError(f"--tile must be at least 1 pixel, got {tile}")
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {batch_size}")
    ckpt_path = Path(os.fspath(checkpoint)).expanduser()
    out_path = Path(os.fspath(output)).expanduser()
    side = _side_paths(out_path)
    targets = {"map": out_path}
    if confidence:
        targets["confidence"] = side["confidence"]
    if probabilities:
        targets["probabilities"] = side["probabilities"]
    if quicklook:
        targets["quicklook"] = side["quicklook"]
    for path in targets.values():
        refuse_existing(path, overwrite)

    dev = _torch_device(device)
    task, ckpt_label = _load_checkpoint(checkpoint, dev)
    pre = task.get_preprocessor()
    if pre is None or not pre.fitted:
        raise DataError(
            f"{ckpt_path}: the checkpoint has no fitted preprocessing, so the scene cannot be "
            "prepared as the training data was; use a checkpoint written by `hsi fit`"
        )
    hp = task.hparams
    patch, num_classes = int(hp.patch_size), int(hp.num_classes)
    radius = patch // 2
    desc = dict(task.data_description or {})
    names = desc.get("class_names")
    class_names = (
        [str(n) for n in names]
        if names and len(names) == num_classes
        else [f"class_{i}" for i in range(1, num_classes + 1)]
    )
    pad_mode = desc.get("pad_mode") or "reflect"
    if pad_mode not in PAD_MODES:
        raise DataError(f"{ckpt_path}: unknown pad mode {pad_mode!r} in the checkpoint")

    scene = _open_scene(inputs)
    if scene.bands != pre.in_bands:
        raise DataError(
            f"{scene.source} has {scene.bands} bands but checkpoint {ckpt_path} was trained "
            f"on {pre.in_bands}-band data; use a scene from the same sensor with the same "
            "band selection"
        )
    _check_wavelengths(scene, desc.get("wavelengths"), ckpt_path)
    input_paths = (
        [Path(os.fspath(p)) for p in inputs]
        if isinstance(inputs, (list, tuple))
        else [Path(os.fspath(inputs))]
    )
    for path in targets.values():
        if any(path.resolve() == p.expanduser().resolve() for p in input_paths):
            raise DataError(f"{path} is an input of this run; choose another --output")

    # numpy's reflect needs more pixels than the pad; pad_cube switches on the whole scene
    mode = pad_mode
    if mode == "reflect" and min(scene.height, scene.width) <= radius:
        mode = "symmetric"
    return _Plan(
        ckpt_path=ckpt_path,
        out_path=out_path,
        targets=targets,
        overwrite=overwrite,
        device=dev,
        task=task,
        pre=pre,
        patch=patch,
        num_classes=num_classes,
        class_names=class_names,
        scene=scene,
        pad_mode=mode,
        map_dtype="uint8" if num_classes <= 255 else "uint16",
        windows=_windows(scene.height, scene.width, tile),
        batch_size=batch_size,
        tags={
            "class_names": json.dumps(class_names),
            "class_values": "1..K in the order of class_names; 0 = no data",
            "hsi_checkpoint": ckpt_label,
            "hsi_model": str(hp.model),
            "hsi_patch_size": str(patch),
            "hsi_input": scene.source,
        },
    )


class _WindowReader:
    """Reads one window plus its halo, preprocessed and padded for :func:`classify_cube`.

    Also watches the preprocessed values: if they average far beyond training-like data,
    a warning (once) says the scene is probably in other units.
    """

    def __init__(
        self,
        scene: _Scene,
        pre: Preprocessor,
        radius: int,
        pad_mode: str,
        expected_abs: float | None,
    ) -> None:
        self.scene, self.pre, self.radius, self.pad_mode = scene, pre, radius, pad_mode
        self.expected_abs = expected_abs
        self.abs_sum, self.abs_count, self.warned = 0.0, 0, False

    def read(self, window: Window) -> tuple[np.ndarray | None, np.ndarray]:
        """``(padded, core_valid)``; ``padded`` is None when no core pixel has data."""
        scene, radius = self.scene, self.radius
        r0, r1, c0, c1 = window
        rr0, rr1 = max(0, r0 - radius), min(scene.height, r1 + radius)
        cc0, cc1 = max(0, c0 - radius), min(scene.width, c1 + radius)
        data, valid = scene.read(rr0, rr1, cc0, cc1)
        core_valid = valid[r0 - rr0 : r1 - rr0, c0 - cc0 : c1 - cc0]
        if not core_valid.any():
            return None, core_valid
        z = self.pre.transform_cube(data, valid)
        self._check_range(z, data, valid)
        pads = (
            (0, 0),
            (radius - (r0 - rr0), radius - (rr1 - r1)),
            (radius - (c0 - cc0), radius - (cc1 - c1)),
        )
        if any(any(p) for p in pads):
            z = np.pad(z, pads, mode=self.pad_mode)  # type: ignore[call-overload]
        return z, core_valid

    def _check_range(self, z: np.ndarray, data: np.ndarray, valid: np.ndarray) -> None:
        expected = self.expected_abs
        if expected is None:
            return
        self.abs_sum += float(np.abs(z[:, valid]).sum(dtype=np.float64))
        self.abs_count += int(valid.sum()) * z.shape[0]
        mean_abs = self.abs_sum / self.abs_count
        if not self.warned and mean_abs > _RANGE_FACTOR * expected:
            self.warned = True
            raw = data[:, valid]
            pre = self.pre
            warnings.warn(
                f"{self.scene.source}: the scene's values look unlike the training data: "
                f"after the checkpoint's preprocessing the mean |value| is "
                f"{mean_abs:.3g}, more than {_RANGE_FACTOR:g}× the ~{expected:.2f} "
                f"of training-like data (scene {self.scene.dtype}, values "
                f"{raw.min():.4g}..{raw.max():.4g}, mean {raw.mean():.4g}; training "
                f"band means {float(np.min(pre.mean)):.4g}..{float(np.max(pre.mean)):.4g}"
                "); check units and scale factors (e.g. reflectance ×10000 vs 0..1) — "
                "the map is likely wrong",
                UserWarning,
                stacklevel=3,
            )


def _window_maps(
    probs: torch.Tensor,
    core_valid: np.ndarray,
    map_dtype: str,
    confidence: bool,
    probabilities: bool,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Classes (1..K, 0 = no data), and if asked confidence and probabilities (NaN = no data)."""
    conf, pred = probs.max(dim=0)
    classes = (pred.numpy() + 1).astype(map_dtype)
    classes[~core_valid] = 0
    c = pr = None
    if confidence:
        c = conf.numpy().astype(np.float32)
        c[~core_valid] = np.nan
    if probabilities:
        pr = probs.numpy().astype(np.float32)
        pr[:, ~core_valid] = np.nan
    return classes, c, pr


class _SceneOutputs:
    """The run's rasters, opened atomically in ``stack`` and written window by window.

    Counts the class histogram (0 = no data) and the windows written without the model.
    """

    def __init__(self, plan: _Plan, stack: ExitStack) -> None:
        import rasterio

        self.plan = plan
        scene, names, k = plan.scene, plan.class_names, plan.num_classes
        self.palette = class_colors(k)  # the report palette, so maps look alike
        self.histogram = np.zeros(k + 1, dtype=np.int64)
        self.skipped = 0
        self.tmp = {
            kind: stack.enter_context(atomic_output(path, overwrite=plan.overwrite))
            for kind, path in plan.targets.items()
        }
        self.map_dst = stack.enter_context(
            rasterio.open(self.tmp["map"], "w", **_profile(scene, 1, plan.map_dtype, 0))
        )
        self.map_dst.set_band_description(
            1, "class: " + ", ".join(f"{i}={n}" for i, n in enumerate(names, 1))
        )
        self.map_dst.update_tags(**plan.tags)
        self.map_dst.write_colormap(
            1,
            {0: (0, 0, 0, 0)} | {i: (*map(int, self.palette[i]), 255) for i in range(1, k + 1)},
        )
        self.conf_dst = self.prob_dst = None
        if "confidence" in self.tmp:
            self.conf_dst = stack.enter_context(
                rasterio.open(
                    self.tmp["confidence"], "w", **_profile(scene, 1, "float32", math.nan)
                )
            )
            self.conf_dst.set_band_description(1, "confidence (maximum class probability)")
            self.conf_dst.update_tags(**plan.tags)
        if "probabilities" in self.tmp:
            self.prob_dst = stack.enter_context(
                rasterio.open(
                    self.tmp["probabilities"], "w", **_profile(scene, k, "float32", math.nan)
                )
            )
            for i, name in enumerate(names, start=1):
                self.prob_dst.set_band_description(i, name)
            self.prob_dst.update_tags(**plan.tags)

    @property
    def confidence(self) -> bool:
        return self.conf_dst is not None

    @property
    def probabilities(self) -> bool:
        return self.prob_dst is not None

    def write(
        self,
        window: Window,
        classes: np.ndarray,
        conf: np.ndarray | None = None,
        probs: np.ndarray | None = None,
    ) -> None:
        """One window's results (from :func:`_window_maps`)."""
        from rasterio.windows import Window as RioWindow

        r0, r1, c0, c1 = window
        win = RioWindow(c0, r0, c1 - c0, r1 - r0)
        self.histogram += np.bincount(classes.ravel(), minlength=self.plan.num_classes + 1)
        self.map_dst.write(classes[None], window=win)
        if self.conf_dst is not None:
            assert conf is not None
            self.conf_dst.write(conf[None], window=win)
        if self.prob_dst is not None:
            assert probs is not None
            self.prob_dst.write(probs, window=win)

    def write_nodata(self, window: Window) -> None:
        """A window without valid pixels: no data everywhere, the model not run."""
        r0, r1, c0, c1 = window
        self.skipped += 1
        self.histogram[0] += (r1 - r0) * (c1 - c0)
        from rasterio.windows import Window as RioWindow

        win = RioWindow(c0, r0, c1 - c0, r1 - r0)
        self.map_dst.write(np.zeros((1, r1 - r0, c1 - c0), dtype=self.plan.map_dtype), window=win)
        nan = np.full((r1 - r0, c1 - c0), np.nan, dtype=np.float32)
        if self.conf_dst is not None:
            self.conf_dst.write(nan[None], window=win)
        if self.prob_dst is not None:
            self.prob_dst.write(
                np.full((self.plan.num_classes, *nan.shape), np.nan, np.float32), window=win
            )

    def finish(self) -> None:
        """Flush the map and write the quick-look (call inside the ``stack``)."""
        self.map_dst.close()  # flush before the quick-look reads it back
        if "quicklook" in self.tmp:
            _write_quicklook(self.tmp["map"], self.tmp["quicklook"], self.palette)

    def summary(self, seconds: float, total_seconds: float, device: str) -> dict[str, Any]:
        plan, histogram = self.plan, self.histogram
        pixels = plan.scene.height * plan.scene.width
        return {
            "input": plan.scene.source,
            "checkpoint": str(plan.ckpt_path),
            "height": plan.scene.height,
            "width": plan.scene.width,
            "pixels": pixels,
            "valid_pixels": int(pixels - histogram[0]),
            "windows": len(plan.windows),
            "skipped_windows": self.skipped,
            "seconds": round(total_seconds, 3),
            "inference_seconds": round(seconds, 3),
            "pixels_per_second": pixels / max(seconds, 1e-9),
            "class_histogram": {
                name: int(histogram[i]) for i, name in enumerate(plan.class_names, start=1)
            },
            "nodata_pixels": int(histogram[0]),
            "device": device,
            "outputs": {kind: str(path) for kind, path in plan.targets.items()},
        }


def predict_scene(
    checkpoint: PathLike,
    inputs: PathLike | Sequence[PathLike],
    output: PathLike,
    *,
    tile: int = 256,
    batch_size: int = 256,
    probabilities: bool = False,
    confidence: bool = False,
    overwrite: bool = False,
    quicklook: bool = True,
    device: str = "cpu",
    progress: bool = True,
) -> dict[str, Any]:
    """Classify every pixel of a scene with a trained checkpoint into a GeoTIFF class map.

    Args:
        checkpoint: a ``.ckpt`` of a :class:`~hsi.tasks.classification.ClassificationTask`,
            a weight file exported by :mod:`hsi.pretrained`, or shipped weights by name
            (``"indian_pines"``, ``"hybridsn/indian_pines"``).
        inputs: one GeoTIFF/VRT/ENVI (or ``.mat``/``.npy``, read whole) file, or a list of
            GeoTIFF tiles on one pixel grid, mosaicked window by window (never in memory).
        output: the class map (uint8, or uint16 beyond 255 classes): values 1..K, 0 where
            the input has no data; colour table, class names (``class_names`` tag as JSON
            and the band description), the input's CRS and transform.
        tile: window side in pixels; each read is ``tile + 2r`` (r = patch_size // 2).
        batch_size: bounds inference memory (see :func:`classify_cube`).
        probabilities: also write ``<stem>_probabilities.tif`` (float32, one band per class).
        confidence: also write ``<stem>_confidence.tif`` (float32 maximum probability).
        overwrite: replace existing outputs (otherwise they are refused).
        quicklook: also write ``<stem>.png``, the class map at most 2048 pixels a side.
        device: torch device to run the model on.
        progress: show a tqdm bar (pixels/s) over the windows.

    The scene is preprocessed with the checkpoint's preprocessing (fitted on the training
    pixels) and padded with the training pad mode at the true scene border only, so the
    map equals a whole-scene :func:`classify_cube` whatever the tile size. All checks
    (band count, wavelengths, existing outputs, writable directory) run before any output
    is created, and outputs are renamed into place only when complete: an interrupted run
    leaves no file behind. Windows without valid pixels are written as no-data without
    running the model. Float outputs use NaN as no-data.

    Returns a summary: ``pixels``, ``valid_pixels``, ``seconds``, ``pixels_per_second``,
    ``class_histogram`` (class name -> pixels), ``outputs`` (kind -> path) and more.
    """
    plan = _plan_prediction(
        checkpoint,
        inputs,
        output,
        tile=tile,
        batch_size=batch_size,
        probabilities=probabilities,
        confidence=confidence,
        overwrite=overwrite,
        quicklook=quicklook,
        device=device,
    )
    scene, windows = plan.scene, plan.windows
    reader = plan.reader()
    from rasterio.errors import NotGeoreferencedWarning
    from tqdm.auto import tqdm

    start = time.perf_counter()
    with ExitStack() as stack, warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        outputs = _SceneOutputs(plan, stack)
        bar = stack.enter_context(
            tqdm(
                total=scene.height * scene.width,
                unit="px",
                unit_scale=True,
                desc="predict",
                disable=not progress,
            )
        )
        for window in windows:
            padded, core_valid = reader.read(window)
            if padded is None:
                outputs.write_nodata(window)
            else:
                probs = classify_cube(
                    plan.task.net, torch.from_numpy(padded), plan.patch, batch_size, plan.device
                )
                outputs.write(
                    window,
                    *_window_maps(
                        probs, core_valid, plan.map_dtype, outputs.confidence, outputs.probabilities
                    ),
                )
            bar.update(core_valid.size)
            bar.set_postfix(
                windows=f"{len(windows) - outputs.skipped}/{len(windows)}", refresh=False
            )
        seconds = time.perf_counter() - start
        outputs.finish()
    summary = outputs.summary(seconds, time.perf_counter() - start, str(plan.device))
    if reader.abs_count:
        summary["mean_abs_preprocessed"] = reader.abs_sum / reader.abs_count
    return summary


def _write_quicklook(map_path: Path, png_path: Path, palette: np.ndarray) -> None:
    """RGB PNG of the class map, decimated (nearest) to at most 2048 pixels a side."""
    import rasterio
    from PIL import Image
    from rasterio.enums import Resampling

    with rasterio.open(map_path) as src:
        factor = max(1, math.ceil(max(src.height, src.width) / _QUICKLOOK_MAX_SIDE))
        shape = (math.ceil(src.height / factor), math.ceil(src.width / factor))
        classes = src.read(1, out_shape=shape, resampling=Resampling.nearest)
    Image.fromarray(palette[classes]).save(png_path, format="PNG")


# --------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------


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
    # several processes (hsi.inference_distributed): the scene's windows shared out
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
        from hsi import inference_distributed as dist

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
