"""Restoration data: clean cubes scaled to [0, 1], degraded on the fly, evaluated leak-free.

Data flows one way: clean cube(s) (registry or files) -> held-out split (regions of one
scene, or whole scenes) -> scaling fitted on the training part only -> training crops drawn
at random inside the training part, degraded with a generator seeded by (seed, epoch, index)
-> validation/test images made once per run from the held-out parts, with noise seeded by
(seed, part, index) so every epoch and every run sees the same degraded inputs.

**Held-out regions** (``holdout="regions"``): each scene is cut into vertical strips along
its width: the left ``1 - val_fraction - test_fraction`` for training, then a validation
strip, then the test strip at the right edge. Training crops lie wholly inside the training
strip, so no evaluated pixel was ever part of a training crop (the tests check this).
**Held-out scenes** (``holdout="scenes"``): the ``dataset``/``image`` scenes train, the
``val_images``/``test_images`` scenes are evaluated whole.

**Scaling** to ``[0, 1]``, fitted on the training part only (the papers use the data's
minimum and maximum, e.g. QRNN3D's ``minmax_normalize`` of each ICVL cube):

- ``minmax`` (default): ``(x - min) / (max - min)`` with one global min and max over all
  training pixels and bands (QRNN3D/HSDT's per-cube min-max, fitted on training data).
- ``minmax_band``: the same per band (each band stretched to [0, 1]).
- ``none``: the data are already in [0, 1] (checked).

Held-out pixels outside the training range map slightly outside [0, 1]; they are kept
(not clipped), so the reference is exactly the scaled data.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from hsi.data.cube import SpectralCube
from hsi.data.degradations import Degradation, build_degradation
from hsi.errors import ConfigError, DataError

log = logging.getLogger(__name__)

__all__ = ["Region", "RestorationDataModule", "Scaling", "load_clean_cube", "regions_overlap"]

# Fraction of scaled values allowed outside [-0.5, 1.5] before a cube is called "not scaled
# the way the model expects" (a few outliers are normal; reflectance x 1e4 is not).
_RANGE_SLACK = 0.5
_RANGE_TOLERANCE = 0.01
_MIN_EVAL_SIDE = 11  # SSIM's 11x11 window


# --------------------------------------------------------------------------------------
# scaling
# --------------------------------------------------------------------------------------


@dataclass
class Scaling:
    """Affine map of raw values to [0, 1]: ``(x - lo) / (hi - lo)``, per band or global."""

    method: Literal["minmax", "minmax_band", "none"]
    lo: list[float]
    hi: list[float]

    @classmethod
    def fit(cls, method: str, pixels: Sequence[np.ndarray]) -> Scaling:
        """Fit on training ``(bands, h, w)`` arrays; refuses constant bands and data without
        range."""
        if method not in ("minmax", "minmax_band", "none"):
            raise ConfigError(f"scaling must be minmax, minmax_band or none, got {method!r}")
        band_lo = np.min([p.reshape(p.shape[0], -1).min(axis=1) for p in pixels], axis=0)
        band_hi = np.max([p.reshape(p.shape[0], -1).max(axis=1) for p in pixels], axis=0)
        constant = np.flatnonzero(band_hi <= band_lo)
        if constant.size:
            shown = ", ".join(str(int(b)) for b in constant[:10])
            more = " ..." if constant.size > 10 else ""
            raise DataError(
                f"bands {shown}{more} (0-based) are constant over the training data "
                f"(value {float(band_lo[constant[0]]):g}): a dead or zeroed band carries no "
                "signal to restore; drop them with data.bands (a list of the bands to keep)"
            )
        if method == "none":
            lo, hi = float(band_lo.min()), float(band_hi.max())
            if lo < -_RANGE_SLACK / 10 or hi > 1 + _RANGE_SLACK / 10:
                raise DataError(
                    f"scaling='none' but the training data range {lo:g}..{hi:g}, not [0, 1]; "
                    "use scaling: minmax (or minmax_band)"
                )
            n = len(band_lo)
            return cls("none", [0.0] * n, [1.0] * n)
        if method == "minmax":
            n = len(band_lo)
            return cls("minmax", [float(band_lo.min())] * n, [float(band_hi.max())] * n)
        return cls("minmax_band", band_lo.astype(float).tolist(), band_hi.astype(float).tolist())

    @property
    def bands(self) -> int:
        return len(self.lo)

    def _arrays(self, ndim: int) -> tuple[np.ndarray, np.ndarray]:
        shape = (-1,) + (1,) * (ndim - 1)
        lo = np.asarray(self.lo, dtype=np.float32).reshape(shape)
        span = (np.asarray(self.hi, dtype=np.float32) - np.asarray(self.lo, np.float32)).reshape(
            shape
        )
        return lo, span

    def apply(self, x: np.ndarray) -> np.ndarray:
        """Raw ``(bands, ...)`` values to the [0, 1] scale the model works on."""
        if x.shape[0] != self.bands:
            raise DataError(
                f"the scaling was fitted on {self.bands} bands, the data has {x.shape[0]}"
            )
        lo, span = self._arrays(x.ndim)
        return ((np.asarray(x, dtype=np.float32) - lo) / span).astype(np.float32)

    def invert(self, y: np.ndarray) -> np.ndarray:
        """[0, 1]-scale values back to the data's own units."""
        lo, span = self._arrays(y.ndim)
        return (np.asarray(y, dtype=np.float32) * span + lo).astype(np.float32)

    def check_range(self, scaled: np.ndarray, source: str) -> None:
        """Refuse data that, once scaled, mostly fall far outside [0, 1] (other units)."""
        finite = scaled[np.isfinite(scaled)]
        if finite.size == 0:
            return
        outside = float(np.mean((finite < -_RANGE_SLACK) | (finite > 1 + _RANGE_SLACK)))
        if outside > _RANGE_TOLERANCE:
            raise DataError(
                f"{source}: {outside:.0%} of the values fall far outside the range the model "
                f"was trained on (scaled {float(finite.min()):.3g}..{float(finite.max()):.3g}, "
                "expected about 0..1); the data are not scaled as the model expects (other "
                "units, e.g. reflectance x 10000 vs radiance?); use data from the same sensor "
                "and product as the training data"
            )

    def state_dict(self) -> dict[str, Any]:
        return {"method": self.method, "lo": list(self.lo), "hi": list(self.hi)}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> Scaling:
        lo, hi = state["lo"], state["hi"]
        return cls(state["method"], [float(v) for v in lo], [float(v) for v in hi])


