"""DDS2M: self-supervised diffusion restoration with a Variational Spatio-Spectral Module.

Miao et al., "DDS2M: Self-Supervised Denoising Diffusion Spatio-Spectral Model for
Hyperspectral Image Restoration", ICCV 2023. Authors' code:
github.com/miaoyuchun/DDS2M (``runners/VS2M.py``, ``functions/denoising.py``,
``runners/diffusion.py``, ``configs/msi_*.yml``, ``main_*.py``).

Idea. No network is pre-trained: the reverse diffusion of DDRM (Kawar et al., NeurIPS 2022) is
run with its denoiser replaced by VS2M, an untrained generator whose parameters are fitted,
while sampling, to the current noisy iterate ``x_t`` of the *degraded* cube only.

VS2M (authors' defaults in brackets):

- ``rank`` [10] spatial generators :class:`SpatialSkipNet`, each a Deep-Image-Prior style
  encoder-decoder from a fixed U(0, 1) noise image (1 channel) to one abundance-like map:
  channels down = up = (16, 32, 64, 128, 128, 128), skip channels (0, 0, 4, 4, 4, 4), kernel
  sizes (7, 7, 5, 5, 3, 3), average-pool downsampling, bilinear upsampling, BatchNorm,
  LeakyReLU(0.2), reflection padding, no output sigmoid.
- ``rank`` spectral generators :class:`SpectralFCN`, each an MLP from a fixed U(0, 1) vector of
  length C (bands) to one spectral signature: C -> 128 -> 256 -> 256 -> 128 -> C, ReLU6 after the
  first layer and ReLU after the others.
- The cube is the product ``X = A · E`` of the (pixels × rank) maps and (rank × bands)
  signatures, used in [-1, 1] as ``2X - 1``.

Variational loss (code ``loss1 + beta * loss3`` in ``runners/VS2M.py``): at step ``t`` with
``a = alpha_bar[t]``, ``mean((sqrt(a) (2X - 1) - x_t)^2) + tv_weight · TV3d(2X - 1)``; the
code's default ``beta`` (``tv_weight`` here) is 0. Adam, lr 5e-4 [config ``model.lr``], one
update per diffusion step [``iter_number: 0`` runs ``range(0 + 1)``]. The x0 estimate handed to
the sampler is an exponential moving average of VS2M's output with weight 0.98 [``exp_weight``].

Sampler (authors' defaults): linear betas 1e-4 .. 5e-3 over T = 2000 [``msi_*.yml``], all 2000
timesteps visited, and the generators are not used for the first 1000 steps [``start_point``]
(the x0 estimate is the iterate itself there). DDRM's update with eta = etaB = 1 [``main_*.py``]
in the spectral space of the degradation operator H; the observation noise ``sigma`` is the
std on [0, 1] data (the code doubles it for the [-1, 1] scale, as here). The three tasks have
operators whose non-zero singular values are all equal, so the SVD is written as a projection:

- ``denoise``: H = I (singular value 1).
- ``inpaint``: H keeps the entries where ``mask`` is 1 (singular value 1 on them, 0 elsewhere).
- ``sr``: H is ``scale × scale`` block averaging (singular value 1/scale); the authors use a
  bicubic kernel with stride ``scale`` (``SRConv``), whose SVD needs a separable-kernel
  factorisation; block averaging keeps the same sampler with a closed-form pseudo-inverse.

Differences from the authors' code, all deliberate:

- The first iterate is ``sqrt(alpha_bar[T-1])`` times DDRM's initial VE-scale sample (DDRM
  divides by ``sigma_T`` instead, which is the same up to 0.1 % for this schedule).
- The moving average starts from VS2M's first output (the code seeds it with the iterate of
  the last skipped step, which lives on another scale).
- The spatial generators use as many of the six levels as the image size allows (each level
  halves the size); the code crops a 256 × 256 output.
- The code keeps the iterate with the best PSNR against the ground truth; here the final sample
  is returned (a self-supervised method has no ground truth).
- ``steps`` (default 2000) is a strided subsequence of the T timesteps when smaller than T.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from hsi.diffusion.operators import DegradationOperator, check_task_args
from hsi.diffusion.schedules import make_alphas_cumprod, timestep_subsequence
from hsi.errors import ConfigError, DataError

__all__ = [
    "VS2M",
    "SpatialSkipNet",
    "SpectralFCN",
    "dds2m_restore",
    "estimate_noise_sigma",
    "tv3d_loss",
    "variational_loss",
]

SPATIAL_CHANNELS = (16, 32, 64, 128, 128, 128)
SPATIAL_SKIP = (0, 0, 4, 4, 4, 4)
SPATIAL_KERNELS = (7, 7, 5, 5, 3, 3)
SPECTRAL_HIDDEN = (128, 256, 256, 128)
# [0, 1]-scaled data plus Gaussian noise up to sigma 70/255 stay inside this even at 5-sigma
# outliers (the noise is not clipped); raw counts or reflectance in percent do not.
_VALUE_RANGE = (-1.5, 2.5)


# --------------------------------------------------------------------------------- networks


def _conv(c_in: int, c_out: int, k: int) -> nn.Sequential:
    """Conv (reflection padding, as the authors' ``pad='reflection'``) + BN + LeakyReLU."""
    return nn.Sequential(
        nn.ReflectionPad2d(k // 2) if k > 1 else nn.Identity(),
        nn.Conv2d(c_in, c_out, k),
        nn.BatchNorm2d(c_out),
        nn.LeakyReLU(0.2),
    )


class _Level(nn.Module):
    """One level of the skip encoder-decoder: down path, deeper levels, skip, up path."""

    def __init__(
        self,
        c_in: int,
        i: int,
        ch: tuple[int, ...],
        skip: tuple[int, ...],
        kernels: tuple[int, ...],
    ) -> None:
        super().__init__()
        k, c, s = kernels[i], ch[i], skip[i]
        self.skip = _conv(c_in, s, 1) if s > 0 else None
        self.down = nn.Sequential(
            nn.ReflectionPad2d(k // 2),
            nn.Conv2d(c_in, c, k),
            nn.AvgPool2d(2),
            nn.BatchNorm2d(c),
            nn.LeakyReLU(0.2),
            _conv(c, c, k),
        )
        self.deeper = _Level(c, i + 1, ch, skip, kernels) if i + 1 < len(ch) else None
        c_deep = ch[i + 1] if self.deeper is not None else c
        self.bn = nn.BatchNorm2d(s + c_deep)
        self.up = nn.Sequential(_conv(s + c_deep, c, k), _conv(c, c, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.down(x)
        if self.deeper is not None:
            y = self.deeper(y)
        y = F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)
        if self.skip is not None:
            y = torch.cat([self.skip(x), y], dim=1)
        return self.up(self.bn(y))


class SpatialSkipNet(nn.Module):
    """DIP "skip" generator: a 1-channel noise image -> one abundance-like map (1, 1, H, W).

    Defaults are the authors' (see module docstring); ``levels`` truncates the six levels for
    images too small to be halved six times.
    """

    def __init__(
        self,
        channels: tuple[int, ...] = SPATIAL_CHANNELS,
        skip: tuple[int, ...] = SPATIAL_SKIP,
        kernels: tuple[int, ...] = SPATIAL_KERNELS,
        levels: int | None = None,
    ) -> None:
        super().__init__()
        n = len(channels) if levels is None else levels
        if not 1 <= n <= len(channels) or len(skip) < n or len(kernels) < n:
            raise ConfigError(f"the spatial net needs 1..{len(channels)} levels, got {n}")
        ch, sk, ks = tuple(channels[:n]), tuple(skip[:n]), tuple(kernels[:n])
        self.body = _Level(1, 0, ch, sk, ks)
        self.head = nn.Conv2d(ch[0], 1, 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(z))


class SpectralFCN(nn.Module):
    """MLP from a fixed random vector (bands) to one spectral signature (bands).

    Authors' ``fcn(C, C, num_hidden=[128, 256, 256, 128])``: ReLU6 after the first layer,
    ReLU after the other hidden layers, linear output.
    """

    def __init__(self, bands: int, hidden: tuple[int, ...] = SPECTRAL_HIDDEN) -> None:
        super().__init__()
        sizes = (bands, *hidden)
        layers: list[nn.Module] = []
        for i in range(len(hidden)):
            layers += [nn.Linear(sizes[i], sizes[i + 1]), nn.ReLU6() if i == 0 else nn.ReLU()]
        layers.append(nn.Linear(hidden[-1], bands))
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class VS2M(nn.Module):
    """Variational Spatio-Spectral Module: ``rank`` spatial maps × ``rank`` spectral signatures.

    ``forward()`` returns the cube (bands, H, W) on the [0, 1] scale (not clipped). The network
    inputs are fixed U(0, 1) noise drawn at construction (from the global torch generator).
    """

    def __init__(
        self,
        bands: int,
        height: int,
        width: int,
        rank: int = 10,
        spatial_channels: tuple[int, ...] = SPATIAL_CHANNELS,
        spectral_hidden: tuple[int, ...] = SPECTRAL_HIDDEN,
    ) -> None:
        super().__init__()
        # A level halves the size; reflection padding needs the halved map wider than k // 2.
        levels = 0
        while (
            levels < len(spatial_channels)
            and min(height, width) >> (levels + 1) > SPATIAL_KERNELS[levels] // 2
        ):
            levels += 1
        if levels == 0:
            raise DataError(f"the cube's {height} x {width} pixels are too few for VS2M (>= 8)")
        self.shape = (bands, height, width)
        self.spatial = nn.ModuleList(
            SpatialSkipNet(spatial_channels, levels=levels) for _ in range(rank)
        )
        self.spectral = nn.ModuleList(SpectralFCN(bands, spectral_hidden) for _ in range(rank))
        self.register_buffer("z_spatial", torch.rand(1, 1, height, width))
        self.register_buffer("z_spectral", torch.rand(1, bands))

    def forward(self) -> torch.Tensor:
        bands, h, w = self.shape
        maps = torch.cat([net(self.z_spatial) for net in self.spatial], dim=1)  # (1, r, H, W)
        sig = torch.cat([net(self.z_spectral) for net in self.spectral], dim=0)  # (r, C)
        return torch.einsum("rhw,rc->chw", maps[0], sig)


# ----------------------------------------------------------------------------------- losses


def tv3d_loss(x: torch.Tensor) -> torch.Tensor:
    """The authors' ``TVLoss3d`` on one cube (C, H, W): ``2 (mean dh² + mean dw² + mean dc²/2)``."""
    dc = (x[1:] - x[:-1]).pow(2).sum() / x[1:].numel()
    dh = (x[:, 1:] - x[:, :-1]).pow(2).sum() / x[:, 1:].numel()
    dw = (x[:, :, 1:] - x[:, :, :-1]).pow(2).sum() / x[:, :, 1:].numel()
    return 2 * (dh + dw + dc / 2)


def variational_loss(
    x0: torch.Tensor, x_t: torch.Tensor, alpha_bar_t: float, tv_weight: float = 0.0
) -> torch.Tensor:
    """VS2M's loss at step t: ``mean((sqrt(a) x0 - x_t)²) + tv_weight · TV3d(x0)``.

    ``x0`` is VS2M's cube on the [-1, 1] scale. Minimising the squared distance between
    ``sqrt(a) x0`` and ``x_t`` is the KL term of the variational bound for a Gaussian
    ``q(x_t | x0)`` with fixed variance (up to constants).
    """
    return F.mse_loss(math.sqrt(alpha_bar_t) * x0, x_t) + tv_weight * tv3d_loss(x0)


def estimate_noise_sigma(cube: torch.Tensor) -> float:
    """Gaussian noise std from the median absolute diagonal Haar detail (Donoho's MAD / 0.6745).

    Used when ``sigma`` is not given: ``(a - b - c + d) / 2`` over 2 × 2 blocks has the noise's
    std and is near 0 on smooth image content.
    """
    c, h, w = cube.shape
    x = cube[:, : h // 2 * 2, : w // 2 * 2]
    d = (x[:, 0::2, 0::2] - x[:, 0::2, 1::2] - x[:, 1::2, 0::2] + x[:, 1::2, 1::2]) / 2
    return float(d.abs().median() / 0.6745)


# ---------------------------------------------------------------------------------- checks


def _positive_int(value: object, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return value


def _as_tensor(x: np.ndarray | torch.Tensor, name: str) -> torch.Tensor:
    t = x.detach().cpu() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    if not (
        t.is_floating_point() or t.dtype in (torch.uint8, torch.int32, torch.int64, torch.bool)
    ):
        raise DataError(f"{name} must be numeric, got dtype {t.dtype}")
    return t.to(torch.float32)


def _check_inputs(degraded, task, mask, scale, rank, steps, iters_per_step, lr, sigma):
    y = _as_tensor(degraded, "the degraded cube")
    if y.ndim != 3:
        raise DataError(f"DDS2M takes a (bands, H, W) cube, got shape {tuple(y.shape)}")
    if not bool(torch.isfinite(y).all()):
        raise DataError(
            f"the cube holds {int((~torch.isfinite(y)).sum())} NaN/inf values; "
            "fill them (e.g. with 0), mark them in a mask and use task='inpaint'"
        )
    lo, hi = float(y.min()), float(y.max())
    if lo < _VALUE_RANGE[0] or hi > _VALUE_RANGE[1]:
        raise DataError(
            f"DDS2M expects data scaled to [0, 1] (noise may overshoot a little); values span "
            f"[{lo:.3g}, {hi:.3g}]. Min-max scale the cube first"
        )
    steps = _positive_int(steps, "steps")
    _positive_int(iters_per_step, "iters_per_step")
    rank = _positive_int(rank, "rank")
    if rank > y.shape[0]:
        raise ConfigError(f"rank {rank} cannot exceed the cube's {y.shape[0]} bands")
    if not lr > 0:
        raise ConfigError(f"lr must be > 0, got {lr}")
    if sigma is not None and not sigma >= 0:
        raise ConfigError(f"sigma (noise std on [0, 1] data) must be >= 0, got {sigma}")
    m = check_task_args("DDS2M", task, mask, scale, tuple(y.shape))
    if task == "sr" and (y.shape[1] % scale or y.shape[2] % scale):
        raise ConfigError(f"scale {scale} must divide the cube's size {tuple(y.shape[1:])}")
    return y, m


# ---------------------------------------------------------------------------------- sampler


def dds2m_restore(
    degraded: np.ndarray | torch.Tensor,
    task: str = "denoise",
    mask: np.ndarray | torch.Tensor | None = None,
    scale: int | None = None,
    rank: int = 10,
    steps: int = 2000,
    iters_per_step: int = 1,
    lr: float = 5e-4,
    seed: int = 1234,
    progress: bool = True,
    *,
    sigma: float | None = None,
    num_train_steps: int = 2000,
    beta_start: float = 1e-4,
    beta_end: float = 5e-3,
    skip_fraction: float = 0.5,
    eta: float = 1.0,
    eta_b: float = 1.0,
    ema: float = 0.98,
    tv_weight: float = 0.0,
    spatial_channels: tuple[int, ...] = SPATIAL_CHANNELS,
    spectral_hidden: tuple[int, ...] = SPECTRAL_HIDDEN,
) -> torch.Tensor:
    """Restore a [0, 1]-scaled cube (bands, H, W) with DDS2M; returns the cube, clipped to [0, 1].

    ``task``: ``denoise`` (``degraded`` is the noisy cube), ``inpaint`` (``mask`` of the cube's
    shape or (H, W), 1 = observed) or ``sr`` (``degraded`` is the
    low-resolution cube upsampled to the target size by repeating each pixel ``scale`` × ``scale``
    times, i.e. H^+ y; only its block means are used). ``sigma`` is the observation noise std on
    [0, 1] data, estimated from the cube (:func:`estimate_noise_sigma`) when None.

    Defaults are the authors' (module docstring): rank 10, T = 2000 linear betas 1e-4 .. 5e-3,
    2000 steps of which the first half skip the generators, 1 Adam step per diffusion step at
    lr 5e-4, eta = etaB = 1, EMA 0.98, TV weight 0. ``steps`` < T visits a strided subsequence.
    """
    y, m = _check_inputs(degraded, task, mask, scale, rank, steps, iters_per_step, lr, sigma)
    if not 0.0 <= skip_fraction < 1.0 or not 0.0 <= ema < 1.0:
        raise ConfigError("skip_fraction and ema must lie in [0, 1)")
    if not 0.0 <= eta <= 1.0 or not 0.0 <= eta_b <= 1.0:
        raise ConfigError(f"eta and eta_b must lie in [0, 1], got {eta}, {eta_b}")
    bands, h, w = y.shape
    if sigma is None:
        sigma = estimate_noise_sigma(y if m is None else y * m)
    sigma0 = 2.0 * sigma  # [-1, 1] scale

    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # network initialisation and fixed inputs
    model = VS2M(bands, h, w, rank, spatial_channels, spectral_hidden)
    opt = torch.optim.Adam(model.parameters(), lr=lr)

    y_pm = y * 2 - 1
    op = DegradationOperator(task, m, scale if task == "sr" else None)
    # DDRM's pseudo-inverse observation; for sr ``y`` already is H^+ y (blocks repeated), and
    # projecting it keeps only its block means.
    pinv_y = op.project(y_pm)
    sv = op.singular

    a_bar = make_alphas_cumprod("linear", num_train_steps, start=beta_start, end=beta_end)
    seq = timestep_subsequence(num_train_steps, steps)  # noisiest first
    a_bar = a_bar.tolist()

    def ve(a: float) -> float:  # sigma of the variance-exploding iterate x_t / sqrt(a)
        return math.sqrt((1 - a) / a)

    def randn() -> torch.Tensor:
        return torch.randn(y.shape, generator=gen)

    # DDRM's initial sample (VE scale), then to the VP scale of x_T.
    a_T = a_bar[seq[0]]
    s_T = ve(a_T)
    z = randn()
    pz = op.project(z)
    if sv * s_T > sigma0:
        init = pinv_y + math.sqrt(s_T**2 - (sigma0 / sv) ** 2) * pz + s_T * (z - pz)
    else:
        init = s_T * z
    x_t = math.sqrt(a_T) * init

    n_skip = int(skip_fraction * len(seq))
    avg: torch.Tensor | None = None
    for k, t in enumerate(tqdm(seq, desc="DDS2M", disable=not progress)):
        a = a_bar[t]
        a_next = a_bar[seq[k + 1]] if k + 1 < len(seq) else 1.0
        if k < n_skip:
            x0 = x_t
        else:
            model.train()
            for _ in range(iters_per_step):
                opt.zero_grad()
                out = model() * 2 - 1
                loss = variational_loss(out, x_t, a, tv_weight)
                loss.backward()
                opt.step()
            with torch.no_grad():
                out = (model() * 2 - 1).clamp(-1, 1)
            avg = out if avg is None else ema * avg + (1 - ema) * out
            x0 = avg
        with torch.no_grad():
            eps = (x_t - math.sqrt(a) * x0) / math.sqrt(1 - a)
            x_t = math.sqrt(a_next) * _ddrm_update(
                op, pinv_y, x0, eps, ve(a_next) if a_next < 1 else 0.0, sigma0, eta, eta_b, randn()
            )
    return ((x_t + 1) / 2).clamp(0, 1)


def _ddrm_update(
    op: DegradationOperator,
    pinv_y: torch.Tensor,
    x0: torch.Tensor,
    eps: torch.Tensor,
    s_next: float,
    sigma0: float,
    eta: float,
    eta_b: float,
    z: torch.Tensor,
) -> torch.Tensor:
    """DDRM's step (Kawar et al. 2022) on the VE scale, written with projections.

    The authors' code (``functions/denoising.py``) cites it as Eq. 13 of the DDS2M paper.

    Outside H's row space: ``x0 + sqrt(1 - eta²) s' eps + eta s' z``. Inside it, per the
    singular value ``sv``: noisier than y (``sv s' > sigma0``) -> pull to ``H^+ y``; less noisy
    (``sv s' < sigma0``) -> move from ``x0`` toward ``H^+ y`` by ``sv (H^+ y - x0) / sigma0``.
    """
    sv = op.singular
    free = x0 + math.sqrt(1 - eta**2) * s_next * eps + eta * s_next * z
    px0, pz = op.project(x0), op.project(z)
    if sv * s_next > sigma0:
        inside = (
            eta_b * pinv_y
            + (1 - eta_b) * px0
            + math.sqrt(max(s_next**2 - (sigma0 / sv) ** 2 * eta_b**2, 0.0)) * pz
        )
    elif sv * s_next < sigma0:
        inside = (
            px0 + math.sqrt(1 - eta**2) * s_next * sv * (pinv_y - px0) / sigma0 + eta * s_next * pz
        )
    else:
        inside = op.project(free)
    return free - op.project(free) + inside
