"""Restoration data: clean cubes scaled to [0, 1], degraded on the fly, evaluated leak-free.

Data flows one way: clean cube(s) (registry or files) -> held-out split (regions of one
scene, or whole scenes) -> scaling fitted on the training part only -> training crops drawn
at random inside the training part, degraded with a generator seeded by (seed, epoch, index)
-> validation/test images made once per run from the held-out parts, with noise seeded by
(seed, part, index) so every epoch and every run sees the same degraded inputs. With
``test_degradations`` (e.g. QRNN3D's ICVL noise cases 1-5) the test images are made once per
listed degradation, each case with its own fixed noise, so one ``hsi test`` reports them all.

**Held-out regions** (``holdout="regions"``): each scene is cut into vertical strips along
its width: the left ``1 - val_fraction - test_fraction`` for training, then a validation
strip, then the test strip at the right edge. Training crops lie wholly inside the training
strip, so no evaluated pixel was ever part of a training crop (the tests check this).
**Held-out scenes** (``holdout="scenes"``): the ``dataset``/``image`` scenes train, the
``val_images``/``test_images`` scenes are evaluated whole.
**A scene collection** (``holdout="collection"``, e.g. ICVL's 201 scenes): the card's
``test_scenes`` list named by ``test_list`` is the test set, every scene on none of the card's
test lists trains except ``val_scenes`` of them drawn with ``seed`` for validation. Scenes are
read on demand and never all held: training crops come from an LRU cache of ``cache_scenes``
scenes, visited group by group (see :class:`_CollectionCrops`).

**Scaling** to ``[0, 1]``, fitted on the training part only (the papers use the data's
minimum and maximum, e.g. QRNN3D's ``minmax_normalize`` of each ICVL cube):

- ``minmax`` (default): ``(x - min) / (max - min)`` with one global min and max over all
  training pixels and bands (QRNN3D/HSDT's per-cube min-max, fitted on training data).
- ``minmax_band``: the same per band (each band stretched to [0, 1]).
- ``minmax_scene`` (collections only): every cube by its own min and max: each training
  scene whole, each validation/test image after its centre crop. This is what QRNN3D/HSDT do
  to ICVL (``minmax_normalize`` of each training scene before cropping; ``normalized`` of each
  512 x 512 test crop), and it uses no value of one scene to scale another, so nothing crosses
  the split. A checkpoint stores only the rule: a new scene is scaled by its own min and max.
- ``none``: the data are already in [0, 1] (checked).

Held-out pixels outside the training range map slightly outside [0, 1]; they are kept
(not clipped), so the reference is exactly the scaled data.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
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
    """Affine map of raw values to [0, 1]: ``(x - lo) / (hi - lo)``, per band or global.

    ``minmax_scene`` is a rule, not a map (``lo``/``hi`` empty): each cube is scaled by its
    own min and max, so :meth:`apply` refuses it; :meth:`of_cube` makes the map of one cube.
    """

    method: Literal["minmax", "minmax_band", "minmax_scene", "none"]
    lo: list[float]
    hi: list[float]

    @classmethod
    def per_scene(cls) -> Scaling:
        """The ``minmax_scene`` rule (what a checkpoint stores for a per-scene scaled run)."""
        return cls("minmax_scene", [], [])

    @classmethod
    def of_cube(cls, x: np.ndarray, source: str) -> Scaling:
        """Global min-max map of one ``(bands, ...)`` cube (the ``minmax_scene`` rule)."""
        lo, hi = float(np.min(x)), float(np.max(x))
        if not hi > lo:
            raise DataError(f"{source}: every value is {lo:g}; there is nothing to restore")
        n = int(x.shape[0])
        return cls("minmax", [lo] * n, [hi] * n)

    @classmethod
    def fit(cls, method: str, pixels: Sequence[np.ndarray]) -> Scaling:
        """Fit on training ``(bands, h, w)`` arrays; refuses constant bands and data without
        range. Only per-band minima and maxima matter, so ``pixels`` may be per-scene
        ``(bands, 1, 2)`` summaries of [min, max] (how a collection is fitted, streaming)."""
        if method == "minmax_scene":
            return cls.per_scene()
        if method not in ("minmax", "minmax_band", "none"):
            raise ConfigError(
                f"scaling must be minmax, minmax_band, minmax_scene or none, got {method!r}"
            )
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
        if self.method == "minmax_scene":
            raise ConfigError(
                "scaling minmax_scene (the model was trained on cubes each scaled by its own "
                "min and max) has no fixed range to apply: scale each cube by its own range "
                "(Scaling.of_cube(cube, source))"
            )
        shape = (-1,) + (1,) * (ndim - 1)
        lo = np.asarray(self.lo, dtype=np.float32).reshape(shape)
        span = (np.asarray(self.hi, dtype=np.float32) - np.asarray(self.lo, np.float32)).reshape(
            shape
        )
        return lo, span

    def apply(self, x: np.ndarray) -> np.ndarray:
        """Raw ``(bands, ...)`` values to the [0, 1] scale the model works on."""
        if self.method != "minmax_scene" and x.shape[0] != self.bands:
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
        from hsi.data.readers import read_cube, read_pixels_matrix

        if pixels_shape is not None:
            cube = read_pixels_matrix(path, variable, shape=pixels_shape)
        else:
            cube = read_cube(path, variable, layout=layout)
    return _checked_clean(cube, bands)


def _checked_clean(cube: SpectralCube, bands: Sequence[int] | None) -> SpectralCube:
    """``cube`` with only ``bands`` (all when ``None``), refused when it holds NaN/inf or
    no-data pixels."""
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
        return _training_pair(
            cube[:, r : r + self.crop, c : c + self.crop], self.band_window, self.augment,
            self.degradation, rng,
        )  # fmt: skip


def _training_pair(
    clean: np.ndarray,
    band_window: int | None,
    augment: bool,
    degradation: Degradation,
    rng: np.random.Generator,
) -> dict[str, torch.Tensor]:
    """One training item from a clean crop: a random band window, flips/rotations, then the
    degradation, all drawn from the item's own generator (so the item is reproducible)."""
    if band_window is not None:
        b0 = int(rng.integers(clean.shape[0] - band_window + 1))
        clean = clean[b0 : b0 + band_window]
    if augment:
        clean = _augment(clean, rng)
    degraded = degradation(clean, rng)
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