# --------------------------------------------------------------------------------------
# clean cubes
# --------------------------------------------------------------------------------------


def _resolve_path(path: str, root: str | None) -> Path:
    """``path`` as given, else relative to the data root (``root``, else ``$HSI_DATA``)."""
    p = Path(os.path.expanduser(path))
    if p.exists() or p.is_absolute():
        return p
    from hsi.data.registry import resolve_root

    candidate = resolve_root(root) / p
    return candidate if candidate.exists() else p


def _read_pixels_matrix(path: Path, variable: str | None, shape: Sequence[int]) -> SpectralCube:
    """A ``bands x pixels`` MATLAB matrix (e.g. Jasper Ridge's ``Y``) as a cube; pixels run
    down the columns first (MATLAB order), as the unmixing releases store them."""
    from hsi.data.readers import mat_variables

    rows, cols = (int(s) for s in shape)
    names = [n for n, (shp, _) in mat_variables(path).items() if len(shp) == 2]
    name = variable or (names[0] if len(names) == 1 else None)
    if name is None:
        raise ConfigError(f"{path}: name the bands x pixels matrix with image_variable ({names})")
    import scipy.io

    try:
        arr = np.asarray(scipy.io.loadmat(path, variable_names=[name])[name])
    except (KeyError, ValueError, NotImplementedError) as exc:
        raise DataError(f"{path}: cannot read variable {name!r} ({exc})") from None
    if arr.ndim != 2 or arr.shape[1] != rows * cols:
        raise DataError(
            f"{path}: {name} has shape {arr.shape}, expected (bands, {rows * cols}) for "
            f"pixels_shape {rows}x{cols}; check pixels_shape (nRow, nCol in the file)"
        )
    cube = arr.reshape(arr.shape[0], cols, rows).transpose(0, 2, 1)
    return SpectralCube(data=np.ascontiguousarray(cube), source=str(path))


