"""ESSAformer: an efficient transformer for single hyperspectral image super-resolution.

Zhang, M., Zhang, C., Zhang, Q., Guo, J., Gao, X., Zhang, J. "ESSAformer: Efficient
Transformer for Hyperspectral Image Super-resolution", ICCV 2023, pp. 23073-23084.
arXiv:2307.14010. Reference code: github.com/Rexzhan/ESSAformer (``ESSA.py``, PyTorch);
sizes and defaults below were read from it (its example is ``ESSA(inch=128, dim=256,
upscale=4)``, the Chikusei ×4 setting of its released checkpoint). This is an independent
re-implementation.

Every pixel of a feature map is a token whose feature vector is a (learned) spectrum; the
attention compares tokens with the spectral correlation coefficient (SCC, Pearson's r over
the feature axis), made linear in the number of tokens by a kernel factorisation.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from hsi.errors import ConfigError, DataError
from hsi.models.registry import register_model

_EPS = 1e-7  # the reference's guard against a zero-variance token


def centred_unit(x: torch.Tensor, eps: float = _EPS) -> torch.Tensor:
    """Centre each vector on the last axis and scale it to unit length.

    ``x̃ = (x − mean(x)) / sqrt(‖x − mean(x)‖² + eps)``: the dot product of two such
    vectors is their correlation coefficient.
    """
    centred = x - x.mean(dim=-1, keepdim=True)
    return centred / torch.sqrt(centred.pow(2).sum(dim=-1, keepdim=True) + eps)


def scc(a: torch.Tensor, b: torch.Tensor, eps: float = _EPS) -> torch.Tensor:
    """Spectral correlation coefficient between every row of ``a`` and every row of ``b``.

    ``a``: ``(..., N, C)``, ``b``: ``(..., M, C)`` → ``(..., N, M)``, Pearson's r over ``C``.
    This is the similarity the paper puts in place of ``q·k``; :class:`ESSAttention`
    computes its kernelised form without ever building the ``N×M`` matrix.
    """
    return centred_unit(a, eps) @ centred_unit(b, eps).transpose(-2, -1)


def essa_feature_maps(
    q: torch.Tensor, k: torch.Tensor, eps: float = _EPS
) -> tuple[torch.Tensor, torch.Tensor]:
    """The kernel feature maps ``φ(q), φ(k)`` of ESSA, as in the reference code.

    Each is the element-wise square of the centred unit vector (:func:`centred_unit`), i.e.
    the per-channel share of the token's spectral variance; ``φ(q)`` is then L2-normalised
    over channels and ``φ(k)`` over tokens (axis ``-2``), which bounds the attention sums.
    ``q``, ``k``: ``(B, N, C)``.
    """
    q_map = F.normalize(centred_unit(q, eps).pow(2), dim=-1)
    k_map = F.normalize(centred_unit(k, eps).pow(2), dim=-2)
    return q_map, k_map


class ESSAttention(nn.Module):
    """ESSA, SCC-kernel self-attention over ``(B, N, dim)`` tokens, linear in ``N``.

    ``q, k, v = Linear(dim, 3·dim)(x)``; ``out = Linear(dim, dim)(v + φ(q) (φ(k)ᵀ v) / √N)``.
    The product is taken right to left, so the cost is ``O(N·dim²)`` and memory ``O(dim²)``
    instead of the ``N×N`` map of softmax attention; ``v`` itself is the zero-order term
    of the kernel expansion (the reference keeps first order only; its README notes higher
    orders as future work).
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        q_map, k_map = essa_feature_maps(q, k)
        context = k_map.transpose(-2, -1) @ v  # (B, dim, dim): never N×N
        return self.proj(v + q_map @ context / math.sqrt(x.shape[1]))


