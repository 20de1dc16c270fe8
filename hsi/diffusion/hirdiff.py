"""HIR-Diff: unsupervised hyperspectral restoration with a diffusion prior on a reduced image.

Pang, Rui, Cui, Wang, Meng, Cao, "HIR-Diff: Unsupervised Hyperspectral Image Restoration Via
Improved Diffusion Models", CVPR 2024 (arXiv:2402.15865). Authors' code:
github.com/LiPang/HIRDiff (``main.py``, ``guided_diffusion/rsfac_grad_gaussian_diffusion.py``).

Model. The clean cube ``X`` (bands C × pixels N) is the product ``X = E · A`` of a coefficient
matrix ``E`` (C × k) and a reduced image ``A`` (k × N) with few bands (k = 3 in the paper, so
that an RGB-like diffusion prior can model ``A``).

1. ``E`` is estimated once from the degraded cube ``Y`` (the authors' "Eq. (14)"): take the
   top-k left singular vectors ``U_k`` of ``Y`` (C × N), select k bands ``S`` by
   rank-revealing QR on ``U_k^T`` (the authors call MATLAB's strong RRQR with f = 1.2; here
   QR with column pivoting, ``scipy.linalg.qr(..., pivoting=True)``, which picks the same
   kind of well-conditioned columns), and set ``E = U_k · U_k[S]^{-1}``. Then ``E[S] = I``,
   so ``A`` is the cube's own bands ``S`` (an image-like signal a prior can model), and
   ``E`` is the exact least-squares solution of ``min_E ||Y_k - E Y_k[S]||`` for the rank-k
   projection ``Y_k = U_k U_k^T Y``: a rank-k cube is reproduced exactly from its bands S.
2. ``A`` is sampled by DDIM (eta = 0) in [-1, 1] (``A = (a + 1) / 2``), and after every
   step the sample is pushed down the gradient, w.r.t. ``x_t``, of the guidance
   ``eta1 · ||Y - E Â0||² + eta2 · TV_w(E Â0)`` where ``Â0`` is the clipped x0 prediction and
   ``TV_w`` is an L1 total variation over rows, columns and bands, weighted by edge maps of
   the rank-k projection of ``Y`` (small weight across edges, delta = 0.5), as in the
   authors' ``loss_denoise``.
3. The exponential noise schedule (``k = 8`` for denoising) with 20 strided steps out of
   T = 1000 (:mod:`hsi.diffusion.schedules`).

Tasks (``hirdiff_restore(task=...)``): denoising as above; super-resolution and inpainting put
the degradation operator ``H`` into the data term, ``||y - H(E Â0)||²``, with the operators
DDS2M uses too (:mod:`hsi.diffusion.operators`: block averaging for ``sr``, a 0/1 mask for
``inpaint``). For SR the detail inside each block comes from the prior alone: with an
untrained prior HIR-Diff keeps the observed block means but guesses the rest (tested), so SR
and spatial inpainting need a trained prior; dead lines and stripes of single bands are
restored by the low-rank model itself.

Differences from the authors' code, all deliberate:

- The prior is any ``eps_model(x_t, t)`` taking integer timesteps (hsi trains its own
  small U-Net, :class:`hsi.diffusion.unet.SmallUNet`), not the ddpm-cd SR3 network that
  takes the noise level.
- Guidance weights are per pixel, so they do not depend on the image size: the authors'
  losses are ``eta1·16384·||·||²/(C·H·W)`` and ``eta2·512·||·||₁/(C·H·W)`` on 256×256
  crops; ours are ``guidance_weight·||·||²/C`` and ``tv_weight·||·||₁/C`` summed over
  pixels, which equal theirs at 256×256 when ``guidance_weight = eta1/4`` and
  ``tv_weight = eta2/128``. The defaults (4.0 and 10/128) are the README's Houston
  denoising values eta1 = 16, eta2 = 10.
- The authors keep the iterate with the best PSNR against the ground truth; hsi returns the
  final sample (no ground truth is available to an unsupervised method).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.linalg
import torch
from torch.nn import functional as F
from tqdm.auto import tqdm

from hsi.diffusion.operators import DegradationOperator, check_task_args
from hsi.diffusion.schedules import ddim_step, make_alphas_cumprod, predict_x0, timestep_subsequence
from hsi.errors import ConfigError, DataError, HsiError

__all__ = ["estimate_coefficients", "hirdiff_restore", "tv_loss"]

EpsModel = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _as_cube(cube: np.ndarray | torch.Tensor) -> np.ndarray:
    """(bands, H, W) float64 array, or a clear DataError."""
    arr = cube.detach().cpu().numpy() if isinstance(cube, torch.Tensor) else np.asarray(cube)
    if arr.ndim != 3:
        raise DataError(f"HIR-Diff takes a (bands, H, W) cube, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number):
        raise DataError(f"HIR-Diff takes a numeric cube, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise DataError(
            f"the cube holds {int((~np.isfinite(arr)).sum())} NaN/inf values; fill them first"
        )
    return arr


def _check_k(k: int, bands: int, pixels: int) -> None:
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ConfigError(f"the reduced image needs k >= 1 bands, got k={k!r}")
    if k > bands or k > pixels:
        raise ConfigError(
            f"k={k} reduced bands cannot exceed the cube's {bands} bands or {pixels} pixels"
        )


def estimate_coefficients(
    cube: np.ndarray | torch.Tensor, k: int = 3
) -> tuple[torch.Tensor, torch.Tensor]:
    """Coefficient matrix ``E`` (bands × k) and the k selected bands, from SVD + pivoted QR.

    ``E = U_k · U_k[S]^{-1}`` with ``U_k`` the top-k left singular vectors of the band ×
    pixel matrix and ``S`` the first k column pivots of QR on ``U_k^T`` (see the module
    docstring). Returns ``(E, bands)``: float64 ``E`` with ``E[bands] = I`` and the sorted
    band indices (int64), so ``cube ≈ E @ cube[bands]`` (exact when the cube has rank k).
    """
    arr = _as_cube(cube)
    c, h, w = arr.shape
    _check_k(k, c, h * w)
    u, _, _ = np.linalg.svd(arr.reshape(c, h * w), full_matrices=False)
    u_k = u[:, :k]
    _, pivots = scipy.linalg.qr(u_k.T, mode="r", pivoting=True)
    bands = np.sort(pivots[:k])
    coef = u_k @ np.linalg.inv(u_k[bands])
    return torch.from_numpy(coef), torch.from_numpy(bands.astype(np.int64))


def _diffs(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Forward differences along rows, columns and bands with wrap-around (same shape as x).

    The wrap-around keeps every difference the same shape as ``x`` so per-pixel weights
    broadcast, as in the authors' ``diff_3d``.
    """
    return (
        torch.roll(x, -1, dims=-2) - x,
        torch.roll(x, -1, dims=-1) - x,
        torch.roll(x, -1, dims=-3) - x,
    )