def load_clean_cube(
    *,
    dataset: str | None = None,
    image: str | None = None,
    root: str | None = None,
    variable: str | None = None,
    layout: str | None = None,
    pixels_shape: Sequence[int] | None = None,
    bands: Sequence[int] | None = None,
) -> SpectralCube:
    """A clean cube from the registry (``dataset``) or a file, checked for restoration use:
    finite values and no no-data pixels (crops need complete rectangles)."""
    if (dataset is None) == (image is None):
        raise ConfigError("give exactly one of dataset=<registry name> or image=<file>")
    if dataset is not None:
        from hsi.data.registry import load_dataset

        cube = load_dataset(dataset, root=root).cube
    else:
        path = _resolve_path(str(image), root)
        if not path.exists():
            raise DataError(f"{image}: file not found (also looked under the data root)")
        if pixels_shape is not None:
            cube = _read_pixels_matrix(path, variable, pixels_shape)
        else:
            from hsi.data.readers import read_cube

            cube = read_cube(path, variable, layout=layout)
    if bands is not None:
        bad = [b for b in bands if not 0 <= int(b) < cube.bands]
        if bad:
            raise ConfigError(f"bands {bad} do not exist in {cube.source} ({cube.bands} bands)")
        cube = cube.select_bands([int(b) for b in bands])
    cube.check_finite()
    if cube.nodata_mask is not None and cube.nodata_mask.any():
        raise DataError(
            f"{cube.source}: {int(cube.nodata_mask.sum())} no-data pixels; restoration trains "
            "on complete rectangles, so crop the scene to its valid part first"
        )
    return cube


# --------------------------------------------------------------------------------------
# regions and datasets
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Region:
    """Rows ``r0:r1`` and columns ``c0:c1`` of scene ``scene`` (index into the cube list)."""

    scene: int
    r0: int
    r1: int
    c0: int
    c1: int

    @property
    def height(self) -> int:
        return self.r1 - self.r0

    @property
    def width(self) -> int:
        return self.c1 - self.c0

    def as_dict(self) -> dict[str, int]:
        return {"scene": self.scene, "rows": [self.r0, self.r1], "cols": [self.c0, self.c1]}


def _strip_regions(
    scene: int, height: int, width: int, val: float, test: float, multiple: int
) -> dict[str, Region]:
    """Train | val | test vertical strips, each width a multiple of ``multiple``."""
    n_test = int(round(width * test)) // multiple * multiple
    n_val = int(round(width * val)) // multiple * multiple
    n_train = (width - n_test - n_val) // multiple * multiple
    if min(n_test, n_val, n_train) <= 0:
        raise ConfigError(
            f"a {width}-pixel-wide scene cannot give train/val/test strips of fractions "
            f"{1 - val - test:.2f}/{val:.2f}/{test:.2f} (widths multiple of {multiple}); "
            "change val_fraction/test_fraction"
        )
    h = height // multiple * multiple
    return {
        "train": Region(scene, 0, h, 0, n_train),
        "val": Region(scene, 0, h, width - n_test - n_val, width - n_test),
        "test": Region(scene, 0, h, width - n_test, width),
    }


