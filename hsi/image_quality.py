"""Image-quality metrics of restored cubes, averaged the way the HSI restoration papers do.

All functions take ``(B, C, H, W)`` or ``(C, H, W)`` tensors on a ``[0, 1]`` scale
(``data_range = 1``) and return one value **per image** (shape ``(B,)``); a test set's score
is the mean over its images, as in the papers' tables. The building blocks are torchmetrics'
functional metrics (SSIM is written out, see :func:`mssim`):

- **MPSNR**: PSNR of every band separately (``10 log10(1 / MSE_band)``), averaged over the
  bands. This is QRNN3D's and HSDT's ``cal_bwpsnr`` / MATLAB ``MSIQA``.
- **MSSIM**: SSIM of every band (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5,
  K1 = 0.01, K2 = 0.03, averaged over the positions where the window fits inside the image),
  averaged over the bands; the window of the MATLAB evaluation QRNN3D's tables come from.
  (The papers' Python training logs use scikit-image's 7x7 uniform window instead, which
  gives slightly different values.)
- **SAM**: the angle between the restored and the true spectrum of every pixel, averaged
  over the pixels, in **degrees** by default (``degrees=False`` gives radians, which is what
  QRNN3D's/HSDT's Python ``cal_sam`` prints). Pixels whose true or restored spectrum is all
  zeros have no angle and are left out of the mean.
- **ERGAS**: ``100 / ratio * sqrt(mean_b(RMSE_b^2 / mean_b^2))`` with ``ratio`` the
  super-resolution factor (torchmetrics' convention; use ``ratio=1`` for denoising).
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F
from torchmetrics.functional.image import (
    error_relative_global_dimensionless_synthesis,
    peak_signal_noise_ratio,
    spectral_angle_mapper,
)

from hsi.errors import DataError

__all__ = ["ergas", "mpsnr", "mssim", "quality_report", "sam"]

_SSIM_RADIUS = 5  # half of the 11x11 Gaussian window (sigma 1.5)


def _pair(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if pred.shape != target.shape:
        raise DataError(
            f"restored image {tuple(pred.shape)} and reference {tuple(target.shape)} differ in "
            "shape; compare images of the same size and band count"
        )
    if pred.ndim == 3:
        pred, target = pred[None], target[None]
    if pred.ndim != 4:
        raise DataError(f"metrics need (B, C, H, W) or (C, H, W) tensors, got {tuple(pred.shape)}")
    return pred.double(), target.double()


def mpsnr(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Mean over bands of each band's PSNR (dB), per image. A perfect band gives +inf."""
    p, t = _pair(pred, target)
    per_band = peak_signal_noise_ratio(
        p, t, data_range=data_range, reduction="none", dim=(2, 3)
    )  # (B, C)
    return per_band.mean(dim=1)


def _gaussian_window(dtype: torch.dtype, radius: int = _SSIM_RADIUS, sigma: float = 1.5):
    """The normalised 1-D Gaussian of SSIM's 11x11 window (the 2-D window is its outer
    product, so the local means are two 1-D convolutions)."""
    x = torch.arange(-radius, radius + 1, dtype=dtype)
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def mssim(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Mean over bands of each band's SSIM (11x11 Gaussian window, sigma 1.5), per image.

    Written out with separable 'valid' convolutions (the window only where it fits inside the
    image, as Wang et al.'s ssim_index and scikit-image average) rather than with torchmetrics'
    SSIM, which needed ~16 GB of memory for one 128x128x200 cube; the values are the same
    (tests compare with a NumPy reference).
    """
    p, t = _pair(pred, target)
    b, c, h, w = p.shape
    if min(h, w) < 2 * _SSIM_RADIUS + 1:
        raise DataError(f"SSIM needs images of at least 11x11 pixels, got {h}x{w}")
    g = _gaussian_window(p.dtype)
    rows, cols = g.reshape(1, 1, -1, 1), g.reshape(1, 1, 1, -1)

    def local_mean(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(x, rows), cols)

    x, y = p.reshape(b * c, 1, h, w), t.reshape(b * c, 1, h, w)
    mx, my = local_mean(x), local_mean(y)
    sxx = local_mean(x * x) - mx * mx
    syy = local_mean(y * y) - my * my
    sxy = local_mean(x * y) - mx * my
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    ssim_map = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return ssim_map.flatten(1).mean(dim=1).reshape(b, c).mean(dim=1)


def sam(pred: torch.Tensor, target: torch.Tensor, degrees: bool = True) -> torch.Tensor:
    """Mean spectral angle over pixels, per image (degrees unless ``degrees=False``)."""
    p, t = _pair(pred, target)
    if p.shape[1] < 2:
        raise DataError("SAM needs at least 2 bands")
    angles = spectral_angle_mapper(p, t, reduction="none")  # (B, H, W), radians
    defined = (p.norm(dim=1) > 0) & (t.norm(dim=1) > 0)
    angles = torch.where(defined, angles, torch.zeros_like(angles))
    counts = defined.flatten(1).sum(dim=1)
    out = angles.flatten(1).sum(dim=1) / counts.clamp(min=1)
    out = torch.where(counts > 0, out, torch.full_like(out, math.nan))
    return torch.rad2deg(out) if degrees else out


def ergas(pred: torch.Tensor, target: torch.Tensor, ratio: float = 1.0) -> torch.Tensor:
    """ERGAS per image; ``ratio`` is the resolution ratio (the SR scale; 1 for denoising)."""
    p, t = _pair(pred, target)
    if bool((t.mean(dim=(2, 3)) == 0).any()):
        raise DataError("ERGAS is undefined for a band whose reference mean is 0")
    return error_relative_global_dimensionless_synthesis(p, t, ratio=ratio, reduction="none")


def quality_report(
    pred: torch.Tensor, target: torch.Tensor, ratio: float = 1.0, clamp: bool = True
) -> dict[str, torch.Tensor]:
    """MPSNR, MSSIM, SAM (degrees) and ERGAS per image.

    ``clamp`` clips the restored image to ``[0, 1]`` first, as a restored image is stored
    and viewed (the reference is used as it is).
    """
    if clamp:
        pred = pred.clamp(0, 1)
    return {
        "MPSNR": mpsnr(pred, target),
        "MSSIM": mssim(pred, target),
        "SAM": sam(pred, target),
        "ERGAS": ergas(pred, target, ratio=ratio),
    }
