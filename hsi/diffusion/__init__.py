"""Diffusion utilities shared by hsi's diffusion-based restoration methods (HIR-Diff, DDS2M).

Schedules and the DDIM step live in :mod:`hsi.diffusion.schedules`, the small noise-predictor
U-Net in :mod:`hsi.diffusion.unet`, and HIR-Diff's sampler in :mod:`hsi.diffusion.hirdiff`.
"""

from hsi.diffusion.hirdiff import estimate_coefficients, hirdiff_restore, tv_loss
from hsi.diffusion.schedules import (
    alphas_cumprod_from_betas,
    cosine_betas,
    ddim_step,
    exponential_alphas_cumprod,
    linear_betas,
    make_alphas_cumprod,
    predict_x0,
    timestep_subsequence,
)
from hsi.diffusion.unet import SmallUNet

__all__ = [
    "SmallUNet",
    "alphas_cumprod_from_betas",
    "cosine_betas",
    "ddim_step",
    "estimate_coefficients",
    "exponential_alphas_cumprod",
    "hirdiff_restore",
    "linear_betas",
    "make_alphas_cumprod",
    "predict_x0",
    "timestep_subsequence",
    "tv_loss",
]