def _eval_rng(seed: int, code: int, index: int, noise_key: int | None) -> np.random.Generator:
    """The generator of held-out image ``index`` of part ``code``: seeded by
    ``(seed, part, index)``, plus ``noise_key`` for an extra test degradation (see
    :meth:`RestorationDataModule.test_datasets`), so every case has its own fixed noise."""
    key = [seed, 1000 + code, index]
    return np.random.default_rng(key if noise_key is None else [*key, noise_key])


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
        noise_key: int | None = None,
    ) -> None:
        self.cubes, self.degradation, self.seed = cubes, degradation, seed
        self.code = self._PART_CODE[part]
        self.noise_key = noise_key
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
        rng = _eval_rng(self.seed, self.code, index, self.noise_key)
        degraded = self.degradation(clean, rng)
        return {"input": torch.from_numpy(degraded), "target": torch.from_numpy(clean)}


def _center_box(reg: Region, size: int, what: str) -> Region:
    """The central ``size`` x ``size`` square of ``reg`` (QRNN3D's ``crop_center``)."""
    if reg.height < size or reg.width < size:
        raise ConfigError(
            f"eval_center_crop {size} is larger than the {what} ({reg.height}x{reg.width}); "
            "lower eval_center_crop or leave it unset"
        )
    r0, c0 = reg.r0 + (reg.height - size) // 2, reg.c0 + (reg.width - size) // 2
    return Region(reg.scene, r0, r0 + size, c0, c0 + size)


# --------------------------------------------------------------------------------------
# scene collections (holdout="collection")
# --------------------------------------------------------------------------------------


def _scaled(raw: np.ndarray, scaling: Scaling, source: str) -> np.ndarray:
    """``raw`` (a float32 array the caller owns) on the [0, 1] scale, in place so that an
    ICVL-sized scene (~220 MB) is not copied again: the fitted map, or under ``minmax_scene``
    the cube's own."""
    fitted = Scaling.of_cube(raw, source) if scaling.method == "minmax_scene" else scaling
    if raw.shape[0] != fitted.bands:
        raise DataError(
            f"{source}: the scaling is for {fitted.bands} bands, the scene has {raw.shape[0]}"
        )
    lo, span = fitted._arrays(raw.ndim)
    raw -= lo
    raw /= span
    return raw


