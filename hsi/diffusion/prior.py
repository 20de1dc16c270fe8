"""Training HIR-Diff's diffusion prior with hsi: a DDPM on k-band reduced images.

HIR-Diff (Pang et al., CVPR 2024) samples the reduced image ``A = X[S]`` (k = 3 bands of the
[0, 1]-scaled cube picked by rank-revealing QR, see :mod:`hsi.diffusion.hirdiff`) with a
pretrained diffusion prior. The authors borrow a large RGB/remote-sensing prior (ddpm-cd's
SR3 U-Net); hsi trains its own small one (:class:`hsi.diffusion.unet.SmallUNet`) on reduced
images cut from clean cubes the user has, so the prior models exactly the kind of image the
sampler produces: the cube's own RRQR-selected bands, scaled to [-1, 1].

- :class:`ReducedImageDataModule`: per clean cube, min-max scaling to [0, 1] fitted on the
  training strip, k bands selected by :func:`~hsi.diffusion.hirdiff.estimate_coefficients`
  on the training strip, ``a = 2 x - 1``; random ``crop_size`` crops of the training strip
  (left part of the scene) with the 8 flips/rotations; validation = the non-overlapping crops
  that tile the held-out strip on the right edge (never overlapping a training crop).
- :class:`DiffusionPriorTask`: the DDPM epsilon-prediction loss (Ho et al. 2020, "L_simple":
  ``t ~ U{0..T-1}``, ``x_t = sqrt(ab_t) x0 + sqrt(1 - ab_t) eps``, MSE between ``eps`` and
  the prediction) with the ``alpha_bar`` of HIR-Diff's sampler (default: the exponential
  schedule, k = 8, T = 1000, :func:`~hsi.diffusion.schedules.make_alphas_cumprod`), so the
  timesteps the sampler visits are the ones the prior was trained on.
- :func:`load_prior`: a checkpoint -> the ``eps_model`` callable :func:`hirdiff_restore`
  takes, rebuilt from the checkpoint alone (U-Net kwargs, k, schedule name/kwargs, T and the
  scaling convention are stored under ``checkpoint["hsi"]``), loaded with
  ``weights_only=True``.

What it is not: the paper's prior. No EMA of the weights, no attention layers, and a CPU-sized
U-Net trained for minutes on one scene; say so next to any number it produces.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from hsi.diffusion.hirdiff import estimate_coefficients
from hsi.diffusion.schedules import make_alphas_cumprod
from hsi.diffusion.unet import SmallUNet
from hsi.errors import ConfigError, DataError
from hsi.tasks.training import make_optimizer

__all__ = [
    "SCALING_CONVENTION",
    "DiffusionPriorTask",
    "LoadedPrior",
    "ReducedImageDataModule",
    "load_prior",
    "to_unit_range",
]

#: How reduced images are scaled for the prior; stored in checkpoints and checked on load so a
#: prior trained on another convention is never silently fed the wrong range.
SCALING_CONVENTION = "a = 2 * x - 1, x = the cube's k RRQR bands on the cube's [0, 1] scale"
_FORMAT_VERSION = 1


def to_unit_range(x: np.ndarray) -> np.ndarray:
    """[0, 1] values -> the prior's [-1, 1] (``2 x - 1``), clipped: held-out pixels a little
    outside the training min/max would otherwise exceed the range the sampler clamps to."""
    return np.clip(2.0 * np.asarray(x, dtype=np.float32) - 1.0, -1.0, 1.0)


# --------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Scene:
    """One cube's reduced image (k, H, W) in [-1, 1], and where train/val lie (columns)."""

    source: str
    bands: list[int]
    lo: float
    hi: float
    image: np.ndarray
    train_cols: tuple[int, int]
    val_cols: tuple[int, int]


class _TrainCrops(Dataset):
    """``per_epoch`` random crops of the training strips (torch RNG: seeded by Lightning's
    ``seed_everything``, different every epoch), with one of the 8 flips/rotations."""

    def __init__(self, scenes: Sequence[_Scene], crop: int, per_epoch: int, augment: bool):
        self.scenes, self.crop, self.per_epoch, self.augment = (
            list(scenes),
            crop,
            per_epoch,
            augment,
        )

    def __len__(self) -> int:
        return self.per_epoch

    def __getitem__(self, index: int) -> torch.Tensor:
        scene = self.scenes[int(torch.randint(len(self.scenes), ()))]
        c0, c1 = scene.train_cols
        h = scene.image.shape[1]
        r = int(torch.randint(h - self.crop + 1, ()))
        c = c0 + int(torch.randint(c1 - c0 - self.crop + 1, ()))
        x = torch.from_numpy(scene.image[:, r : r + self.crop, c : c + self.crop].copy())
        if self.augment:
            x = torch.rot90(x, int(torch.randint(4, ())), dims=(1, 2))
            if bool(torch.randint(2, ())):
                x = torch.flip(x, dims=(1,))
        return x.contiguous()


