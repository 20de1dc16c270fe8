"""Diffusion utilities shared by hsi's diffusion-based restoration methods (HIR-Diff, DDS2M).

Schedules and the DDIM step live in :mod:`hsi.diffusion.schedules`, the small noise-predictor
U-Net in :mod:`hsi.diffusion.unet`, HIR-Diff's sampler in :mod:`hsi.diffusion.hirdiff` and its
prior's training (``hsi fit --config configs/hirdiff/prior_*.yaml``) in
:mod:`hsi.diffusion.prior`; DDS2M, which needs no prior, in :mod:`hsi.diffusion.dds2m`.
"""

from hsi.diffusion.dds2m import VS2M, dds2m_restore, estimate_noise_sigma, variational_loss
from hsi.diffusion.hirdiff import estimate_coefficients, hirdiff_restore, tv_loss
from hsi.diffusion.prior import DiffusionPriorTask, ReducedImageDataModule, load_prior
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
    "VS2M",
    "DiffusionPriorTask",
    "ReducedImageDataModule",
    "SmallUNet",
    "dds2m_restore",
    "estimate_noise_sigma",
    "load_prior",
    "variational_loss",
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
