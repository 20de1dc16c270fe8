"""Noise schedules, timestep subsequences and the DDIM update, shared by hsi's diffusion methods.

Why not ``diffusers``: it is not a dependency of hsi, and what HIR-Diff (and later DDS2M) needs
is ~100 lines of arithmetic (three ``alpha_bar`` curves, a strided timestep list and one DDIM
formula). Writing them here keeps the dependency list short and the formulas readable next to
the papers they come from.

Conventions (as in DDPM/DDIM): timesteps ``t = 0 .. T-1``; ``alpha_bar[t]`` is the cumulative
product of ``1 - beta`` up to and including step ``t``, so ``x_t = sqrt(alpha_bar[t]) x_0 +
sqrt(1 - alpha_bar[t]) eps``. ``alpha_bar`` decreases with ``t``; "the step after the last"
(t = -1, the clean image) has ``alpha_bar = 1``.

References:

- Ho, Jain, Abbeel, "Denoising Diffusion Probabilistic Models", NeurIPS 2020 (linear betas
  1e-4 .. 2e-2 over T = 1000).
- Nichol & Dhariwal, "Improved Denoising Diffusion Probabilistic Models", ICML 2021 (cosine
  ``alpha_bar(t) = cos²((t/T + s)/(1 + s) · π/2)``, s = 0.008, betas clipped at 0.999).
- Song, Meng, Ermon, "Denoising Diffusion Implicit Models", ICLR 2021 (the DDIM step, eta).
- Pang et al., "HIR-Diff: Unsupervised Hyperspectral Image Restoration Via Improved Diffusion
  Models", CVPR 2024 (the exponential schedule; authors' code github.com/LiPang/HIRDiff,
  ``make_beta_schedule(..., "exp", k)`` and the strided ``indices`` of ``p_sample_loop``).
"""

from __future__ import annotations

import math

import torch

from hsi.errors import ConfigError

__all__ = [
    "alphas_cumprod_from_betas",
    "cosine_betas",
    "ddim_step",
    "exponential_alphas_cumprod",
    "linear_betas",
    "make_alphas_cumprod",
    "predict_x0",
    "timestep_subsequence",
]


def _check_steps(num_steps: int, name: str = "num_steps") -> None:
    if not isinstance(num_steps, int) or isinstance(num_steps, bool) or num_steps < 1:
        raise ConfigError(f"{name} must be a positive integer, got {num_steps!r}")


def linear_betas(num_steps: int = 1000, start: float = 1e-4, end: float = 2e-2) -> torch.Tensor:
    """DDPM's linear beta schedule (Ho et al. 2020: 1e-4 .. 2e-2 over 1000 steps), float64."""
    _check_steps(num_steps)
    if not 0.0 < start <= end < 1.0:
        raise ConfigError(f"linear betas need 0 < start <= end < 1, got start={start}, end={end}")
    return torch.linspace(start, end, num_steps, dtype=torch.float64)


