"""Datasets over scenes held in memory: random training crops degraded on the fly, with every
item's crop, augmentation and noise drawn from its own seeded generator, and the fixed
degraded validation and test images of held-out regions."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from hsi.data.degradations import Degradation
from hsi.data.restoration.regions import Region
from hsi.errors import ConfigError


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


# The held-out part's code in the seeds of its images' generators (see _eval_rng).
EVAL_PART_CODES = {"val": 1, "test": 2}


def _eval_rng(seed: int, code: int, index: int, noise_key: int | None) -> np.random.Generator:
    """The generator of held-out image ``index`` of part ``code``: seeded by
    ``(seed, part, index)``, plus ``noise_key`` for an extra test degradation (see
    :meth:`~hsi.data.restoration.datamodule.RestorationDataModule.test_datasets`), so every
    case has its own fixed noise."""
    key = [seed, 1000 + code, index]
    return np.random.default_rng(key if noise_key is None else [*key, noise_key])


class _EvalImages(Dataset):
    """Fixed degraded images of held-out regions (whole, or tiles of ``tile`` pixels)."""

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
        self.code = EVAL_PART_CODES[part]
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