class ReducedImageDataModule(L.LightningDataModule):
    """Reduced k-band images (HIR-Diff's ``A``) from clean cubes, for training a prior.

    Args:
        dataset: registry name(s) of clean cubes (``load_dataset``), e.g. ``indian_pines``.
        images: cube files instead of (or besides) registry names (any format
            :func:`hsi.data.restoration.load_clean_cube` reads).
        root: data root (default ``$HSI_DATA``).
        k: bands of the reduced image (3 in the paper); must match the prior's channels.
        crop_size: side of the square training/validation crops (a multiple of the U-Net's
            ``min_tile``; 32 or 64).
        crops_per_epoch: random training crops per epoch.
        val_fraction: width fraction of each scene held out on its right edge; validation
            tiles it with non-overlapping crops (so it must be at least ``crop_size`` wide).
        batch_size, num_workers: data loader settings.
        augment: random flips/rotations of training crops.
    """

    def __init__(
        self,
        dataset: str | list[str] | None = None,
        images: list[str] | None = None,
        root: str | None = None,
        k: int = 3,
        crop_size: int = 32,
        crops_per_epoch: int = 800,
        val_fraction: float = 0.25,
        batch_size: int = 16,
        num_workers: int = 0,
        augment: bool = True,
    ) -> None:
        super().__init__()
        names = [dataset] if isinstance(dataset, str) else list(dataset or [])
        files = list(images or [])
        if not names and not files:
            raise ConfigError("ReducedImageDataModule needs dataset=<registry name> or images")
        if not isinstance(k, int) or k < 1:
            raise ConfigError(f"k (bands of the reduced image) must be >= 1, got {k!r}")
        if crop_size < 8 or crops_per_epoch < 1 or batch_size < 1:
            raise ConfigError(
                f"need crop_size >= 8, crops_per_epoch >= 1, batch_size >= 1; got {crop_size}, "
                f"{crops_per_epoch}, {batch_size}"
            )
        if not 0.0 < val_fraction < 1.0:
            raise ConfigError(f"val_fraction must lie in (0, 1), got {val_fraction}")
        self.names, self.files, self.root = names, files, root
        self.k, self.crop_size, self.crops_per_epoch = k, crop_size, crops_per_epoch
        self.val_fraction, self.batch_size, self.num_workers = val_fraction, batch_size, num_workers
        self.augment = augment
        self.scenes: list[_Scene] = []

    # ---- building ---------------------------------------------------------------------
    def _cubes(self) -> list[tuple[str, np.ndarray]]:
        from hsi.data.restoration import load_clean_cube

        out = [(n, load_clean_cube(dataset=n, root=self.root).data) for n in self.names]
        out += [(f, load_clean_cube(image=f, root=self.root).data) for f in self.files]
        return out

    def scene_from_cube(self, source: str, cube: np.ndarray) -> _Scene:
        """Split, scale and reduce one (bands, H, W) cube (public so tests can use arrays)."""
        cube = np.asarray(cube, dtype=np.float64)
        if cube.ndim != 3:
            raise DataError(f"{source}: expected a (bands, H, W) cube, got shape {cube.shape}")
        _, h, w = cube.shape
        n_val = int(round(w * self.val_fraction))
        if h < self.crop_size or n_val < self.crop_size or w - n_val < self.crop_size:
            raise ConfigError(
                f"{source}: a {h}x{w} scene cannot hold {self.crop_size}-pixel crops in both a "
                f"training strip and a held-out strip of {n_val} columns (val_fraction "
                f"{self.val_fraction}); lower crop_size or change val_fraction"
            )
        train = cube[:, :, : w - n_val]
        lo, hi = float(train.min()), float(train.max())
        if hi <= lo:
            raise DataError(f"{source}: the training strip is constant ({lo:g}); nothing to learn")
        _, bands = estimate_coefficients((train - lo) / (hi - lo), self.k)
        band_list = [int(b) for b in bands]
        image = to_unit_range((cube[band_list] - lo) / (hi - lo))
        return _Scene(source, band_list, lo, hi, image, (0, w - n_val), (w - n_val, w))

    def setup(self, stage: str | None = None) -> None:
        if not self.scenes:
            self.scenes = [self.scene_from_cube(s, c) for s, c in self._cubes()]

    def val_boxes(self) -> list[tuple[int, int, int, int, int]]:
        """Validation crops as ``(scene, r0, r1, c0, c1)``: a tiling of each held-out strip."""
        boxes = []
        s = self.crop_size
        for i, scene in enumerate(self.scenes):
            h = scene.image.shape[1]
            c_start, c_end = scene.val_cols
            for r in range(0, h - s + 1, s):
                for c in range(c_start, c_end - s + 1, s):
                    boxes.append((i, r, r + s, c, c + s))
        return boxes

    def describe(self) -> dict[str, Any]:
        """What the prior was trained on (saved in its checkpoint)."""
        return {
            "scenes": [
                {
                    "source": sc.source,
                    "bands": sc.bands,
                    "minmax": [sc.lo, sc.hi],
                    "train_cols": list(sc.train_cols),
                    "val_cols": list(sc.val_cols),
                }
                for sc in self.scenes
            ],
            "k": self.k,
            "crop_size": self.crop_size,
        }

    # ---- loaders ----------------------------------------------------------------------
    def train_dataloader(self) -> DataLoader:
        ds = _TrainCrops(self.scenes, self.crop_size, self.crops_per_epoch, self.augment)
        return DataLoader(
            ds, batch_size=self.batch_size, shuffle=False, num_workers=self.num_workers
        )

    def _eval_loader(self) -> DataLoader:
        crops = [
            torch.from_numpy(self.scenes[i].image[:, r0:r1, c0:c1].copy())
            for i, r0, r1, c0, c1 in self.val_boxes()
        ]
        return DataLoader(crops, batch_size=self.batch_size, num_workers=self.num_workers)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader()

    def test_dataloader(self) -> DataLoader:
        """The held-out strip again (``hsi fit`` tests after fitting; a prior has no
        separate test protocol, its real test is the restoration benchmark)."""
        return self._eval_loader()