def cosine_betas(num_steps: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Nichol & Dhariwal's cosine schedule: ``beta_t = 1 - f(t+1)/f(t)``, clipped at max_beta.

    ``f(t) = cos²((t/T + s)/(1 + s) · π/2)``; the offset ``s`` keeps the first betas from
    being vanishingly small; the clip avoids the singularity at ``t = T``.
    """
    _check_steps(num_steps)
    if s < 0 or not 0.0 < max_beta < 1.0:
        raise ConfigError(f"cosine betas need s >= 0 and 0 < max_beta < 1, got {s}, {max_beta}")
    t = torch.arange(num_steps + 1, dtype=torch.float64) / num_steps
    f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    return (1 - f[1:] / f[:-1]).clamp(max=max_beta)


def alphas_cumprod_from_betas(betas: torch.Tensor) -> torch.Tensor:
    """``alpha_bar[t] = prod_{i<=t} (1 - beta_i)``."""
    if betas.ndim != 1 or not bool(((betas > 0) & (betas < 1)).all()):
        raise ConfigError("betas must be a 1-D tensor with every value in (0, 1)")
    return torch.cumprod(1 - betas.to(torch.float64), dim=0)


def exponential_alphas_cumprod(
    num_steps: int = 1000, k: float = 8.0, floor: float = 1e-3
) -> torch.Tensor:
    """HIR-Diff's exponential noise schedule, as ``alpha_bar[t]`` for ``t = 0 .. T-1``.

    The authors' code builds ``g(j) = 1 - exp(-k · j / T)`` for ``j = 0 .. T``, reverses it
    (so ``j = T - t``), rescales it min-max to [0, 1] and then to ``[floor, 1]`` with
    floor = 1e-3; the first value (t = -1) is the clean image (1.0) and is dropped here. With
    a larger ``k`` the curve stays near 1 for most of the trajectory and falls steeply only
    near ``t = T``, so a few strided steps (20 in the paper) already spend most of their
    budget at low noise; the paper reports ~5x faster denoising for little loss. The
    README uses k = 8 for denoising and super-resolution, k = 5 for inpainting.
    """
    _check_steps(num_steps)
    if k <= 0 or not 0.0 < floor < 1.0:
        raise ConfigError(f"exponential schedule needs k > 0 and 0 < floor < 1, got {k}, {floor}")
    j = torch.arange(num_steps + 1, dtype=torch.float64)
    g = torch.flip(1 - torch.exp(-k * j / num_steps), dims=[0])
    g = (g - g.min()) / (g.max() - g.min())
    return (g * (1 - floor) + floor)[1:]


def make_alphas_cumprod(name: str, num_steps: int = 1000, **kwargs: float) -> torch.Tensor:
    """``alpha_bar`` by schedule name: ``linear`` | ``cosine`` | ``exp`` (kwargs go through)."""
    if name == "linear":
        return alphas_cumprod_from_betas(linear_betas(num_steps, **kwargs))
    if name == "cosine":
        return alphas_cumprod_from_betas(cosine_betas(num_steps, **kwargs))
    if name == "exp":
        return exponential_alphas_cumprod(num_steps, **kwargs)
    raise ConfigError(f"unknown noise schedule {name!r}; choose linear, cosine or exp")


def timestep_subsequence(num_train_steps: int, steps: int) -> list[int]:
    """The timesteps a strided sampler visits, from noisiest to cleanest.

    As in HIR-Diff's sampler: stride ``T // steps`` starting at t = 0, visited in reverse
    (T = 1000, 20 steps -> 950, 900, ..., 50, 0). The authors' ``arange(0, T, T // steps)``
    yields more than ``steps`` values when ``steps`` does not divide T; here exactly
    ``steps`` values are returned. HIR-Diff's acceleration comes from the exponential
    ``alpha_bar`` curve these steps index (:func:`exponential_alphas_cumprod`), not from a
    non-uniform stride.
    """
    _check_steps(num_train_steps, "num_train_steps")
    _check_steps(steps, "steps")
    if steps > num_train_steps:
        raise ConfigError(
            f"steps ({steps}) cannot exceed the number of training timesteps ({num_train_steps})"
        )
    stride = num_train_steps // steps
    return list(range(stride * (steps - 1), -1, -stride))


def predict_x0(x_t: torch.Tensor, eps: torch.Tensor, alpha_bar_t: float | torch.Tensor):
    """Invert the forward process: ``x0 = (x_t - sqrt(1 - a) eps) / sqrt(a)``."""
    a = torch.as_tensor(alpha_bar_t, dtype=x_t.dtype, device=x_t.device)
    return (x_t - (1 - a).sqrt() * eps) / a.sqrt()


def ddim_step(
    x0: torch.Tensor,
    eps: torch.Tensor,
    alpha_bar_t: float | torch.Tensor,
    alpha_bar_next: float | torch.Tensor,
    eta: float = 0.0,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """One DDIM update (Song et al. 2021, Eq. 12) from the predicted ``x0`` and ``eps``.

    ``x_next = sqrt(a') x0 + sqrt(1 - a' - sigma²) eps + sigma z`` with
    ``sigma = eta · sqrt((1 - a')/(1 - a) · (1 - a/a'))``; eta = 0 is deterministic DDIM,
    eta = 1 is DDPM's ancestral step. ``x0`` and ``eps`` are passed separately (not
    re-derived from each other) because samplers clip ``x0`` while keeping the model's
    ``eps``, as HIR-Diff does. Use ``alpha_bar_next = 1`` for the final step to x0.
    """
    if eta < 0:
        raise ConfigError(f"DDIM eta must be >= 0, got {eta}")
    a = torch.as_tensor(alpha_bar_t, dtype=x0.dtype, device=x0.device)
    a_next = torch.as_tensor(alpha_bar_next, dtype=x0.dtype, device=x0.device)
    sigma = eta * ((1 - a_next) / (1 - a) * (1 - a / a_next)).clamp(min=0).sqrt()
    direction = (1 - a_next - sigma**2).clamp(min=0).sqrt()
    out = a_next.sqrt() * x0 + direction * eps
    if eta > 0:
        if noise is None:
            noise = torch.randn_like(x0)
        out = out + sigma * noise
    return out