def _augment(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One of the 8 flips/rotations of the square (spatial axes only)."""
    x = np.rot90(x, k=int(rng.integers(4)), axes=(1, 2))
    if rng.integers(2):
        x = x[:, ::-1]
    return np.ascontiguousarray(x)


class _TrainCrops(Dataset):
    """``per_epoch`` random crops of the training regions, degraded on the fly.

    Items are addressed by ``epoch * per_epoch + i`` (see :class:`EpochSampler`), so the
    crop position, augmentation and noise of item ``i`` in epoch ``e`` come from the
    generator seeded with ``(seed, e, i)``: different every epoch, identical across runs
    and across data-loader workers.
    """

    def __init__(
        self,
        cubes: Sequence[np.ndarray],
        regions: Sequence[Region],
        crop: int,
        per_epoch: int,
        degradation: Degradation,
        seed: int,
        augment: bool,
        band_window: int | None = None,
    ) -> None:
        self.cubes, self.regions, self.crop = cubes, list(regions), crop
        self.band_window = band_window
        self.per_epoch, self.degradation, self.seed, self.augment = (
            per_epoch,
            degradation,
            seed,
            augment,
        )
        positions = np.array(
            [max(0, r.height - crop + 1) * max(0, r.width - crop + 1) for r in self.regions],
            dtype=np.float64,
        )
        if positions.sum() == 0:
            sizes = ", ".join(f"{r.height}x{r.width}" for r in self.regions)
            raise ConfigError(
                f"crop_size {crop} does not fit in the training region(s) ({sizes}); lower "
                "crop_size or give the training part more of the scene"
            )
        self.weights = positions / positions.sum()

    def __len__(self) -> int:
        return self.per_epoch

    def crop_box(self, key: int) -> tuple[int, int, int]:
        """(region index, row, col) of item ``key``; exposed for the leak test."""
        return self._draw(key)[1:]

    def _draw(self, key: int) -> tuple[np.random.Generator, int, int, int]:
        epoch, i = divmod(int(key), self.per_epoch)
        rng = np.random.default_rng([self.seed, epoch, i])
        k = int(rng.choice(len(self.regions), p=self.weights))
        reg = self.regions[k]
        r = reg.r0 + int(rng.integers(reg.height - self.crop + 1))
        c = reg.c0 + int(rng.integers(reg.width - self.crop + 1))
        return rng, k, r, c

    def __getitem__(self, key: int) -> dict[str, torch.Tensor]:
        rng, k, r, c = self._draw(key)
        cube = self.cubes[self.regions[k].scene]
        clean = cube[:, r : r + self.crop, c : c + self.crop]
        if self.band_window is not None:
            b0 = int(rng.integers(cube.shape[0] - self.band_window + 1))
            clean = clean[b0 : b0 + self.band_window]
        if self.augment:
            clean = _augment(clean, rng)
        degraded = self.degradation(clean, rng)
        return {"input": torch.from_numpy(degraded), "target": torch.from_numpy(np.array(clean))}


class EpochSampler(Sampler[int]):
    """Shuffled keys ``epoch * n + i``; Lightning calls ``set_epoch`` every epoch."""

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        order = np.random.default_rng([self.seed, self.epoch, 7]).permutation(self.n)
        return iter((self.epoch * self.n + order).tolist())


class _EvalImages(Dataset):
    """Fixed degraded images of held-out regions (whole, or tiles of ``tile`` pixels)."""

    _PART_CODE = {"val": 1, "test": 2}

    def __init__(
        self,
        cubes: Sequence[np.ndarray],
        regions: Sequence[Region],
        degradation: Degradation,
        seed: int,
        part: str,
        tile: int | None,
    ) -> None:
        self.cubes, self.degradation, self.seed = cubes, degradation, seed
        self.code = self._PART_CODE[part]
        self.boxes: list[Region] = []
        for reg in regions:
            if tile is None:
                self.boxes.append(reg)
                continue
            if reg.height < tile or reg.width < tile:
                raise ConfigError(
                    f"eval_tile {tile} is larger than the {part} region "
                    f"{reg.height}x{reg.width}; lower eval_tile or leave it unset"
                )
            rows = sorted({*range(reg.r0, reg.r1 - tile + 1, tile), reg.r1 - tile})
            cols = sorted({*range(reg.c0, reg.c1 - tile + 1, tile), reg.c1 - tile})
            self.boxes += [Region(reg.scene, r, r + tile, c, c + tile) for r in rows for c in cols]

    def __len__(self) -> int:
        return len(self.boxes)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        box = self.boxes[index]
        clean = np.ascontiguousarray(self.cubes[box.scene][:, box.r0 : box.r1, box.c0 : box.c1])
        rng = np.random.default_rng([self.seed, 1000 + self.code, index])
        degraded = self.degradation(clean, rng)
        return {"input": torch.from_numpy(degraded), "target": torch.from_numpy(clean)}


# --------------------------------------------------------------------------------------
# the data module
# --------------------------------------------------------------------------------------


class RestorationDataModule(L.LightningDataModule):
    """Denoising / super-resolution data from clean cubes.

    Args:
        dataset: a registry name (its labels are ignored), or ``None`` with ``image``.
        image: a cube file (any format ``read_cube`` reads); a relative path not found in
            the working directory is looked up under the data root.
        root: data root (else ``$HSI_DATA``).
        image_variable, layout: .mat variable and axis order of ``image``.
        pixels_shape: ``[rows, cols]`` when ``image`` holds a ``bands x pixels`` matrix
            (Jasper Ridge's ``Y``: ``[100, 100]``).
        bands: 0-based bands to keep (e.g. to drop dead bands).
        degradation: spec of :func:`hsi.data.degradations.build_degradation`
            (``gaussian30``, ``blind``, ``complex``, ``bicubic_x4``, or a dict).
        holdout: ``regions`` (strips of the scene) or ``scenes`` (``val_images``/``test_images``).
        val_fraction, test_fraction: strip widths for ``holdout=regions``.
        val_images, test_images: held-out scene files for ``holdout=scenes``.
        scaling: ``minmax`` (global, default), ``minmax_band`` or ``none``; fitted on training
            data only.
        crop_size: side of the training crops (high-resolution pixels; HSDT/QRNN3D: 64).
        crops_per_epoch: training crops drawn per epoch.
        eval_tile: evaluate held-out parts in tiles of this side (``None``: whole parts).
        band_window: train on random windows of this many contiguous bands (``None``: all
            bands). HSDT's authors train on 31-band ICVL crops and run the same network on
            other band counts (``model_kwargs: {flex: true}``); windows make a training step
            on a 200-band scene ~6x cheaper. Validation and test still use every band, so
            the model must accept any band count; the task's ``in_bands`` becomes the window.
        augment: random flips/rotations of training crops.
        seed: seeds crops, augmentation and noise.
        batch_size, num_workers: loader settings (evaluation of whole parts uses batch 1).
    """

    def __init__(
        self,
        dataset: str | None = "indian_pines",
        image: str | None = None,
        root: str | None = None,
        image_variable: str | None = None,
        layout: str | None = None,
        pixels_shape: list[int] | None = None,
        bands: list[int] | None = None,
        degradation: str | dict[str, Any] = "gaussian30",
        holdout: Literal["regions", "scenes"] = "regions",
        val_fraction: float = 0.15,
        test_fraction: float = 0.25,
        val_images: list[str] | None = None,
        test_images: list[str] | None = None,
        scaling: Literal["minmax", "minmax_band", "none"] = "minmax",
        crop_size: int = 64,
        crops_per_epoch: int = 1000,
        eval_tile: int | None = None,
        band_window: int | None = None,
        augment: bool = True,
        seed: int = 0,
        batch_size: int = 16,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        if (dataset is None) == (image is None):
            raise ConfigError("give exactly one of dataset=<registry name> or image=<file>")
        self.degradation = build_degradation(degradation)
        self.scale = int(self.degradation.scale)
        if crop_size < 1 or crop_size % self.scale:
            raise ConfigError(
                f"crop_size {crop_size} must be a positive multiple of the scale {self.scale}"
            )
        if holdout == "regions":
            if not (0 < val_fraction < 1 and 0 < test_fraction < 1):
                raise ConfigError("val_fraction and test_fraction must lie in (0, 1)")
            if val_fraction + test_fraction >= 0.9:
                raise ConfigError("val_fraction + test_fraction leaves under 10% for training")
            if val_images or test_images:
                raise ConfigError("val_images/test_images need holdout: scenes")
        elif holdout == "scenes":
            if not val_images or not test_images:
                raise ConfigError("holdout: scenes needs val_images and test_images (files)")
        else:
            raise ConfigError(f"holdout must be 'regions' or 'scenes', got {holdout!r}")
        if crops_per_epoch < 1 or batch_size < 1:
            raise ConfigError("crops_per_epoch and batch_size must be >= 1")
        if band_window is not None and band_window < 1:
            raise ConfigError(f"band_window must be >= 1 (or null: all bands), got {band_window}")
        if eval_tile is not None and eval_tile % self.scale:
            raise ConfigError(f"eval_tile {eval_tile} must be a multiple of the scale {self.scale}")
        self.dataset, self.image, self.root = dataset, image, root
        self.image_variable, self.layout, self.pixels_shape = image_variable, layout, pixels_shape
        self.bands = bands
        self.degradation_spec = self.degradation.spec()
        self.holdout = holdout
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.val_images, self.test_images = list(val_images or []), list(test_images or [])
        self.scaling_method = scaling
        self.crop_size, self.crops_per_epoch, self.eval_tile = crop_size, crops_per_epoch, eval_tile
        self.band_window = band_window
        self.augment, self.seed = augment, seed
        self.batch_size, self.num_workers = batch_size, num_workers
        self.cubes: list[np.ndarray] | None = None
        self.sources: list[str] = []
        self.regions: dict[str, list[Region]] = {}
        self.scaling: Scaling | None = None
        self.wavelengths: list[float] | None = None

    # ---- facts the task needs ----------------------------------------------------------
    @property
    def task_kind(self) -> str:
        """``super_resolution`` when the degradation downsamples, else ``denoising``."""
        return "super_resolution" if self.scale > 1 else "denoising"

    @property
    def in_bands(self) -> int:
        """Bands of a training input: the cube's, or ``band_window`` when set."""
        self.setup()
        assert self.cubes is not None
        bands = int(self.cubes[0].shape[0])
        if self.band_window is None:
            return bands
        if self.band_window > bands:
            raise ConfigError(f"band_window {self.band_window} exceeds the cube's {bands} bands")
        return self.band_window

    # ---- loading and splitting ---------------------------------------------------------
    def _load(self, **kw: Any) -> SpectralCube:
        return load_clean_cube(
            root=self.root,
            variable=self.image_variable,
            layout=self.layout,
            pixels_shape=self.pixels_shape,
            bands=self.bands,
            **kw,
        )

    def setup(self, stage: str | None = None) -> None:
        if self.cubes is not None:
            return
        main = self._load(dataset=self.dataset, image=self.image)
        raw = [np.asarray(main.data, dtype=np.float32)]
        self.sources = [main.source]
        self.wavelengths = None if main.wavelengths is None else main.wavelengths.tolist()
        if self.holdout == "regions":
            parts = _strip_regions(
                0, main.height, main.width, self.val_fraction, self.test_fraction, self.scale
            )
            self.regions = {k: [v] for k, v in parts.items()}
        else:
            self.regions = {"train": [self._whole(0, main)], "val": [], "test": []}
            for part, files in (("val", self.val_images), ("test", self.test_images)):
                for f in files:
                    cube = self._load(image=f)
                    if cube.bands != main.bands:
                        raise DataError(
                            f"{cube.source} has {cube.bands} bands, the training scene "
                            f"{main.bands}; held-out scenes must come from the same sensor"
                        )
                    raw.append(np.asarray(cube.data, dtype=np.float32))
                    self.sources.append(cube.source)
                    self.regions[part].append(self._whole(len(raw) - 1, cube))
        small = [
            f"{part} {r.height}x{r.width}"
            for part in ("val", "test")
            for r in self.regions[part]
            if min(r.height, r.width) < _MIN_EVAL_SIDE
        ]
        if small:
            raise ConfigError(
                f"held-out images must be at least {_MIN_EVAL_SIDE} pixels a side (the SSIM "
                f"window), got {', '.join(small)}; raise val_fraction/test_fraction"
            )
        train_pixels = [raw[r.scene][:, r.r0 : r.r1, r.c0 : r.c1] for r in self.regions["train"]]
        self.scaling = Scaling.fit(self.scaling_method, train_pixels)
        self.cubes = [self.scaling.apply(c) for c in raw]
        log.info(
            "restoration data: %s, %d bands, regions %s, scaling %s, degradation %s",
            ", ".join(self.sources),
            self.cubes[0].shape[0],
            {k: [r.as_dict() for r in v] for k, v in self.regions.items()},
            self.scaling.method,
            self.degradation.describe(),
        )

    def _whole(self, index: int, cube: SpectralCube) -> Region:
        s = self.scale
        return Region(index, 0, cube.height // s * s, 0, cube.width // s * s)

    # ---- loaders -----------------------------------------------------------------------
    def train_dataset(self) -> _TrainCrops:
        self.setup()
        assert self.cubes is not None
        return _TrainCrops(
            self.cubes,
            self.regions["train"],
            self.crop_size,
            self.crops_per_epoch,
            self.degradation,
            self.seed,
            self.augment,
            self.band_window,
        )

    def eval_dataset(self, part: str) -> _EvalImages:
        self.setup()
        assert self.cubes is not None
        return _EvalImages(
            self.cubes, self.regions[part], self.degradation, self.seed, part, self.eval_tile
        )

    def train_dataloader(self) -> DataLoader:
        ds = self.train_dataset()
        return DataLoader(
            ds,
            batch_size=self.batch_size,
            sampler=EpochSampler(len(ds), self.seed),
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            drop_last=False,
        )

    def _eval_loader(self, part: str) -> DataLoader:
        ds = self.eval_dataset(part)
        same_size = len({(b.height, b.width) for b in ds.boxes}) == 1
        return DataLoader(
            ds,
            batch_size=self.batch_size if same_size else 1,
            shuffle=False,
            num_workers=self.num_workers,
        )

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")

    def smallest_eval_side(self) -> int:
        """Smallest side (high-resolution pixels) of a validation/test image."""
        self.setup()
        boxes = self.eval_dataset("val").boxes + self.eval_dataset("test").boxes
        return min(min(b.height, b.width) for b in boxes)

    # ---- what a report and a checkpoint need ------------------------------------------
    def describe(self) -> dict[str, Any]:
        self.setup()
        assert self.scaling is not None
        return {
            "dataset": self.dataset or "custom",
            "sources": list(self.sources),
            "bands": self.bands,
            "holdout": self.holdout,
            "regions": {k: [r.as_dict() for r in v] for k, v in self.regions.items()},
            "scaling": self.scaling.method,
            "degradation": self.degradation_spec,
            "scale": self.scale,
            "crop_size": self.crop_size,
            "band_window": self.band_window,
            "crops_per_epoch": self.crops_per_epoch,
            "eval_tile": self.eval_tile,
            "seed": self.seed,
            "wavelengths": self.wavelengths,
        }


def regions_overlap(a: Region, b: Region) -> bool:
    """True when two regions of the same scene share a pixel."""
    return (
        a.scene == b.scene
        and max(a.r0, b.r0) < min(a.r1, b.r1)
        and max(a.c0, b.c0) < min(a.c1, b.c1)
    )
