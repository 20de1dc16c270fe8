"""HSDT: Hybrid Spectral Denoising Transformer for hyperspectral image denoising.

Lai, Z., Yan, C., Fu, Y. "Hybrid Spectral Denoising Transformer with Guided Attention",
ICCV 2023, pp. 13065-13075. arXiv:2303.09040. Reference code: github.com/Zeqiang-Lai/HSDT
(PyTorch). Sizes and defaults below were read from that code (``hsdt/arch.py``,
``hsdt/attention.py``, ``hsdt/sepconv.py``, ``hsdt/__init__.py``); this is an independent
re-implementation.

The cube is treated as a 3-D volume: ``(B, bands, H, W)`` becomes ``(B, 1, bands, H, W)``,
so the band axis is the depth of every 3-D convolution and the network holds no layer whose
size depends on the band count, except the learnable queries of the guided attention (see
:class:`GSSA`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from hsi.errors import ConfigError, DataError
from hsi.models.registry import register_model


class S3Conv(nn.Module):
    """Spatial-Spectral Separable Convolution: a spatial and a spectral branch, summed.

    Spatial branch: Conv3d ``1×3×3`` (in→out), LeakyReLU, Conv3d ``1×3×3`` (out→out),
    LeakyReLU. Spectral branch: Conv3d ``3×1×1`` (in→out). No bias (the reference uses
    ``bias=False`` everywhere S3Conv appears, a BatchNorm follows). Because no kernel spans
    more than 3 bands, the layer accepts any number of bands.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.spatial = nn.Sequential(
            nn.Conv3d(in_channels, out_channels, (1, 3, 3), padding=(0, 1, 1), bias=False),
            nn.LeakyReLU(),
            nn.Conv3d(out_channels, out_channels, (1, 3, 3), padding=(0, 1, 1), bias=False),
            nn.LeakyReLU(),
        )
        self.spectral = nn.Conv3d(
            in_channels, out_channels, (3, 1, 1), padding=(1, 0, 0), bias=False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spatial(x) + self.spectral(x)


class GSSA(nn.Module):
    """Guided Spectral Self-Attention on ``(B, C, D, H, W)`` features (D = bands).

    One attention map *per image*, over bands, from the spatially averaged features
    ``f = mean_{h,w} x`` of shape ``(B, D, C)``:

    - guided (the paper's learnable queries): logits ``f Qᵀ + b`` with ``Q`` of shape
      ``(num_queries, C)`` — one learned spectral signature per band position, so the map
      is ``(D, num_queries)`` and ``num_queries`` must equal ``D`` (31 in the reference,
      the ICVL band count);
    - self-attention: logits ``f fᵀ`` of shape ``(D, D)``, valid for any ``D``.

    Softmax over the last axis (no temperature, as in the reference), then every pixel's
    band vectors are mixed by that one map: ``out = fc(A · value(x)) + x``. Because the map
    is shared by all pixels, its cost is ``O(D²·C)`` per image plus ``O(H·W·D²·C)`` to apply
    it, i.e. linear in the number of pixels, against ``O(H·W·D²·C)`` *maps* for per-pixel
    spectral attention.

    As in the reference, training picks self-attention or guided attention at random (each
    with probability 0.5, per layer and step) so both paths learn; evaluation uses the
    guided path unless ``flex`` is set. Input whose band count differs from
    ``num_queries`` can only use self-attention; that is allowed when ``flex`` is set.
    """

    def __init__(
        self,
        channels: int,
        num_queries: int,
        flex: bool = False,
        self_attention_prob: float = 0.5,
    ) -> None:
        super().__init__()
        self.num_queries = num_queries
        self.flex = flex
        self.self_attention_prob = self_attention_prob
        self.attn_proj = nn.Linear(channels, num_queries)  # rows = the learnable queries
        self.value_proj = nn.Linear(channels, channels, bias=False)
        self.fc = nn.Linear(channels, channels, bias=False)

    def use_self_attention(self, bands: int) -> bool:
        """Whether this call takes the query-free path (see the class docstring)."""
        if bands != self.num_queries:
            return True
        if self.training:
            return bool(torch.rand(()) < self.self_attention_prob)
        return self.flex

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the attended features ``(B, C, D, H, W)`` and the map ``(B, D, D)``."""
        pooled = x.mean(dim=(3, 4)).transpose(1, 2)  # (B, D, C)
        if self.use_self_attention(x.shape[2]):
            logits = pooled @ pooled.transpose(1, 2)
        else:
            logits = self.attn_proj(pooled)
        attn = logits.softmax(dim=-1)  # (B, D, D)
        b, c, d, h, w = x.shape
        values = self.value_proj(x.permute(0, 2, 3, 4, 1))  # (B, D, H, W, C)
        # one (D×D)·(D×HWC) product per image; broadcasting the map over pixels instead
        # would materialise H·W copies of it
        mixed = (attn @ values.reshape(b, d, -1)).reshape(b, d, h, w, c)
        out = self.fc(mixed).permute(0, 4, 1, 2, 3)
        return out + x, attn


class SMFFN(nn.Module):
    """Self-Modulated Feed-Forward Network, on channel-last features.

    ``w2(GELU(w1 x)) + a ⊙ σ(g)`` with ``[a, g] = w3 x``; ``w1: C→2C``, ``w2: 2C→C``,
    ``w3: C→2C`` (split into two C halves). The second, self-modulated branch lets a
    feature gate itself, which the paper credits for emphasising informative regions.
    """

    def __init__(self, channels: int, bias: bool = True) -> None:
        super().__init__()
        self.w1 = nn.Linear(channels, 2 * channels, bias=bias)
        self.w2 = nn.Linear(2 * channels, channels, bias=bias)
        self.w3 = nn.Linear(channels, 2 * channels, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = self.w3(x).chunk(2, dim=-1)
        return self.w2(F.gelu(self.w1(x))) + value * torch.sigmoid(gate)


class TransformerBlock(nn.Module):
    """GSSA then SM-FFN. As in the reference: no LayerNorm, and the residual is only around
    the attention (the FFN output replaces its input)."""

    def __init__(self, channels: int, num_queries: int, flex: bool, p_self: float) -> None:
        super().__init__()
        self.attn = GSSA(channels, num_queries, flex=flex, self_attention_prob=p_self)
        self.ffn = SMFFN(channels, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        attended, _ = self.attn(x)
        return self.ffn(attended.permute(0, 2, 3, 4, 1)).permute(0, 4, 1, 2, 3)


class _Stage(nn.Module):
    """One U-Net layer: a convolution, BatchNorm3d, then a transformer block.

    ``kind`` is ``plain`` (S3Conv, same size), ``down`` (Conv3d 3×3×3, stride 1×2×2:
    spatial-only halving, the bands are never down-sampled) or ``up`` (trilinear ×(1,2,2)
    up-sampling with aligned corners, then Conv3d 3×3×3).
    """

    def __init__(
        self, kind: str, in_ch: int, out_ch: int, num_queries: int, flex: bool, p_self: float
    ) -> None:
        super().__init__()
        if kind == "plain":
            self.conv: nn.Module = S3Conv(in_ch, out_ch)
        elif kind == "down":
            self.conv = nn.Conv3d(in_ch, out_ch, 3, stride=(1, 2, 2), padding=1, bias=False)
        else:
            self.conv = nn.Sequential(
                nn.Upsample(scale_factor=(1, 2, 2), mode="trilinear", align_corners=True),
                nn.Conv3d(in_ch, out_ch, 3, padding=1, bias=False),
            )
        self.bn = nn.BatchNorm3d(out_ch)
        self.block = TransformerBlock(out_ch, num_queries, flex, p_self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(self.bn(self.conv(x)))


@register_model("hsdt")
class HSDT(nn.Module):
    """HSDT denoiser, ``(B, bands, H, W)`` in [0, 1] → ``(B, bands, H, W)``.

    Defaults are the paper's HSDT-M (``hsdt()`` in the reference code, 521,158 parameters
    with 31 bands; Table "Gaussian denoising on ICVL" lists 0.52 M):

    - head: S3Conv 1→16, BN, block
    - encoder, ``num_half_layer=5`` layers at channels 16: plain 16, **down** 16→32,
      plain 32, **down** 32→64, plain 64 (``downsample_at=(1, 3)``); each layer's output
      but the last is kept for a skip
    - decoder, mirrored: plain 64, **up** 64→32, plain 32, **up** 32→16, plain 16; skips
      are *added* before each layer after the first
    - add the head's output, tail Conv3d 16→1 (3×3×3, with bias), add the noisy input
      (global residual: the network predicts the noise)

    Every block is GSSA + SM-FFN with ``num_queries = in_bands`` learnable queries. Variants
    in the paper: HSDT-S is ``channels=8`` (0.13 M, registered as ``hsdt_s``), HSDT-L is
    ``num_half_layer=7, downsample_at=(1, 3, 5)`` (2.09 M, ``hsdt_l``). Down-sampling is
    spatial only, so H and W must be multiples of ``2 ** len(downsample_at)``. The authors
    train with Adam, lr 1e-3, MSE loss, on 64×64×31 ICVL crops, and advise Xavier-normal
    initialisation; here PyTorch's default initialisation is kept.

    ``flex=True`` lets a model run on a band count other than ``in_bands`` (every GSSA then
    uses self-attention, the reference's ``flex`` mode); otherwise that is a
    :class:`DataError`.
    """

    task = "denoising"
    min_tile = 4  # two spatial halvings (default); instances set their own value

    def __init__(
        self,
        in_bands: int = 31,
        channels: int = 16,
        num_half_layer: int = 5,
        downsample_at: Sequence[int] = (1, 3),
        flex: bool = False,
        self_attention_prob: float = 0.5,
    ) -> None:
        super().__init__()
        if in_bands < 1:
            raise ConfigError(f"HSDT needs in_bands >= 1, got {in_bands}")
        if channels < 1:
            raise ConfigError(f"HSDT needs channels >= 1, got {channels}")
        downsample_at = tuple(downsample_at)
        if any(not 0 <= i < num_half_layer for i in downsample_at) or len(
            set(downsample_at)
        ) != len(downsample_at):
            raise ConfigError(
                f"HSDT downsample_at={list(downsample_at)} must hold distinct layer indices "
                f"in [0, {num_half_layer}) (num_half_layer)"
            )
        if not 0.0 <= self_attention_prob <= 1.0:
            raise ConfigError(f"self_attention_prob must be in [0, 1], got {self_attention_prob}")
        self.in_bands = in_bands
        self.flex = flex
        self.min_tile = 2 ** len(downsample_at)
        args = (in_bands, flex, self_attention_prob)

        self.head = _Stage("plain", 1, channels, *args)
        self.encoder = nn.ModuleList()
        ch = channels
        for i in range(num_half_layer):
            if i in downsample_at:
                self.encoder.append(_Stage("down", ch, 2 * ch, *args))
                ch *= 2
            else:
                self.encoder.append(_Stage("plain", ch, ch, *args))
        self.decoder = nn.ModuleList()
        for i in reversed(range(num_half_layer)):
            if i in downsample_at:
                self.decoder.append(_Stage("up", ch, ch // 2, *args))
                ch //= 2
            else:
                self.decoder.append(_Stage("plain", ch, ch, *args))
        self.tail = nn.Conv3d(channels, 1, 3, padding=1, bias=True)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a :class:`DataError` naming the problem for input this model cannot take."""
        if x.ndim != 4:
            raise DataError(
                f"HSDT expects (batch, bands, height, width), got shape {tuple(x.shape)}"
            )
        _, bands, height, width = x.shape
        if bands != self.in_bands and not self.flex:
            raise DataError(
                f"HSDT was built for {self.in_bands} bands (its learnable queries), got "
                f"{bands}; build it with in_bands={bands}, or flex=True to use spectral "
                f"self-attention on any band count"
            )
        m = self.min_tile
        if height < m or width < m or height % m or width % m:
            raise DataError(
                f"HSDT needs height and width that are multiples of {m} (it halves them "
                f"{m.bit_length() - 1} times), got {height}x{width}; pad or crop the tile"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        volume = x.unsqueeze(1)  # (B, 1, D, H, W): bands become the depth axis
        head = self.head(volume)
        skips = []
        out = head
        for layer in self.encoder:
            out = layer(out)
            skips.append(out)
        skips.pop()  # the bottleneck output feeds the decoder directly
        out = self.decoder[0](out)
        for layer in self.decoder[1:]:
            out = layer(out + skips.pop())
        out = self.tail(out + head)
        return (out + volume).squeeze(1)


@register_model("hsdt_s")
class HSDTSmall(HSDT):
    """HSDT-S from the paper: HSDT with 8 base channels (134,350 parameters at 31 bands)."""

    def __init__(
        self, in_bands: int = 31, flex: bool = False, self_attention_prob: float = 0.5
    ) -> None:
        super().__init__(in_bands, 8, 5, (1, 3), flex, self_attention_prob)


@register_model("hsdt_l")
class HSDTLarge(HSDT):
    """HSDT-L from the paper: 7 layers per half, three spatial halvings (``hsdt_deep`` in
    the reference code; 2,094,786 parameters at 31 bands). H and W: multiples of 8."""

    min_tile = 8

    def __init__(
        self, in_bands: int = 31, flex: bool = False, self_attention_prob: float = 0.5
    ) -> None:
        super().__init__(in_bands, 16, 7, (1, 3, 5), flex, self_attention_prob)