def tv_loss(x: torch.Tensor, weights: tuple[torch.Tensor, ...] | None = None) -> torch.Tensor:
    """Anisotropic 3-D total variation: mean over elements of ``Σ_d |w_d · ∂_d x|``.

    ``x`` is (..., bands, H, W); ``d`` runs over rows, columns and bands (circular
    boundary). ``weights`` are three tensors broadcastable to ``x`` (HIR-Diff's edge
    weights) or None for plain TV. A constant image has TV 0.
    """
    if x.ndim < 3:
        raise DataError(f"tv_loss takes (..., bands, H, W), got shape {tuple(x.shape)}")
    ws = weights if weights is not None else (1.0, 1.0, 1.0)
    if len(ws) != 3:
        raise ConfigError(f"tv_loss needs 3 weights (rows, columns, bands), got {len(ws)}")
    return sum((w * d).abs().sum() for w, d in zip(ws, _diffs(x), strict=True)) / x.numel()


def _edge_weights(lowrank: torch.Tensor, delta: float = 0.5) -> tuple[torch.Tensor, ...]:
    """HIR-Diff's TV weights: ``max / (|∂| + delta · max)`` of the band-mean gradient.

    ``lowrank`` is the rank-k projection of the degraded cube, (1, C, H, W). The three maps
    share one normaliser (largest weight 1): flat areas get weight ~1 and the strongest
    edge ~delta/(1 + delta) (1/3 for delta = 0.5), so TV smooths flat regions, spares edges.
    """
    maps = []
    for d in _diffs(lowrank):
        g = d.mean(dim=1, keepdim=True).abs()
        peak = g.max().clamp(min=1e-12)
        maps.append(peak / (g + delta * peak))
    top = max(float(m.max()) for m in maps)
    return tuple(m / top for m in maps)