class ESSABlock(nn.Module):
    """The reference's ``Convup``/``Convdown`` block on ``(B, dim, H, W)`` maps.

    Tokens → LayerNorm → :class:`ESSAttention` → map → Dropout2d(0.2); concatenate with the
    block input (2·dim channels) → conv 1×1 (2d→2d), LeakyReLU(0.2), Dropout2d, conv 3×3
    (2d→2d), LeakyReLU(0.2), Dropout2d, conv 1×1 (2d→d); add the block input.
    """

    def __init__(self, dim: int, dropout: float = 0.2) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.attn = ESSAttention(dim)
        self.drop = nn.Dropout2d(dropout)
        self.ffn = nn.Sequential(
            nn.Conv2d(2 * dim, 2 * dim, 1),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Dropout2d(dropout),
            nn.Conv2d(2 * dim, 2 * dim, 3, padding=1),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Dropout2d(dropout),
            nn.Conv2d(2 * dim, dim, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2)  # (B, H·W, dim)
        attended = self.attn(self.norm(tokens)).transpose(1, 2).reshape(b, c, h, w)
        return x + self.ffn(torch.cat([self.drop(attended), x], dim=1))


def _upsampler(dim: int, scale: int) -> nn.Sequential:
    """Per factor 2: conv 3×3 dim→4·dim, PixelShuffle(2)."""
    layers: list[nn.Module] = []
    for _ in range(int(math.log2(scale))):
        layers += [nn.Conv2d(dim, 4 * dim, 3, padding=1), nn.PixelShuffle(2)]
    return nn.Sequential(*layers)


def _downsampler(dim: int, scale: int) -> nn.Sequential:
    """Per factor 2: conv 3×3 dim→dim/4, PixelUnshuffle(2) (back to dim channels)."""
    layers: list[nn.Module] = []
    for _ in range(int(math.log2(scale))):
        layers += [nn.Conv2d(dim, dim // 4, 3, padding=1), nn.PixelUnshuffle(2)]
    return nn.Sequential(*layers)


@register_model("essaformer")
class ESSAformer(nn.Module):
    """ESSAformer super-resolver, ``(B, bands, h, w)`` → ``(B, bands, h·scale, w·scale)``.

    Reference defaults: ``dim=256`` feature channels, 128 bands (Chikusei), ×4; with these
    it has 11,640,832 parameters (×2: 9,132,992; ×8: 14,148,672), counted by building the
    reference ``ESSA`` class. Structure:

    - ``conv_first``: conv 3×3 bands→dim on the low-resolution (LR) input
    - iterative refinement between the two scales with **one shared** up-block and
      **one shared** down-block (:class:`ESSABlock`), one shared up-sampler and one shared
      down-sampler (weights are reused at every step, as in the reference)::

          H1 = up(U(L0));  L2 = down(D(H1) + L0);  H3 = up(U(L2) + H1)
          L4 = down(D(H3) + L2);  H5 = up(U(L4) + H3)

      (``U``: sub-pixel up-sampler, ``D``: strided-by-unshuffle down-sampler,
      ``refinements=2`` down/up rounds after the first up-pass)
    - ``conv_last``: conv 3×3 dim→bands on ``H5``; no bicubic skip.

    Scales 2, 4 and 8 (powers of two: each factor of two is a PixelShuffle step, and the
    down-sampler divides ``dim`` by 4, so ``dim`` must be a multiple of 4). The reference
    also accepts ×3 in its up-sampler, but its ×3 down-sampler (dim//9 channels then
    PixelUnshuffle(3)) cannot return to ``dim`` channels for dim=256, so ×3 is refused.
    Any LR size of at least 1×1 works (attention is global, convolutions are padded).
    Dropout2d(0.2) is active in training only.
    """

    task = "super_resolution"
    min_tile = 1  # of the LR input
    scales = (2, 4, 8)

    def __init__(
        self,
        in_bands: int = 128,
        scale: int = 4,
        dim: int = 256,
        refinements: int = 2,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        if scale not in self.scales:
            raise ConfigError(f"ESSAformer supports scale in {list(self.scales)}, got {scale!r}")
        if in_bands < 1:
            raise ConfigError(f"ESSAformer needs in_bands >= 1, got {in_bands}")
        if dim < 4 or dim % 4:
            raise ConfigError(
                f"ESSAformer needs dim to be a positive multiple of 4 (its down-sampler "
                f"maps dim→dim/4 before PixelUnshuffle(2)), got {dim}"
            )
        if refinements < 0:
            raise ConfigError(f"ESSAformer needs refinements >= 0, got {refinements}")
        self.in_bands = in_bands
        self.scale = scale
        self.refinements = refinements
        self.conv_first = nn.Conv2d(in_bands, dim, 3, padding=1)
        self.up_block = ESSABlock(dim, dropout)
        self.down_block = ESSABlock(dim, dropout)
        self.upsample = _upsampler(dim, scale)
        self.downsample = _downsampler(dim, scale)
        self.conv_last = nn.Conv2d(dim, in_bands, 3, padding=1)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a :class:`DataError` naming the problem for input this model cannot take."""
        if x.ndim != 4:
            raise DataError(
                f"ESSAformer expects (batch, bands, height, width), got shape {tuple(x.shape)}"
            )
        if x.shape[1] != self.in_bands:
            raise DataError(
                f"ESSAformer was built for {self.in_bands} bands, got {x.shape[1]}; "
                f"build it with in_bands={x.shape[1]}"
            )
        if x.shape[2] < self.min_tile or x.shape[3] < self.min_tile:
            raise DataError(f"ESSAformer got an empty image of shape {tuple(x.shape)}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        low = self.conv_first(x)
        high = self.up_block(self.upsample(low))
        for _ in range(self.refinements):
            low = self.down_block(self.downsample(high) + low)
            high = self.up_block(self.upsample(low) + high)
        return self.conv_last(high)
