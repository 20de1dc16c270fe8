"""Datasets over a scene collection too large to hold (ICVL's 201 scenes): scenes are read
on demand, training crops come group by group from a small LRU cache of scenes, and held-out
scenes are scaled by the fitted map or their own minimum and maximum."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from hsi.data.degradations import Degradation
from hsi.data.restoration.crops import EVAL_PART_CODES, _eval_rng, _training_pair
from hsi.data.restoration.regions import Region, _center_box
from hsi.data.restoration.scaling import Scaling
from hsi.data.restoration.sources import _checked_clean
from hsi.errors import DataError


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
        self.code = EVAL_PART_CODES[part]
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