def _impute_low_rank(arr: np.ndarray, mask: torch.Tensor, k: int, iters: int = 30) -> np.ndarray:
    """Fill the missing values of ``arr`` by iterated rank-k SVD (hard impute) for estimating E.

    Why not use only the pixels observed in every band: with values missing entry-wise
    (dead lines, stripes, random entries) hardly any pixel of a 200-band cube is complete.
    Missing values start at their band's observed mean; each pass replaces them by the rank-k
    reconstruction. A band with no observed value has no mean and no row of ``E`` to estimate:
    that is refused.
    """
    keep = mask.numpy() > 0
    c = arr.shape[0]
    flat, seen = arr.reshape(c, -1).copy(), keep.reshape(c, -1)
    counts = seen.sum(axis=1)
    if (counts == 0).any():
        dead = ", ".join(str(int(b)) for b in np.flatnonzero(counts == 0)[:10])
        raise DataError(
            f"bands {dead} (0-based) have no observed value: HIR-Diff's low-rank model "
            "cannot estimate them; drop those bands or observe some of their pixels"
        )
    means = (np.where(seen, flat, 0.0).sum(axis=1) / counts)[:, None]
    flat = np.where(seen, flat, means)
    for _ in range(iters):
        u, sv, vt = np.linalg.svd(flat, full_matrices=False)
        flat = np.where(seen, flat, (u[:, :k] * sv[:k]) @ vt[:k])
    return flat.reshape(arr.shape)


