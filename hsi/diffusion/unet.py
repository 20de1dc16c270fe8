"""A small time-conditioned U-Net: the noise predictor ``eps_model(x_t, t)`` of hsi's priors.

HIR-Diff samples a reduced image of k = 3 bands with a large pretrained RGB-like prior (the
SR3 U-Net of ddpm-cd, inner channel 128, multipliers 1-2-4-8-8, ~100M+ parameters). hsi
trains its own, much smaller prior offline, so this module is a compact DDPM-style U-Net
(Ho et al. 2020): sinusoidal timestep embedding -> MLP, residual blocks with GroupNorm/SiLU
that add the time embedding per channel, stride-2 downsampling, nearest-neighbour upsampling
and skip concatenation. Defaults (base 32 channels, multipliers 1-2-2, one residual block
per level down and two up, two in the middle, no attention) give 1,046,883 parameters for
k = 3, small enough to train on CPU-sized data.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from hsi.errors import ConfigError, DataError

__all__ = ["SmallUNet", "timestep_embedding"]


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Transformer-style sinusoidal embedding of (possibly fractional) timesteps, (B,) -> (B, dim).

    Frequencies are geometric from 1 to 1/max_period, as in DDPM; the first half are cosines,
    the second sines.
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


class _ResBlock(nn.Module):
    """GroupNorm-SiLU-Conv ×2 with the time embedding added between them, plus a skip."""

    def __init__(self, c_in: int, c_out: int, time_dim: int, groups: int, dropout: float):
        super().__init__()
        self.norm1 = nn.GroupNorm(min(groups, c_in), c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.time = nn.Linear(time_dim, c_out)
        self.norm2 = nn.GroupNorm(min(groups, c_out), c_out)
        self.drop = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time(F.silu(temb))[:, :, None, None]
        h = self.conv2(self.drop(F.silu(self.norm2(h))))
        return h + self.skip(x)


class SmallUNet(nn.Module):
    """Noise predictor for (B, k, H, W) images in [-1, 1]; ``forward(x_t, t) -> eps``.

    Args:
        in_channels: bands of the image the prior models (HIR-Diff's reduced image: k = 3).
        base_channels: width of the first level (32).
        channel_mults: width multipliers per level (1, 2, 2): 3 levels, 2 downsamplings.
        num_res_blocks: residual blocks per level on the way down (1; one more on the way up
            consumes the skips, as in DDPM).
        groups: GroupNorm groups (8).
        dropout: dropout inside residual blocks (0.0).

    H and W must be multiples of :attr:`min_tile` (= 2 ** (levels - 1)) so that skips align;
    other sizes raise :class:`DataError` instead of being silently padded or cropped.
    """

    def __init__(
        self,
        in_channels: int = 3,
        base_channels: int = 32,
        channel_mults: tuple[int, ...] = (1, 2, 2),
        num_res_blocks: int = 1,
        groups: int = 8,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if in_channels < 1 or base_channels < 1 or num_res_blocks < 1 or not channel_mults:
            raise ConfigError(
                "SmallUNet needs in_channels, base_channels, num_res_blocks >= 1 and at least "
                f"one channel multiplier, got {in_channels}, {base_channels}, {num_res_blocks}, "
                f"{channel_mults}"
            )
        self.in_channels = in_channels
        self.base_channels = base_channels
        time_dim = 4 * base_channels
        self.time_mlp = nn.Sequential(
            nn.Linear(base_channels, time_dim), nn.SiLU(), nn.Linear(time_dim, time_dim)
        )
        self.stem = nn.Conv2d(in_channels, base_channels, 3, padding=1)

        widths = [base_channels * m for m in channel_mults]
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        skips = [base_channels]
        ch = base_channels
        for level, width in enumerate(widths):
            for _ in range(num_res_blocks):
                self.down.append(_ResBlock(ch, width, time_dim, groups, dropout))
                ch = width
                skips.append(ch)
            if level < len(widths) - 1:
                self.downsample.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
                skips.append(ch)
        self.mid = nn.ModuleList(
            [
                _ResBlock(ch, ch, time_dim, groups, dropout),
                _ResBlock(ch, ch, time_dim, groups, dropout),
            ]
        )
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for level in reversed(range(len(widths))):
            for _ in range(num_res_blocks + 1):
                self.up.append(
                    _ResBlock(ch + skips.pop(), widths[level], time_dim, groups, dropout)
                )
                ch = widths[level]
            if level > 0:
                self.upsample.append(nn.Conv2d(ch, ch, 3, padding=1))
        self.out_norm = nn.GroupNorm(min(groups, ch), ch)
        self.out = nn.Conv2d(ch, in_channels, 3, padding=1)
        self._levels = len(widths)
        self._blocks = num_res_blocks

    @property
    def min_tile(self) -> int:
        """Smallest spatial size (and required divisor of H, W): 2 ** (levels - 1)."""
        return 2 ** (self._levels - 1)

    def forward(self, x: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise DataError(
                f"SmallUNet expects (B, {self.in_channels}, H, W), got {tuple(x.shape)}"
            )
        h_in, w_in = x.shape[-2:]
        if h_in % self.min_tile or w_in % self.min_tile:
            raise DataError(
                f"SmallUNet needs H and W divisible by {self.min_tile}, got {h_in}×{w_in}; "
                "crop or pad the image to a multiple of min_tile"
            )
        t = torch.as_tensor(t, device=x.device)
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        temb = self.time_mlp(timestep_embedding(t, self.base_channels))

        h = self.stem(x)
        hs = [h]
        blocks = iter(self.down)
        for level in range(self._levels):
            for _ in range(self._blocks):
                h = next(blocks)(h, temb)
                hs.append(h)
            if level < self._levels - 1:
                h = self.downsample[level](h)
                hs.append(h)
        for block in self.mid:
            h = block(h, temb)
        blocks = iter(self.up)
        for i, level in enumerate(reversed(range(self._levels))):
            for _ in range(self._blocks + 1):
                h = next(blocks)(torch.cat([h, hs.pop()], dim=1), temb)
            if level > 0:
                h = self.upsample[i](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.out(F.silu(self.out_norm(h)))
