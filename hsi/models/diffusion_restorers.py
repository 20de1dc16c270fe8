"""HIR-Diff and DDS2M as registry models, so the restoration task, configs and ``hsi predict``
treat the two unsupervised diffusion restorers exactly like a trained network such as HSDT.

Why registry models: :class:`~hsi.tasks.RestorationTask` builds its network by registry name
from the data module's band count and scale, evaluates it on the held-out strip and writes
the same ``restoration_report.json`` as for HSDT; ``hsi predict --model hirdiff`` tiles a
whole GeoTIFF/ENVI scene through the same code as a checkpoint. Both methods restore each
image from that image alone, so these modules hold **no trainable weights**: HIR-Diff carries
a frozen noise-predictor prior (untrained and seeded, or loaded from a
:class:`~hsi.diffusion.prior.DiffusionPriorTask` checkpoint), DDS2M fits a fresh untrained
VS2M generator to every image while it samples. They declare ``training_free = True``
(``hsi fit`` refuses them) and ``task = None`` (they serve denoising, ``scale == 1``, and
super-resolution, ``scale > 1``).

``forward(x)``: ``x`` is (B, in_bands, h, w) on the [0, 1] scale; the output is
(B, in_bands, h·scale, w·scale), on the [0, 1] scale, restored one image at a time. The
samplers run on the CPU (HIR-Diff's prior runs on the module's device) and build their own
autograd graphs, so ``forward`` works inside Lightning's ``inference_mode`` test loop.

References (the samplers are in :mod:`hsi.diffusion.hirdiff` and :mod:`hsi.diffusion.dds2m`,
whose docstrings list every deliberate difference from the authors' code):

- Pang, Rui, Cui, Wang, Meng, Cao, "HIR-Diff: Unsupervised Hyperspectral Image Restoration Via
  Improved Diffusion Models", CVPR 2024 (arXiv:2402.15865). Authors' code:
  github.com/LiPang/HIRDiff.
- Miao et al., "DDS2M: Self-Supervised Denoising Diffusion Spatio-Spectral Model for
  Hyperspectral Image Restoration", ICCV 2023. Authors' code: github.com/miaoyuchun/DDS2M.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hsi.errors import ConfigError, DataError
from hsi.models.registry import register_model

__all__ = ["DDS2MRestorer", "HIRDiffRestorer"]


def _positive_int(value: Any, name: str, model: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{model}: {name} must be a positive integer, got {value!r}")
    return value


class _TrainingFreeRestorer(nn.Module):
    """Shared contract: argument checks, per-image loop, grad enabled inside test loops."""

    task = None  # denoising when scale == 1, super-resolution when scale > 1
    training_free = True
    min_tile = 1
    name = "restorer"

    def __init__(self, in_bands: int, scale: int) -> None:
        super().__init__()
        self.in_bands = _positive_int(in_bands, "in_bands", self.name)
        self.scale = _positive_int(scale, "scale", self.name)

    def _restore_one(self, image: np.ndarray) -> np.ndarray | torch.Tensor:
        """One (bands, h, w) float32 image -> (bands, h·scale, w·scale) on [0, 1]."""
        raise NotImplementedError

    def _check_size(self, height: int, width: int) -> None:
        if min(height, width) < self.min_tile:
            raise DataError(
                f"{self.name} needs images of at least {self.min_tile} pixels a side, got "
                f"{height}x{width}"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4:
            raise DataError(
                f"{self.name} expects (batch, bands, height, width), got {tuple(x.shape)}"
            )
        if x.shape[1] != self.in_bands:
            raise DataError(
                f"{self.name} was built for {self.in_bands} bands, got {x.shape[1]}; build it "
                f"with in_bands={x.shape[1]}"
            )
        self._check_size(x.shape[-2], x.shape[-1])
        outs = []
        # Lightning tests under inference_mode and RestorationTask.restore under no_grad; both
        # samplers differentiate (guidance gradients, VS2M's Adam steps), so re-enable autograd.
        # fork_rng: the samplers seed torch themselves; the caller's generator is left as it was.
        with (
            torch.inference_mode(False),
            torch.enable_grad(),
            torch.random.fork_rng(devices=[]),
        ):
            for image in x:
                arr = image.detach().to("cpu", torch.float32).numpy()
                out = torch.as_tensor(np.asarray(self._restore_one(arr), dtype=np.float32))
                outs.append(out)
        return torch.stack(outs).to(x.device, x.dtype)


@register_model("hirdiff")
class HIRDiffRestorer(_TrainingFreeRestorer):
    """HIR-Diff (Pang et al., CVPR 2024): a k-band diffusion prior, guided by the data term.

    The clean cube is modelled as ``E · A``: ``E`` (bands × k) from SVD + rank-revealing QR of
    the degraded cube, ``A`` (k bands) sampled by DDIM with a diffusion prior and pushed after
    every step down the gradient of ``guidance_weight·||y - H(E Â0)||² + tv_weight·TV_w``.
    Paper defaults: k = 3 reduced bands (so an RGB-like prior models ``A``), 20 DDIM steps
    over T = 1000 of the exponential schedule (k = 8), eta1 = 16, eta2 = 10 (per-pixel weights
    4.0 and 10/128 here, see :mod:`hsi.diffusion.hirdiff`). The paper's prior is the SR3 U-Net
    of ddpm-cd (~100M+ parameters); hsi's is :class:`~hsi.diffusion.unet.SmallUNet` (base 32,
    multipliers 1-2-2, 1,046,883 parameters for k = 3), trained with
    ``hsi fit --config configs/hirdiff/prior_*.yaml``.

    Args:
        in_bands: bands of the cube (the task passes the data's).
        scale: 1 = denoising; > 1 = super-resolution by ``scale`` (``H`` averages
            ``scale × scale`` blocks; the input is the low-resolution cube).
        prior: a DiffusionPriorTask checkpoint (``load_prior(prior, k)``; its own noise
            schedule is used), or None for an untrained ``SmallUNet(in_channels=k)``
            initialised with ``seed`` (the "untrained prior" of benchmarks/bench_hirdiff.py:
            HIR-Diff's low-rank model and guidance alone still denoise; SR and spatial
            inpainting need a trained prior for the detail inside each block).
        k: reduced bands (3 in the paper); must match the prior's channels.
        steps: DDIM steps (20 in the paper; at most the prior's T).
        tv_weight, guidance_weight: per-pixel weights of the edge-weighted TV and data term.
        seed: seeds the untrained prior's weights and the initial noise of every image (the
            same seed gives the same output).
        progress: a progress bar over the diffusion steps of every image.

    ``min_tile``: the prior halves the (high-resolution) image ``levels - 1`` times, so its
    sides must be multiples of ``SmallUNet.min_tile`` (4 by default); in input pixels that is
    ``min_tile / gcd(min_tile, scale)``. Smaller or odd sizes are padded by the task.
    """

    name = "hirdiff"
    min_tile = 4  # SmallUNet's default 2 ** (3 levels - 1); instances set their own

    def __init__(
        self,
        in_bands: int,
        scale: int = 1,
        prior: str | None = None,
        k: int = 3,
        steps: int = 20,
        tv_weight: float = 10 / 128,
        guidance_weight: float = 4.0,
        seed: int = 0,
        progress: bool = True,
    ) -> None:
        super().__init__(in_bands, scale)
        from hsi.diffusion.prior import load_prior
        from hsi.diffusion.unet import SmallUNet

        k = _positive_int(k, "k", self.name)
        if k > in_bands:
            raise ConfigError(f"hirdiff: k={k} reduced bands exceed the cube's {in_bands} bands")
        self.steps = _positive_int(steps, "steps (DDIM sampling steps)", self.name)
        if not (tv_weight >= 0 and guidance_weight >= 0):
            raise ConfigError(
                f"hirdiff: tv_weight and guidance_weight must be >= 0, got {tv_weight}, "
                f"{guidance_weight}"
            )
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ConfigError(f"hirdiff: seed must be an integer, got {seed!r}")
        self.k, self.seed, self.progress = k, seed, bool(progress)
        self.tv_weight, self.guidance_weight = float(tv_weight), float(guidance_weight)
        self.prior_path = None if prior is None else str(prior)
        self.alphas_cumprod: torch.Tensor | None = None  # None: HIR-Diff's exp schedule
        if prior is None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                net = SmallUNet(in_channels=k)
            train_steps = 1000
        else:
            loaded = load_prior(Path(prior).expanduser(), k)
            net, self.alphas_cumprod = loaded.net, loaded.alphas_cumprod
            train_steps = len(loaded.alphas_cumprod)
        if self.steps > train_steps:
            raise ConfigError(
                f"hirdiff: steps={self.steps} exceed the prior's {train_steps} training "
                "timesteps; the paper uses 20"
            )
        self.prior = net.eval().requires_grad_(False)
        m = int(net.min_tile)
        self.min_tile = m // math.gcd(m, self.scale)

    def train(self, mode: bool = True) -> HIRDiffRestorer:
        """The prior stays in eval mode: it is frozen, whatever the task's mode."""
        super().train(mode)
        self.prior.eval()
        return self

    def _check_size(self, height: int, width: int) -> None:
        m = self.min_tile
        if height < m or width < m or height % m or width % m:
            raise DataError(
                f"hirdiff needs height and width that are multiples of {m} (its U-Net prior "
                f"halves the output, {self.scale}x the input, in size), got {height}x{width}; "
                "pad or crop the image (RestorationTask.restore pads by reflection)"
            )

    def _eps(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The prior on its device (the sampler works on CPU tensors); differentiable."""
        dev = next(self.prior.parameters()).device
        return self.prior(x_t.to(dev), t.to(dev)).to(x_t.device)

    def _restore_one(self, image: np.ndarray) -> np.ndarray:
        from hsi.diffusion.hirdiff import hirdiff_restore

        sr = self.scale > 1
        return hirdiff_restore(
            image,
            self._eps,
            k=self.k,
            steps=self.steps,
            tv_weight=self.tv_weight,
            guidance_weight=self.guidance_weight,
            seed=self.seed,
            progress=self.progress,
            alphas_cumprod=self.alphas_cumprod,
            task="sr" if sr else "denoise",
            scale=self.scale if sr else None,
        )


@register_model("dds2m")
class DDS2MRestorer(_TrainingFreeRestorer):
    """DDS2M (Miao et al., ICCV 2023): DDRM's reverse diffusion with VS2M as the denoiser.

    VS2M is an untrained generator fitted to each degraded image while sampling: ``rank``
    spatial Deep-Image-Prior skip nets (channels 16-32-64-128-128-128, skip 0-0-4-4-4-4,
    kernels 7-7-5-5-3-3) times ``rank`` spectral MLPs (bands -> 128 -> 256 -> 256 -> 128 ->
    bands). Authors' defaults: rank 10, linear betas 1e-4..5e-3 over T = 2000 with all 2000
    steps visited (the generators skip the first half), 1 Adam update per step at lr 5e-4,
    eta = etaB = 1 (:mod:`hsi.diffusion.dds2m`). A new VS2M is built for every image, so this
    module has no parameters of its own.

    Args:
        in_bands: bands of the cube (the task passes the data's).
        scale: 1 = denoising; > 1 = super-resolution (``H`` averages ``scale × scale``
            blocks; the sampler gets the low-resolution cube repeated over each block, its
            ``H⁺ y``).
        rank: VS2M's rank (10).
        steps: reverse steps, a strided subsequence of T = 2000 when smaller (2000). The
            authors' budget takes ~hours per image on a CPU; configs name their own budget.
        iters_per_step: Adam updates of VS2M per step (1).
        lr: Adam learning rate (5e-4).
        seed: seeds VS2M's initialisation, inputs and the sampler's noise (1234).
        sigma: observation noise std on [0, 1] data; None estimates it from each image
            (median absolute Haar detail / 0.6745).
        progress: a progress bar over the diffusion steps of every image.

    ``min_tile``: VS2M needs at least 8 (high-resolution) pixels a side, so
    ``ceil(8 / scale)`` input pixels.
    """

    name = "dds2m"
    min_tile = 8

    def __init__(
        self,
        in_bands: int,
        scale: int = 1,
        rank: int = 10,
        steps: int = 2000,
        iters_per_step: int = 1,
        lr: float = 5e-4,
        seed: int = 1234,
        sigma: float | None = None,
        progress: bool = True,
    ) -> None:
        super().__init__(in_bands, scale)
        self.rank = _positive_int(rank, "rank", self.name)
        if rank > in_bands:
            raise ConfigError(f"dds2m: rank {rank} cannot exceed the cube's {in_bands} bands")
        self.steps = _positive_int(steps, "steps (reverse diffusion steps)", self.name)
        if steps > 2000:
            raise ConfigError(f"dds2m: steps={steps} exceed the schedule's T = 2000 timesteps")
        self.iters_per_step = _positive_int(iters_per_step, "iters_per_step", self.name)
        if not lr > 0:
            raise ConfigError(f"dds2m: lr must be > 0, got {lr}")
        if sigma is not None and not sigma >= 0:
            raise ConfigError(f"dds2m: sigma (noise std on [0, 1] data) must be >= 0, got {sigma}")
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ConfigError(f"dds2m: seed must be an integer, got {seed!r}")
        self.lr, self.seed, self.sigma, self.progress = float(lr), seed, sigma, bool(progress)
        self.min_tile = -(-8 // self.scale)

    def _restore_one(self, image: np.ndarray) -> torch.Tensor:
        from hsi.diffusion.dds2m import dds2m_restore

        kwargs: dict[str, Any] = dict(
            rank=self.rank,
            steps=self.steps,
            iters_per_step=self.iters_per_step,
            lr=self.lr,
            seed=self.seed,
            progress=self.progress,
            sigma=self.sigma,
        )
        if self.scale == 1:
            return dds2m_restore(image, task="denoise", **kwargs)
        s = self.scale
        up = np.repeat(np.repeat(image, s, axis=1), s, axis=2)
        return dds2m_restore(up, task="sr", scale=s, **kwargs)