def hirdiff_restore(
    degraded: np.ndarray | torch.Tensor,
    eps_model: EpsModel,
    k: int = 3,
    steps: int = 20,
    tv_weight: float = 10 / 128,
    guidance_weight: float = 4.0,
    seed: int = 0,
    progress: bool = True,
    alphas_cumprod: torch.Tensor | None = None,
    *,
    task: str = "denoise",
    mask: np.ndarray | torch.Tensor | None = None,
    scale: int | None = None,
) -> np.ndarray:
    """Restore a (bands, H, W) cube on the [0, 1] scale with HIR-Diff; float32 cube out.

    The three tasks share the sampler and differ in the operator ``H`` of the data term
    ``||y - H(E Â0)||²`` (:class:`hsi.diffusion.operators.DegradationOperator`):

    - ``denoise``: ``degraded`` is the noisy cube; ``E`` comes from it.
    - ``inpaint``: ``mask`` (cube-shaped or (H, W), 1 = observed) marks the values to trust;
      missing values may hold anything finite. ``E`` comes from the cube with its missing
      values filled by rank-k SVD imputation, and the TV weights are uniform (the edge maps
      of a cube with holes would see the holes' borders as edges).
    - ``sr``: ``degraded`` is the low-resolution cube (bands, H, W), the output is
      (bands, H·scale, W·scale); ``H`` averages ``scale × scale`` blocks. ``E`` comes from the
      low-resolution cube (the spectral subspace does not depend on resolution) and the edge
      maps from its bicubic upsampling. The data term is summed over low-resolution pixels
      times ``scale²``, so ``guidance_weight`` keeps its per-high-resolution-pixel meaning.

    Args:
        degraded: the degraded cube, [0, 1] scale (as :mod:`hsi.data.restoration` produces).
        eps_model: the prior, ``eps_model(x_t (1, k, H, W), t (1,) int64) -> eps`` of the
            same shape, trained on k-band images scaled to [-1, 1].
        k: bands of the reduced image (3 in the paper); must match the prior's channels.
        steps: DDIM steps over the schedule (20 in the paper).
        tv_weight, guidance_weight: per-pixel weights of the edge-weighted TV and the data
            term (module docstring gives the mapping to the authors' eta2, eta1).
        seed: seeds the initial noise (and any randomness in ``eps_model``); the same seed
            gives the same output.
        progress: show a tqdm bar over the steps.
        alphas_cumprod: ``alpha_bar`` of the prior's training schedule (T entries); default
            HIR-Diff's exponential schedule, T = 1000, k = 8.
        task, mask, scale: the restoration problem (above).

    Raises:
        DataError: not a 3-D cube, NaN/inf values, a cube that is not on the [0, 1] scale, a
            mask of another shape or with values other than 0/1, a band with no observed
            value.
        ConfigError: ``steps < 1``, ``k`` larger than the band count, negative weights, an
            unknown task, a missing or superfluous mask/scale, or a prior whose output shape
            differs from (1, k, H, W) on a probe call.
    """
    arr = _as_cube(degraded)
    c, h, w = arr.shape
    _check_k(k, c, h * w)
    m = check_task_args("HIR-Diff", task, mask, scale, arr.shape)
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ConfigError(f"HIR-Diff needs steps >= 1 sampling steps, got {steps!r}")
    if tv_weight < 0 or guidance_weight < 0:
        raise ConfigError(
            f"guidance weights must be >= 0, got tv_weight={tv_weight}, "
            f"guidance_weight={guidance_weight}"
        )
    observed = arr if m is None else arr[m.numpy() > 0]
    median, peak = float(np.median(observed)), float(np.abs(observed).max())
    if not 0.0 <= median <= 1.0 or peak > 10.0:
        raise DataError(
            f"HIR-Diff expects a cube on the [0, 1] scale (median {median:.3g}, max |value| "
            f"{peak:.3g}); divide by the data range first"
        )
    abar = make_alphas_cumprod("exp", 1000, k=8.0) if alphas_cumprod is None else alphas_cumprod
    abar = torch.as_tensor(abar, dtype=torch.float64)
    if abar.ndim != 1 or len(abar) < 1 or not bool(((abar > 0) & (abar <= 1)).all()):
        raise ConfigError("alphas_cumprod must be a 1-D schedule with every value in (0, 1]")
    timesteps = timestep_subsequence(len(abar), steps)

    s = scale if task == "sr" else 1
    big_h, big_w = h * s, w * s
    op = DegradationOperator(task, m, scale if task == "sr" else None)
    coef, bands = estimate_coefficients(arr if m is None else _impute_low_rank(arr, m, k), k)
    coef32 = coef.float()
    y = torch.from_numpy(arr).float()
    if task == "denoise":
        weights = _edge_weights((coef32 @ y[bands].reshape(k, -1)).reshape(1, c, h, w))
    elif task == "sr":
        lowrank = (coef32 @ y[bands].reshape(k, -1)).reshape(1, c, h, w)
        up = F.interpolate(lowrank, scale_factor=s, mode="bicubic", align_corners=False)
        weights = _edge_weights(up)
    else:
        weights = None
    data_scale = float(s * s)
    observation = y if task == "sr" else op(y)  # y itself is the low-resolution image for sr

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            with torch.no_grad():
                probe = eps_model(torch.zeros(1, k, big_h, big_w), torch.tensor([timesteps[0]]))
        except (HsiError, RuntimeError) as err:
            raise ConfigError(
                f"the diffusion prior cannot take a (1, {k}, {big_h}, {big_w}) input (k={k} "
                f"reduced bands of a {big_h}×{big_w} image): {err}"
            ) from err
        if not isinstance(probe, torch.Tensor) or tuple(probe.shape) != (1, k, big_h, big_w):
            got = tuple(probe.shape) if isinstance(probe, torch.Tensor) else type(probe).__name__
            raise ConfigError(
                f"the diffusion prior returned {got} for a (1, {k}, {big_h}, {big_w}) input; it "
                f"must model k={k}-band images (train it with in_channels={k} or change k)"
            )
        torch.manual_seed(seed)
        x = torch.randn(1, k, big_h, big_w)
        nexts = timesteps[1:] + [-1]
        for t, t_next in tqdm(
            list(zip(timesteps, nexts, strict=True)), desc="HIR-Diff", disable=not progress
        ):
            a = float(abar[t])
            a_next = 1.0 if t_next < 0 else float(abar[t_next])
            x = x.detach().requires_grad_(True)
            with torch.enable_grad():
                eps = eps_model(x, torch.tensor([t]))
                x0 = predict_x0(x, eps, a).clamp(-1.0, 1.0)
                xhat = (coef32 @ ((x0 + 1) / 2).reshape(k, -1)).reshape(c, big_h, big_w)
                data = data_scale * ((observation - op(xhat)) ** 2).sum() / c
                tv = tv_loss(xhat[None], weights) * big_h * big_w
                loss = guidance_weight * data + tv_weight * tv
                (grad,) = torch.autograd.grad(loss, x)
            x = ddim_step(x0.detach(), eps.detach(), a, a_next, eta=0.0) - grad
        reduced = ((x.detach() + 1) / 2).reshape(k, -1)
    out = (coef32 @ reduced).reshape(c, big_h, big_w).clamp(0.0, 1.0)
    return out.numpy().astype(np.float32)
