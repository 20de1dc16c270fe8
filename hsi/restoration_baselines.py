"""Classical restoration baselines, one function each, for the closing measurements.

All take and return ``(bands, H, W)`` float arrays on the [0, 1] scale of
:mod:`hsi.data.restoration` (the output of a super-resolution baseline is ``scale`` times
larger). Noise levels ``sigma`` are on the papers' 0-255 scale, like the degradations.

- :func:`gaussian_filter_denoise`, :func:`median_filter_denoise`: band-wise spatial filters
  (scipy), the cheapest reference.
- :func:`bm3d_bandwise`: BM3D (Dabov et al., IEEE TIP 2007) on every band separately, the
  usual "BM3D" row of HSI denoising tables. Needs the optional ``bm3d`` package.
- :func:`bm4d_denoise`: BM4D (Maggioni et al., IEEE TIP 2013) on the cube as a volume,
  the strongest classical baseline of QRNN3D's and HSDT's tables. Needs ``bm4d``.
  Both packages are the authors' binaries (Tampere University, non-commercial licence);
  install them with ``pip install bm3d bm4d`` (``bm4d`` 4.2.5 and ``bm3d`` 4.0.3 were used
  here). BM4D is slow on CPU: minutes for a 145x145x200 cube.
- :func:`bicubic_upsample`: bicubic interpolation, the super-resolution reference.
"""

from __future__ import annotations

import numpy as np

from hsi.errors import ConfigError, DataError

__all__ = [
    "bicubic_upsample",
    "bm3d_bandwise",
    "bm4d_denoise",
    "gaussian_filter_denoise",
    "median_filter_denoise",
]


def _cube(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 3:
        raise DataError(f"baselines take a (bands, H, W) cube, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise DataError("the cube holds NaN/inf values; fill them first")
    return x


def gaussian_filter_denoise(noisy: np.ndarray, sigma_px: float = 1.0) -> np.ndarray:
    """Band-wise Gaussian smoothing with a ``sigma_px``-pixel kernel."""
    from scipy.ndimage import gaussian_filter

    return gaussian_filter(_cube(noisy), sigma=(0, sigma_px, sigma_px), mode="reflect")


def median_filter_denoise(noisy: np.ndarray, size: int = 3) -> np.ndarray:
    """Band-wise ``size x size`` median filter (robust to impulse noise and dead pixels)."""
    from scipy.ndimage import median_filter

    return median_filter(_cube(noisy), size=(1, size, size), mode="reflect")


def _optional(module: str):  # noqa: ANN202 - returns the imported module
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(
            f"the {module} baseline needs the optional package {module!r}: pip install {module}"
        ) from None


def bm3d_bandwise(noisy: np.ndarray, sigma: float) -> np.ndarray:
    """BM3D on every band with the known noise level ``sigma`` (0-255 scale)."""
    bm3d = _optional("bm3d")
    x = _cube(noisy)
    return np.stack([np.asarray(bm3d.bm3d(band, sigma / 255), np.float32) for band in x])


def bm4d_denoise(noisy: np.ndarray, sigma: float) -> np.ndarray:
    """BM4D on the whole cube (bands as the third volume axis), known ``sigma`` (0-255)."""
    bm4d = _optional("bm4d")
    x = _cube(noisy)
    out = bm4d.bm4d(np.ascontiguousarray(x.transpose(1, 2, 0)), sigma / 255)
    return np.ascontiguousarray(np.asarray(out, np.float32).transpose(2, 0, 1))


def bicubic_upsample(low_res: np.ndarray, scale: int) -> np.ndarray:
    """Bicubic interpolation by ``scale`` (torch, ``align_corners=False``)."""
    import torch
    import torch.nn.functional as F

    if not isinstance(scale, int) or scale < 2:
        raise ConfigError(f"scale must be an integer >= 2, got {scale!r}")
    t = torch.from_numpy(_cube(low_res))[None]
    up = F.interpolate(t, scale_factor=scale, mode="bicubic", align_corners=False)
    return up[0].numpy()