class _SceneCollection:
    """The scenes of a restoration card split into ``train``/``val``/``test`` file names.

    It holds no cube: :meth:`read` loads one scene (checked, bands selected, float32) per call
    and counts the reads in ``loads``, which the memory-bound tests look at.
    """

    def __init__(
        self, scenes: Any, parts: dict[str, list[str]], bands: Sequence[int] | None
    ) -> None:
        self.scenes, self.parts = scenes, parts
        self.bands = None if bands is None else [int(b) for b in bands]
        self.loads = 0
        self._sizes: dict[str, tuple[int, int]] = {}

    def read(self, name: str, window: Region | None = None) -> np.ndarray:
        """One scene, or only its ``window`` (read as such: a v7.3 ICVL test scene is
        1392 × 1300 × 31, of which the protocol scores the central 512 × 512)."""
        box = None if window is None else ((window.r0, window.r1), (window.c0, window.c1))
        cube = _checked_clean(self.scenes.load(name, window=box), self.bands)
        self.loads += 1
        if window is None:
            self._sizes[name] = (cube.height, cube.width)
        return np.asarray(cube.data, dtype=np.float32)

    def size(self, name: str) -> tuple[int, int]:
        """(height, width) of a scene, from a read of its first band if never read whole."""
        if name not in self._sizes:
            probe = self.scenes.load(name, bands=[0])
            self._sizes[name] = (probe.height, probe.width)
        return self._sizes[name]


class _SceneCache:
    """At most ``size`` loaded scenes; the least recently used is dropped before another is
    loaded, so ``size`` x one scene bounds the memory (per data-loader worker)."""

    def __init__(self, size: int, load: Callable[[str], np.ndarray]) -> None:
        self.size, self.load = size, load
        self._items: OrderedDict[str, np.ndarray] = OrderedDict()
        self.peak = 0  # most scenes ever held at once (checked by the tests)

    def get(self, name: str) -> np.ndarray:
        if name in self._items:
            self._items.move_to_end(name)
            return self._items[name]
        while len(self._items) >= self.size:
            self._items.popitem(last=False)
        cube = self.load(name)
        self._items[name] = cube
        self.peak = max(self.peak, len(self._items))
        return cube