# --------------------------------------------------------------------------------------
# task
# --------------------------------------------------------------------------------------


def _alphas_cumprod(schedule: str, num_steps: int, kwargs: dict[str, float]) -> torch.Tensor:
    return make_alphas_cumprod(schedule, num_steps, **kwargs).float()


class DiffusionPriorTask(L.LightningModule):
    """DDPM epsilon-prediction training of a :class:`SmallUNet` prior on k-band images.

    Args:
        k: channels of the modelled image (HIR-Diff: 3).
        unet_kwargs: :class:`SmallUNet` arguments other than ``in_channels`` (defaults:
            base 32, multipliers 1-2-2, 1 block per level, ~1.05M parameters for k = 3).
        schedule: ``exp`` (HIR-Diff's, default), ``linear`` or ``cosine``.
        schedule_kwargs: schedule arguments (default ``{"k": 8.0}`` for ``exp``, HIR-Diff's
            denoising setting).
        num_train_steps: T (1000, as in DDPM and HIR-Diff).
        lr, weight_decay: AdamW settings (DDPM used Adam at 2e-4; 1e-4..2e-4 is usual).
        seed: seeds the validation noise so val/loss is comparable across epochs.
    """

    def __init__(
        self,
        k: int = 3,
        unet_kwargs: dict[str, Any] | None = None,
        schedule: str = "exp",
        schedule_kwargs: dict[str, float] | None = None,
        num_train_steps: int = 1000,
        lr: float = 2e-4,
        weight_decay: float = 0.0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if schedule_kwargs is None:
            schedule_kwargs = {"k": 8.0} if schedule == "exp" else {}
        unet_kwargs = dict(unet_kwargs or {})
        if "in_channels" in unet_kwargs:
            raise ConfigError("set the prior's channels with k, not unet_kwargs.in_channels")
        if "channel_mults" in unet_kwargs:
            unet_kwargs["channel_mults"] = tuple(unet_kwargs["channel_mults"])
        self.k, self.schedule, self.num_train_steps = k, schedule, num_train_steps
        self.schedule_kwargs = dict(schedule_kwargs)
        self.unet_kwargs = unet_kwargs
        self.net = SmallUNet(in_channels=k, **unet_kwargs)
        self.register_buffer(
            "alphas_cumprod",
            _alphas_cumprod(schedule, num_train_steps, self.schedule_kwargs),
            persistent=False,
        )
        self.data_description: dict[str, Any] | None = None

    def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.net(x_t, t)

    def diffusion_loss(
        self, x0: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """DDPM's L_simple on a batch of clean [-1, 1] images."""
        if x0.ndim != 4 or x0.shape[1] != self.k:
            raise DataError(f"the prior models (B, {self.k}, H, W) images, got {tuple(x0.shape)}")
        b = x0.shape[0]
        dev = x0.device
        t = torch.randint(self.num_train_steps, (b,), generator=generator, device="cpu").to(dev)
        eps = torch.randn(x0.shape, generator=generator, device="cpu").to(dev, x0.dtype)
        a = self.alphas_cumprod.to(dev)[t].to(x0.dtype)[:, None, None, None]
        x_t = a.sqrt() * x0 + (1 - a).sqrt() * eps
        return F.mse_loss(self.net(x_t, t), eps)

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        loss = self.diffusion_loss(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch.shape[0])
        return loss

    def _eval(self, batch: torch.Tensor, batch_idx: int, stage: str) -> None:
        gen = torch.Generator().manual_seed(self.hparams.seed * 100_003 + batch_idx)
        loss = self.diffusion_loss(batch, generator=gen)
        self.log(f"{stage}/loss", loss, prog_bar=True, batch_size=batch.shape[0])

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        self._eval(batch, batch_idx, "val")

    def test_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        self._eval(batch, batch_idx, "test")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return make_optimizer(
            self.parameters(), "adamw", self.hparams.lr, self.hparams.weight_decay
        )

    # ---- checkpoint -------------------------------------------------------------------
    def prior_meta(self) -> dict[str, Any]:
        """Everything :func:`load_prior` needs to rebuild the sampler's prior (plain types,
        so ``torch.load(weights_only=True)`` reads it)."""
        unet = {key: list(v) if isinstance(v, tuple) else v for key, v in self.unet_kwargs.items()}
        data = self.data_description
        trainer = getattr(self, "_trainer", None)
        dm = getattr(trainer, "datamodule", None) if trainer is not None else None
        if data is None and isinstance(dm, ReducedImageDataModule) and dm.scenes:
            data = dm.describe()
        return {
            "task": "diffusion_prior",
            "k": self.k,
            "unet_kwargs": unet,
            "schedule": self.schedule,
            "schedule_kwargs": dict(self.schedule_kwargs),
            "num_train_steps": self.num_train_steps,
            "scaling": SCALING_CONVENTION,
            "data": data,
            "format_version": _FORMAT_VERSION,
        }

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["hsi"] = self.prior_meta()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.data_description = (checkpoint.get("hsi") or {}).get("data")


class LoadedPrior(nn.Module):
    """A trained prior as HIR-Diff's ``eps_model(x_t, t)``, with its schedule attached.

    Pass ``alphas_cumprod=prior.alphas_cumprod`` to :func:`hirdiff_restore` so sampling uses
    the schedule the prior was trained with.
    """

    def __init__(self, net: SmallUNet, alphas_cumprod: torch.Tensor, meta: dict[str, Any]):
        super().__init__()
        self.net = net.eval()
        self.alphas_cumprod = alphas_cumprod
        self.meta = meta
        self.k = int(meta["k"])

    def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.net(x_t, t)


def load_prior(ckpt: str | Path, k: int = 3, map_location: str = "cpu") -> LoadedPrior:
    """Rebuild a prior from a :class:`DiffusionPriorTask` checkpoint alone.

    Raises:
        DataError: the file is missing or is not a prior checkpoint of a known format.
        ConfigError: the prior models another number of bands than ``k``.
    """
    path = Path(ckpt)
    if not path.is_file():
        raise DataError(f"{path}: prior checkpoint not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # unpickling errors have many types; one readable message
        raise DataError(
            f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc})"
        ) from None
    meta = state.get("hsi") if isinstance(state, dict) else None
    if not isinstance(meta, dict) or meta.get("task") != "diffusion_prior":
        raise DataError(
            f"{path}: not a diffusion-prior checkpoint (train one with DiffusionPriorTask)"
        )
    if meta.get("format_version") != _FORMAT_VERSION or meta.get("scaling") != SCALING_CONVENTION:
        raise DataError(
            f"{path}: prior format {meta.get('format_version')!r} / scaling "
            f"{meta.get('scaling')!r} is not the one this hsi version samples with"
        )
    if int(meta["k"]) != k:
        raise ConfigError(
            f"{path}: the prior models k={meta['k']}-band reduced images, but k={k} was "
            f"requested; use k={meta['k']} or a prior trained with k={k}"
        )
    unet = dict(meta["unet_kwargs"])
    if "channel_mults" in unet:
        unet["channel_mults"] = tuple(unet["channel_mults"])
    net = SmallUNet(in_channels=k, **unet)
    weights = {
        key.removeprefix("net."): v
        for key, v in state["state_dict"].items()
        if key.startswith("net.")
    }
    net.load_state_dict(weights)
    abar = make_alphas_cumprod(
        meta["schedule"], int(meta["num_train_steps"]), **meta["schedule_kwargs"]
    )
    return LoadedPrior(net, abar, meta)
