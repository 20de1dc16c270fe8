"""Morphological erosion and dilation for feature maps: exact grey-scale, or learnable.

Two ways to compute an "erosion" and a "dilation" of every channel of ``(N, C, H, W)``:

- **grey** (:func:`grey_erosion`, :func:`grey_dilation`): the textbook flat grey-scale
  operators, the minimum / maximum over a structuring element centred on each pixel
  (Soille, *Morphological Image Analysis*, 2003, ch. 3). No parameters. The element is a
  ``k × k`` square or a ``k``-wide cross (the centre row and column of that square), ``k``
  odd. Both are computed with :func:`torch.nn.functional.max_pool2d` (erosion through the
  duality ``ε(x) = −δ(−x)``); the cross is the maximum of a vertical and a horizontal line
  pool, so nothing ``k²``-sized is materialised.
- **conv**: the learnable stand-in of MorpMamba (Ahmad et al., Neurocomputing 2025, whose
  paper calls it "depthwise separable convolution"): one depthwise ``k × k`` convolution per
  operator, no bias, zero ("same") padding, weights initialised to ones as in the authors'
  notebook; the "erosion" output is negated (``−conv_e(x)``), the "dilation" is
  ``conv_d(x)``. At initialisation they are a box sum and its negative, so a following
  pointwise (1×1) convolution, which completes the depthwise-separable pair, sees a
  smoothed map and its mirror; training moves the two kernels apart. It is a linear
  filter, not a morphological operator: ``mode="grey"`` is the real thing.

Border handling of the grey operators: the window is clipped to the image, i.e. only
pixels inside the image take part in the min / max. This is implemented as edge
replication (``mode="replicate"`` padding), which for a square or a cross centred on the
pixel is exactly equivalent: every replicated value is a copy of an in-image pixel that
lies in the same window. It equals ``scipy.ndimage.grey_erosion`` / ``grey_dilation`` with
``mode="nearest"`` (tested), and keeps the duality ``ε(x) = −δ(−x)`` exact.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from hsi.errors import ConfigError, DataError

StructuringElement = Literal["square", "cross"]
MorphologyMode = Literal["conv", "grey"]


def _check_kernel(kernel_size: int) -> None:
    if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
        raise ConfigError(
            f"morphology kernel_size must be a positive odd int (the element is centred on "
            f"the pixel), got {kernel_size!r}"
        )


def _check_maps(x: torch.Tensor, what: str) -> None:
    if x.ndim != 4:
        raise DataError(f"{what} expects (N, C, H, W) feature maps, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise DataError(f"{what} expects a floating-point tensor, got {x.dtype}")


def grey_dilation(
    x: torch.Tensor, kernel_size: int = 3, shape: StructuringElement = "square"
) -> torch.Tensor:
    """Flat grey-scale dilation: the max over a ``kernel_size`` square or cross, per channel.

    ``x`` is ``(N, C, H, W)``; the window is clipped to the image (see module doc).
    """
    _check_kernel(kernel_size)
    _check_maps(x, "grey_dilation")
    if shape not in ("square", "cross"):
        raise ConfigError(f"structuring element must be 'square' or 'cross', got {shape!r}")
    r = kernel_size // 2
    if r == 0:
        return x.clone()
    height, width = x.shape[-2:]
    padded = F.pad(x, (r, r, r, r), mode="replicate")
    if shape == "square":
        return F.max_pool2d(padded, kernel_size, stride=1)
    vertical = F.max_pool2d(padded, (kernel_size, 1), stride=1)[..., r : r + width]
    horizontal = F.max_pool2d(padded, (1, kernel_size), stride=1)[..., r : r + height, :]
    return torch.maximum(vertical, horizontal)


def grey_erosion(
    x: torch.Tensor, kernel_size: int = 3, shape: StructuringElement = "square"
) -> torch.Tensor:
    """Flat grey-scale erosion, the min over the element: ``−grey_dilation(−x)`` exactly."""
    _check_maps(x, "grey_erosion")
    return -grey_dilation(-x, kernel_size, shape)


class Morphology(nn.Module):
    """Erosion and dilation of each of ``channels`` maps: ``(N, C, H, W)`` → two ``(N, C, H, W)``.

    ``mode="grey"``: exact flat min / max over ``shape`` (no parameters).
    ``mode="conv"``: MorpMamba's learnable depthwise convolutions (``2 · C · k²``
    parameters, see the module doc); ``shape`` must then stay ``"square"``.
    """

    def __init__(
        self,
        channels: int,
        kernel_size: int = 5,
        mode: MorphologyMode = "conv",
        shape: StructuringElement = "square",
    ) -> None:
        super().__init__()
        _check_kernel(kernel_size)
        if channels < 1:
            raise ConfigError(f"Morphology needs channels >= 1, got {channels}")
        if mode not in ("conv", "grey"):
            raise ConfigError(f"morphology mode must be 'conv' or 'grey', got {mode!r}")
        if shape not in ("square", "cross"):
            raise ConfigError(f"structuring element must be 'square' or 'cross', got {shape!r}")
        if mode == "conv" and shape != "square":
            raise ConfigError(
                "a 'cross' structuring element applies to morphology mode 'grey' only; "
                "mode 'conv' learns its own square kernel"
            )
        self.channels = channels
        self.kernel_size = kernel_size
        self.mode = mode
        self.shape = shape
        self.erode_conv: nn.Conv2d | None = None
        self.dilate_conv: nn.Conv2d | None = None
        if mode == "conv":
            self.erode_conv = self._depthwise(channels, kernel_size)
            self.dilate_conv = self._depthwise(channels, kernel_size)

    @staticmethod
    def _depthwise(channels: int, kernel_size: int) -> nn.Conv2d:
        conv = nn.Conv2d(
            channels, channels, kernel_size, padding=kernel_size // 2, groups=channels, bias=False
        )
        nn.init.ones_(conv.weight)  # the authors' initialisation (a box sum)
        return conv

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _check_maps(x, "Morphology")
        if x.shape[1] != self.channels:
            raise DataError(
                f"Morphology was built for {self.channels} channels, got {x.shape[1]} "
                f"(input shape {tuple(x.shape)})"
            )
        if self.erode_conv is not None and self.dilate_conv is not None:
            return -self.erode_conv(x), self.dilate_conv(x)
        return (
            grey_erosion(x, self.kernel_size, self.shape),
            grey_dilation(x, self.kernel_size, self.shape),
        )

    def extra_repr(self) -> str:
        return f"{self.channels}, kernel_size={self.kernel_size}, mode={self.mode!r}, " + (
            f"shape={self.shape!r}"
        )