class _CollectionCrops(Dataset):
    """``per_epoch`` random crops of a collection's training scenes, degraded on the fly,
    with at most ``cache_scenes`` scenes in memory.

    Every epoch the training scenes are shuffled (seeded by ``(seed, epoch)``) and cut into
    groups of ``cache_scenes``; the epoch's items are cut into as many contiguous blocks and
    the crops of block ``g`` come from the scenes of group ``g`` only.
    :class:`GroupedEpochSampler` shuffles the items inside each block but keeps the blocks in
    order, so each scene is read once per epoch (per loader worker) and serves many crops.
    (QRNN3D/HSDT pre-extract ICVL patches into an LMDB; this crops on the fly instead.) As in
    :class:`_TrainCrops`, item ``key = epoch * per_epoch + i`` draws its scene, position, band
    window, augmentation and noise from ``(seed, epoch, i)``: new every epoch, the same in
    every run.
    """

    def __init__(
        self,
        collection: _SceneCollection,
        scaling: Scaling,
        crop: int,
        per_epoch: int,
        degradation: Degradation,
        seed: int,
        augment: bool,
        band_window: int | None,
        cache_scenes: int,
    ) -> None:
        self.collection, self.names = collection, list(collection.parts["train"])
        self.scaling, self.crop, self.per_epoch = scaling, crop, per_epoch
        self.degradation, self.seed, self.augment = degradation, seed, augment
        self.band_window, self.group_size = band_window, cache_scenes
        self.n_groups = -(-len(self.names) // cache_scenes)
        self.cache = _SceneCache(cache_scenes, self._load)
        self._plan: tuple[int, list[list[str]]] = (-1, [])

    def _load(self, name: str) -> np.ndarray:
        return _scaled(self.collection.read(name), self.scaling, name)

    def __len__(self) -> int:
        return self.per_epoch

    def groups(self, epoch: int) -> list[list[str]]:
        """The groups of scenes epoch ``epoch`` visits, in order."""
        if self._plan[0] != epoch:
            order = np.random.default_rng([self.seed, epoch, 5]).permutation(len(self.names))
            names = [self.names[j] for j in order]
            k = self.group_size
            self._plan = (epoch, [names[j : j + k] for j in range(0, len(names), k)])
        return self._plan[1]

    def block_starts(self) -> list[int]:
        """First item of each group's block, then ``per_epoch``: item ``i`` is in block
        ``i * n_groups // per_epoch``."""
        return [-(-g * self.per_epoch // self.n_groups) for g in range(self.n_groups + 1)]

    def _draw(self, key: int) -> tuple[np.random.Generator, str, np.ndarray, int, int]:
        epoch, i = divmod(int(key), self.per_epoch)
        rng = np.random.default_rng([self.seed, epoch, i])
        group = self.groups(epoch)[i * self.n_groups // self.per_epoch]
        name = group[int(rng.integers(len(group)))]
        cube = self.cache.get(name)
        _, h, w = cube.shape
        if h < self.crop or w < self.crop:
            raise DataError(
                f"training scene {name} is {h}x{w} pixels, smaller than crop_size {self.crop}; "
                "lower crop_size or remove the scene from the collection"
            )
        r, c = int(rng.integers(h - self.crop + 1)), int(rng.integers(w - self.crop + 1))
        return rng, name, cube, r, c

    def crop_box(self, key: int) -> tuple[str, int, int]:
        """(scene file name, row, col) of item ``key``; exposed for the leak test."""
        _, name, _, r, c = self._draw(key)
        return name, r, c

    def __getitem__(self, key: int) -> dict[str, torch.Tensor]:
        rng, _, cube, r, c = self._draw(key)
        return _training_pair(
            cube[:, r : r + self.crop, c : c + self.crop], self.band_window, self.augment,
            self.degradation, rng,
        )  # fmt: skip


class GroupedEpochSampler(Sampler[int]):
    """Keys ``epoch * n + i`` shuffled inside consecutive blocks (``starts``, ending with
    ``n``) with the blocks kept in order; Lightning calls ``set_epoch`` every epoch."""

    def __init__(self, starts: Sequence[int], seed: int) -> None:
        self.starts, self.seed, self.epoch = list(starts), seed, 0
        self.n = self.starts[-1]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng([self.seed, self.epoch, 7])
        keys: list[int] = []
        for a, b in zip(self.starts[:-1], self.starts[1:], strict=True):
            keys += (self.epoch * self.n + a + rng.permutation(b - a)).tolist()
        return iter(keys)


class _CollectionImages(Dataset):
    """Fixed degraded held-out scenes of a collection, read when asked for (none is kept):
    each scene whole, or its central ``center_crop`` square, sides floored to a multiple of
    the scale; noise seeded by ``(seed, part, index)`` as in :class:`_EvalImages`."""

    def __init__(
        self,
        collection: _SceneCollection,
        part: str,
        scaling: Scaling,
        degradation: Degradation,
        seed: int,
        center_crop: int | None,
        scale: int,
        noise_key: int | None = None,
    ) -> None:
        self.collection, self.part, self.names = collection, part, list(collection.parts[part])
        self.scaling, self.degradation, self.seed = scaling, degradation, seed
        self.code = _EvalImages._PART_CODE[part]
        self.center_crop, self.scale = center_crop, scale
        self.noise_key = noise_key

    def __len__(self) -> int:
        return len(self.names)

    def _box(self, name: str, height: int, width: int) -> Region:
        s = self.scale
        box = Region(0, 0, height // s * s, 0, width // s * s)
        if self.center_crop is None:
            return box
        return _center_box(box, self.center_crop, f"{self.part} scene {name}")

    def side(self, index: int) -> int:
        """Smaller side of image ``index`` (reads the scene only when no crop says it)."""
        if self.center_crop is not None:
            return self.center_crop  # a scene too small for it is refused when read
        name = self.names[index]
        box = self._box(name, *self.collection.size(name))
        return min(box.height, box.width)

    def clean(self, index: int) -> np.ndarray:
        """Image ``index`` on the [0, 1] scale (under ``minmax_scene``: by its own range).

        With ``center_crop`` only the crop is read (its range is the one ``minmax_scene``
        scales by either way: QRNN3D scales the test crop, not the scene)."""
        name = self.names[index]
        if self.center_crop is not None:
            box = self._box(name, *self.collection.size(name))
            part = self.collection.read(name, window=box)
        else:
            raw = self.collection.read(name)
            box = self._box(name, raw.shape[1], raw.shape[2])
            part = np.ascontiguousarray(raw[:, box.r0 : box.r1, box.c0 : box.c1])
        return _scaled(part, self.scaling, name)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        clean = self.clean(index)
        rng = _eval_rng(self.seed, self.code, index, self.noise_key)
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
        test_degradations: specs to test under *instead of* ``degradation`` (which still
            makes the training and validation inputs), one test set per spec over the same
            held-out images, e.g. ``[case1, case2, case3, case4, case5]``: QRNN3D and HSDT
            train one complex-noise model and report it per ICVL noise case. Each case has
            its own fixed noise (see :meth:`test_datasets`); ``test_dataloader`` then
            returns one loader per spec, in this order, and the task reports each.
            All must have the scale of ``degradation``. ``None``: test under ``degradation``.
        holdout: ``regions`` (strips of the scene), ``scenes`` (``val_images``/``test_images``)
            or ``collection`` (the scenes of a collection card such as ``icvl``).
        val_fraction, test_fraction: strip widths for ``holdout=regions``.
        val_images, test_images: held-out scene files for ``holdout=scenes``.
        test_list: for ``holdout=collection``, which of the card's ``test_scenes`` lists is
            the test set (ICVL: ``gaussian``, 50 scenes, or ``complex``, 51 scenes, QRNN3D's
            lists); may be left out when the card has one list. Scenes on *any* of the card's
            lists never train (QRNN3D trains on the 100 ICVL scenes on neither list, and HSDT's
            complex-noise model starts from its Gaussian one).
        val_scenes: for ``holdout=collection``, scenes drawn with ``seed`` from the training
            scenes to validate on (checkpoint selection); they never train. The papers
            validate on test images; this keeps the test set unseen.
        cache_scenes: for ``holdout=collection``, scenes held at once for training crops.
            Memory bound: ``cache_scenes`` x one scene per loader process (``max(1,
            num_workers)`` of them; an ICVL scene is ~220 MB as float32), plus about one more
            scene while the reader loads one. A larger cache mixes more scenes into
            consecutive batches, at that memory cost (see :class:`_CollectionCrops`).
        scaling: ``minmax`` (global, default), ``minmax_band``, ``minmax_scene`` (collections:
            each cube by its own min and max, as the papers do) or ``none``; global scalings are
            fitted on training data only (for a collection, streaming one scene at a time).
        crop_size: side of the training crops (high-resolution pixels; HSDT/QRNN3D: 64).
        crops_per_epoch: training crops drawn per epoch.
        eval_tile: evaluate held-out parts in tiles of this side (``None``: whole parts;
            not with a collection).
        eval_center_crop: evaluate only the central square of this side of each held-out
            image (QRNN3D/HSDT test on the central 512 x 512 of each ICVL scene); ``None``:
            whole images.
        band_window: train on random windows of this many contiguous bands (``None``: all
            bands). HSDT's authors train on 31-band ICVL crops and run the same network on
            other band counts (``model_kwargs: {flex: true}``); windows make a training step
            on a 200-band scene ~6x cheaper. Validation and test still use every band, so
            the model must accept any band count; the task's ``in_bands`` becomes the window.
        augment: random flips/rotations of training crops.
        seed: seeds crops, augmentation, noise and the choice of validation scenes.
        batch_size, num_workers: loader settings (evaluation of whole parts, and of every
            collection image, uses batch 1).
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
        test_degradations: list[str | dict[str, Any]] | None = None,
        holdout: Literal["regions", "scenes", "collection"] = "regions",
        val_fraction: float = 0.15,
        test_fraction: float = 0.25,
        val_images: list[str] | None = None,
        test_images: list[str] | None = None,
        test_list: str | None = None,
        val_scenes: int = 5,
        cache_scenes: int = 4,
        scaling: Literal["minmax", "minmax_band", "minmax_scene", "none"] = "minmax",
        crop_size: int = 64,
        crops_per_epoch: int = 1000,
        eval_tile: int | None = None,
        eval_center_crop: int | None = None,
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
        self.test_degradations = self._build_test_degradations(test_degradations)
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
        elif holdout == "collection":
            self._check_collection_args(
                dataset, val_images, test_images, val_scenes, cache_scenes, eval_tile
            )
        else:
            raise ConfigError(
                f"holdout must be 'regions', 'scenes' or 'collection', got {holdout!r}"
            )
        if holdout != "collection" and test_list is not None:
            raise ConfigError("test_list picks a collection's test scenes: use holdout: collection")
        if holdout != "collection" and scaling == "minmax_scene":
            raise ConfigError(
                "scaling minmax_scene scales each scene of a collection by itself; with "
                f"holdout {holdout} use minmax (fitted on the training part)"
            )
        if crops_per_epoch < 1 or batch_size < 1:
            raise ConfigError("crops_per_epoch and batch_size must be >= 1")
        if band_window is not None and band_window < 1:
            raise ConfigError(f"band_window must be >= 1 (or null: all bands), got {band_window}")
        if eval_tile is not None and eval_tile % self.scale:
            raise ConfigError(f"eval_tile {eval_tile} must be a multiple of the scale {self.scale}")
        if eval_center_crop is not None and (
            eval_center_crop < _MIN_EVAL_SIDE or eval_center_crop % self.scale
        ):
            raise ConfigError(
                f"eval_center_crop {eval_center_crop} must be at least {_MIN_EVAL_SIDE} (the "
                f"SSIM window) and a multiple of the scale {self.scale}"
            )
        self.dataset, self.image, self.root = dataset, image, root
        self.image_variable, self.layout, self.pixels_shape = image_variable, layout, pixels_shape
        self.bands = bands
        self.degradation_spec = self.degradation.spec()
        self.holdout = holdout
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.val_images, self.test_images = list(val_images or []), list(test_images or [])
        self.test_list, self.val_scenes, self.cache_scenes = test_list, val_scenes, cache_scenes
        self.scaling_method = scaling
        self.crop_size, self.crops_per_epoch, self.eval_tile = crop_size, crops_per_epoch, eval_tile
        self.eval_center_crop = eval_center_crop
        self.band_window = band_window
        self.augment, self.seed = augment, seed
        self.batch_size, self.num_workers = batch_size, num_workers
        self.cubes: list[np.ndarray] | None = None
        self.collection: _SceneCollection | None = None
        self.sources: list[str] = []
        self.regions: dict[str, list[Region]] = {}
        self.scaling: Scaling | None = None
        self.wavelengths: list[float] | None = None
        self._n_bands = 0

    def _build_test_degradations(
        self, specs: Sequence[str | dict[str, Any]] | None
    ) -> list[Degradation]:
        """The test degradations, checked: each builds, has the training scale (one model
        restores one scale) and differs from the others (a repeated case would be reported
        twice under one name). Sets the labels and specs the task reports them by."""
        self.test_degradation_names: list[str] = []
        if specs is None:
            return []
        if isinstance(specs, (str, dict)) or not specs:
            raise ConfigError(
                "test_degradations must be a non-empty list of degradation specs (e.g. "
                f"[case1, case2, case3, case4, case5]) or null, got {specs!r}"
            )
        built: list[Degradation] = []
        seen: dict[str, str] = {}
        for k, spec in enumerate(specs):
            try:
                d = build_degradation(spec)
            except ConfigError as exc:
                raise ConfigError(f"test_degradations[{k}] {spec!r}: {exc}") from None
            label = spec.strip().lower() if isinstance(spec, str) else d.describe()
            label = label.replace(" ", "")
            if int(d.scale) != self.scale:
                raise ConfigError(
                    f"test_degradations[{k}] {label} has scale {d.scale} but degradation "
                    f"{self.degradation.describe()} has scale {self.scale}; a model restores "
                    "one scale, so test it under degradations of the scale it was trained for"
                )
            key = json.dumps(d.spec(), sort_keys=True)
            if key in seen:
                raise ConfigError(
                    f"test_degradations lists {seen[key]} and {label}, the same degradation "
                    f"({d.describe()}); list each once"
                )
            seen[key] = label
            built.append(d)
            self.test_degradation_names.append(label)
        return built

    @property
    def test_degradation_specs(self) -> list[dict[str, Any]]:
        """The specs of ``test_degradations``, in order (what the task's report records)."""
        return [d.spec() for d in self.test_degradations]

    def _noise_key(self, k: int) -> int | None:
        """Extra seed of test degradation ``k``: none when it is ``degradation`` itself (its
        test set is then exactly the one a run without ``test_degradations`` scores), else
        a digest of its spec, so each case's noise is fixed, differs from the others', and
        does not depend on the order or the rest of the list."""
        spec = self.test_degradations[k].spec()
        if spec == self.degradation_spec:
            return None
        digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).digest()
        return int.from_bytes(digest[:4], "little")

    @staticmethod
    def _check_collection_args(
        dataset: str | None,
        val_images: list[str] | None,
        test_images: list[str] | None,
        val_scenes: int,
        cache_scenes: int,
        eval_tile: int | None,
    ) -> None:
        if dataset is None:
            raise ConfigError(
                "holdout: collection needs dataset=<a restoration card with several scenes, "
                "e.g. icvl>, not image="
            )
        if val_images or test_images:
            raise ConfigError(
                "holdout: collection takes its test scenes from the card (test_list) and draws "
                "val_scenes from the rest; drop val_images/test_images"
            )
        if val_scenes < 1 or cache_scenes < 1:
            raise ConfigError(
                f"val_scenes and cache_scenes must be >= 1, got {val_scenes} and {cache_scenes}"
            )
        if eval_tile is not None:
            raise ConfigError(
                "eval_tile is not used with holdout: collection; evaluate each held-out scene "
                "whole or its central square (eval_center_crop)"
            )

    # ---- facts the task needs ----------------------------------------------------------
    @property
    def task_kind(self) -> str:
        """``super_resolution`` when the degradation downsamples, else ``denoising``."""
        return "super_resolution" if self.scale > 1 else "denoising"

    @property
    def in_bands(self) -> int:
        """Bands of a training input: the cube's, or ``band_window`` when set."""
        self.setup()
        bands = self._n_bands
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
        if self.cubes is not None or self.collection is not None:
            return
        if self.holdout == "collection":
            self._setup_collection()
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
        self._n_bands = int(self.cubes[0].shape[0])
        log.info(
            "restoration data: %s, %d bands, regions %s, scaling %s, degradation %s",
            ", ".join(self.sources),
            self.cubes[0].shape[0],
            {k: [r.as_dict() for r in v] for k, v in self.regions.items()},
            self.scaling.method,
            self.degradation.describe(),
        )

    def _split_collection(self, scenes: Any) -> dict[str, list[str]]:
        """Test: the card's ``test_list``; validation: ``val_scenes`` drawn with the seed
        from the scenes on none of the card's lists; training: the rest of those."""
        card = scenes.card
        if not card.test_scenes:
            raise ConfigError(
                f"{card.name} lists no test scenes (test_scenes in its card), so holdout: "
                "collection has nothing to test on; add the papers' list to the card, or use "
                "holdout: scenes with val_images/test_images"
            )
        test_list = self.test_list
        if test_list is None:
            if len(card.test_scenes) != 1:
                raise ConfigError(
                    f"{card.name} has several test lists; name one with test_list "
                    f"({', '.join(card.test_scenes)})"
                )
            test_list = next(iter(card.test_scenes))
        test = scenes.split(test_list).scene_names  # every listed scene must be present
        listed = {n for names in card.test_scenes.values() for n in names}
        rest = [n for n in scenes.scene_names if n not in listed]
        if len(rest) <= self.val_scenes:
            raise DataError(
                f"{card.name}: {len(rest)} scenes under {scenes.paths[0].parent} are on none of "
                f"its test lists, too few for {self.val_scenes} validation scenes and training; "
                "add the training scenes or lower val_scenes"
            )
        pick = np.random.default_rng([self.seed, 11]).choice(len(rest), self.val_scenes, False)
        val = [rest[i] for i in sorted(pick.tolist())]
        train = [n for n in rest if n not in set(val)]
        self.test_list = test_list
        return {"train": train, "val": val, "test": list(test)}

    def _setup_collection(self) -> None:
        from hsi.data.registry import RestorationScenes, load_dataset

        scenes = load_dataset(str(self.dataset), root=self.root)
        if not isinstance(scenes, RestorationScenes):
            raise ConfigError(
                f"{self.dataset} is a labelled (classification) scene; holdout: collection "
                "needs a restoration card with several scenes (e.g. icvl)"
            )
        card = scenes.card
        if self.bands is not None:
            bad = [b for b in self.bands if not 0 <= int(b) < card.bands]
            if bad:
                raise ConfigError(f"bands {bad} do not exist in {card.name} ({card.bands} bands)")
        collection = _SceneCollection(scenes, self._split_collection(scenes), self.bands)
        self._n_bands = len(self.bands) if self.bands is not None else card.bands
        wl = card.wavelengths_nm
        if wl is not None:
            self.wavelengths = [float(wl[int(b)]) for b in (self.bands or range(len(wl)))]
        self.sources = [str(scenes.paths[0].parent)]
        self.scaling = self._fit_collection_scaling(collection)
        self.collection = collection
        log.info(
            "restoration data: %s, %d bands, %d training / %d validation (%s) / %d test scenes "
            "(%s list), scaling %s, degradation %s",
            self.sources[0],
            self._n_bands,
            *(len(collection.parts[p]) for p in ("train", "val")),
            ", ".join(collection.parts["val"]),
            len(collection.parts["test"]),
            self.test_list,
            self.scaling.method,
            self.degradation.describe(),
        )

    def _fit_collection_scaling(self, collection: _SceneCollection) -> Scaling:
        """The per-scene rule, or a global scaling fitted on the training scenes streaming:
        one scene at a time, summarised by its per-band min and max."""
        if self.scaling_method == "minmax_scene":
            return Scaling.per_scene()
        summaries = []
        for name in collection.parts["train"]:
            flat = collection.read(name)
            flat = flat.reshape(flat.shape[0], -1)
            summaries.append(np.stack([flat.min(axis=1), flat.max(axis=1)], -1)[:, None, :])
        return Scaling.fit(self.scaling_method, summaries)

    def _whole(self, index: int, cube: SpectralCube) -> Region:
        s = self.scale
        return Region(index, 0, cube.height // s * s, 0, cube.width // s * s)

    # ---- loaders -----------------------------------------------------------------------
    def train_dataset(self) -> _TrainCrops | _CollectionCrops:
        self.setup()
        assert self.scaling is not None
        if self.collection is not None:
            return _CollectionCrops(
                self.collection,
                self.scaling,
                self.crop_size,
                self.crops_per_epoch,
                self.degradation,
                self.seed,
                self.augment,
                self.band_window,
                self.cache_scenes,
            )
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

    def eval_dataset(self, part: str, case: int | None = None) -> _EvalImages | _CollectionImages:
        """The fixed degraded images of ``part`` (``val``/``test``) under ``degradation``, or
        with ``case`` = k under ``test_degradations[k]`` (same images, their own noise)."""
        self.setup()
        assert self.scaling is not None
        degradation, noise_key = self.degradation, None
        if case is not None:
            degradation, noise_key = self.test_degradations[case], self._noise_key(case)
        if self.collection is not None:
            return _CollectionImages(
                self.collection,
                part,
                self.scaling,
                degradation,
                self.seed,
                self.eval_center_crop,
                self.scale,
                noise_key,
            )
        assert self.cubes is not None
        regions = self.regions[part]
        if self.eval_center_crop is not None:
            regions = [_center_box(r, self.eval_center_crop, f"{part} part") for r in regions]
        return _EvalImages(
            self.cubes, regions, degradation, self.seed, part, self.eval_tile, noise_key
        )

    def test_datasets(self) -> list[_EvalImages | _CollectionImages]:
        """One test set per ``test_degradations`` entry, in order, over the same held-out
        images; image ``i`` of case ``k`` draws its noise from ``(seed, part, i, key_k)``,
        where ``key_k`` is a digest of the case's spec (none for ``degradation`` itself):
        fixed run to run, different between cases. Empty without ``test_degradations``."""
        return [self.eval_dataset("test", k) for k in range(len(self.test_degradations))]

    def train_dataloader(self) -> DataLoader:
        ds = self.train_dataset()
        if isinstance(ds, _CollectionCrops):
            sampler: Sampler[int] = GroupedEpochSampler(ds.block_starts(), self.seed)
        else:
            sampler = EpochSampler(len(ds), self.seed)
        return DataLoader(
            ds,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            drop_last=False,
        )

    def _eval_loader(self, part: str, case: int | None = None) -> DataLoader:
        ds = self.eval_dataset(part, case)
        # A collection's images are scored one at a time, as the papers do: a batch of
        # 512 x 512 x 31 images through a 3-D network would need many GB.
        sizes = {(b.height, b.width) for b in ds.boxes} if isinstance(ds, _EvalImages) else set()
        same_size = len(sizes) == 1
        return DataLoader(
            ds,
            batch_size=self.batch_size if same_size else 1,
            shuffle=False,
            num_workers=self.num_workers,
        )

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader | list[DataLoader]:
        """The test loader, or with ``test_degradations`` one per entry, in order."""
        if not self.test_degradations:
            return self._eval_loader("test")
        return [self._eval_loader("test", k) for k in range(len(self.test_degradations))]

    def smallest_eval_side(self) -> int:
        """Smallest side (high-resolution pixels) of a validation/test image."""
        self.setup()
        sides = []
        for part in ("val", "test"):
            ds = self.eval_dataset(part)
            if isinstance(ds, _CollectionImages):
                sides += [ds.side(i) for i in range(len(ds))]
            else:
                sides += [min(b.height, b.width) for b in ds.boxes]
        return min(sides)

    # ---- what a report and a checkpoint need ------------------------------------------
    def describe(self) -> dict[str, Any]:
        self.setup()
        assert self.scaling is not None
        out = {
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
            "eval_center_crop": self.eval_center_crop,
            "seed": self.seed,
            "wavelengths": self.wavelengths,
        }
        if self.test_degradations:
            out["test_degradations"] = dict(
                zip(self.test_degradation_names, self.test_degradation_specs, strict=True)
            )
        if self.collection is not None:
            out.update(
                test_list=self.test_list,
                val_scenes=self.val_scenes,
                cache_scenes=self.cache_scenes,
                scenes={k: list(v) for k, v in self.collection.parts.items()},
            )
        return out


def regions_overlap(a: Region, b: Region) -> bool:
    """True when two regions of the same scene share a pixel."""
    return (
        a.scene == b.scene
        and max(a.r0, b.r0) < min(a.r1, b.r1)
        and max(a.c0, b.c0) < min(a.c1, b.c1)
    )
