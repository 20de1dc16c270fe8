"""HIR-Diff: coefficient estimation, TV, the guided DDIM sampler and its input checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from hsi.diffusion.hirdiff import estimate_coefficients, hirdiff_restore, tv_loss
from hsi.diffusion.schedules import make_alphas_cumprod
from hsi.diffusion.unet import SmallUNet
from hsi.errors import ConfigError, DataError

torch.set_num_threads(1)

BANDS, H, W, K = 24, 16, 16, 3


def _clean_cube(seed: int = 0) -> np.ndarray:
    """A rank-3 cube on [0, 1]: three smooth/edged abundance maps times random spectra."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W] / H
    maps = np.stack(
        [np.sin(3 * yy) ** 2, (xx > 0.5) * 0.8 + 0.1, 0.5 + 0.4 * np.cos(4 * xx * yy)]
    ).reshape(K, -1)
    spectra = rng.uniform(0.1, 1.0, (BANDS, K))
    cube = (spectra / spectra.sum(1, keepdims=True) @ maps).reshape(BANDS, H, W)
    return (cube - cube.min()) / (cube.max() - cube.min())


def _noisy(clean: np.ndarray, sigma: float = 0.1, seed: int = 1) -> np.ndarray:
    return clean + sigma * np.random.default_rng(seed).standard_normal(clean.shape)


def _rmse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(((a - b) ** 2).mean()))


def _tiny_unet(channels: int = K) -> SmallUNet:
    torch.manual_seed(0)
    return SmallUNet(channels, base_channels=8, channel_mults=(1, 2), num_res_blocks=1).eval()


def test_coefficients_recover_a_rank_k_cube_exactly() -> None:
    clean = _clean_cube()
    coef, bands = estimate_coefficients(clean, K)
    assert coef.shape == (BANDS, K) and bands.shape == (K,)
    assert torch.allclose(coef[bands], torch.eye(K, dtype=coef.dtype), atol=1e-10)
    flat = torch.from_numpy(clean.reshape(BANDS, -1))
    assert torch.allclose(coef @ flat[bands], flat, atol=1e-10)
    # Torch input gives the same answer as numpy input.
    coef_t, bands_t = estimate_coefficients(torch.from_numpy(clean), K)
    assert torch.equal(bands_t, bands) and torch.allclose(coef_t, coef)


def test_rrqr_picks_k_distinct_informative_bands() -> None:
    clean = _clean_cube()
    # Make bands 0-11 copies of one band: a rank-revealing choice takes at most one of them.
    clean[:12] = clean[0]
    coef, bands = estimate_coefficients(clean, K)
    chosen = bands.tolist()
    assert len(set(chosen)) == K and chosen == sorted(chosen)
    assert sum(b < 12 for b in chosen) <= 1
    flat = torch.from_numpy(clean.reshape(BANDS, -1))
    assert torch.allclose(coef @ flat[bands], flat, atol=1e-9)


def test_tv_loss_values() -> None:
    assert tv_loss(torch.full((1, 4, 5, 6), 0.7)).item() == 0.0
    # A row ramp x[b, i, j] = i: the row differences are 1, except the wrap-around -(H - 1).
    h, w, b = 5, 6, 4
    ramp = torch.arange(h, dtype=torch.float64)[:, None].expand(b, h, w)
    expected = b * w * ((h - 1) * 1 + (h - 1)) / ramp.numel()
    assert tv_loss(ramp).item() == pytest.approx(expected)
    half = (torch.full((1, 1, 1), 0.5),) * 3
    assert tv_loss(ramp, half).item() == pytest.approx(expected / 2)


def test_restore_with_an_oracle_prior_beats_the_noisy_input() -> None:
    clean = _clean_cube()
    noisy = _noisy(clean)
    abar = make_alphas_cumprod("exp", 1000, k=8.0)
    _, bands = estimate_coefficients(noisy, K)
    target = torch.from_numpy(2 * clean[bands.numpy()] - 1).float()[None]

    def oracle(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The exact noise that maps x_t to the clean reduced image (a perfect prior)."""
        a = abar[int(t[0])].float()
        return (x - a.sqrt() * target) / (1 - a).sqrt()

    out = hirdiff_restore(noisy, oracle, k=K, steps=20, progress=False, alphas_cumprod=abar)
    assert out.shape == clean.shape and out.dtype == np.float32
    # Only the error of E (estimated from the noisy cube) remains: well below the noise.
    assert _rmse(out, clean) < 0.5 * _rmse(noisy, clean)


def test_guidance_alone_denoises_with_an_untrained_prior() -> None:
    clean = _clean_cube()
    noisy = _noisy(clean)
    net = _tiny_unet()
    guided = hirdiff_restore(noisy, net, k=K, steps=10, seed=0, progress=False)
    unguided = hirdiff_restore(
        noisy, net, k=K, steps=10, seed=0, progress=False, guidance_weight=0.0, tv_weight=0.0
    )
    no_tv = hirdiff_restore(noisy, net, k=K, steps=10, seed=0, progress=False, tv_weight=0.0)
    assert _rmse(guided, clean) < _rmse(noisy, clean)
    assert _rmse(guided, clean) < _rmse(unguided, clean)
    assert _rmse(guided, clean) < _rmse(no_tv, clean)  # the TV term helps here


def test_same_seed_same_output() -> None:
    noisy = _noisy(_clean_cube())
    net = _tiny_unet()
    first = hirdiff_restore(noisy, net, k=K, steps=4, seed=3, progress=False)
    again = hirdiff_restore(noisy, net, k=K, steps=4, seed=3, progress=False)
    other = hirdiff_restore(noisy, net, k=K, steps=4, seed=4, progress=False)
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_bad_input_errors() -> None:
    noisy = _noisy(_clean_cube())
    net = _tiny_unet()
    with pytest.raises(ConfigError, match="steps >= 1"):
        hirdiff_restore(noisy, net, k=K, steps=0, progress=False)
    with pytest.raises(ConfigError, match="cannot exceed the cube's 24 bands"):
        hirdiff_restore(noisy, net, k=25, progress=False)
    with pytest.raises(ConfigError, match="cannot exceed"):
        estimate_coefficients(noisy, 30)
    nan_cube = noisy.copy()
    nan_cube[2, 3, 4] = np.nan
    with pytest.raises(DataError, match="1 NaN/inf"):
        hirdiff_restore(nan_cube, net, k=K, progress=False)
    with pytest.raises(DataError, match=r"\(bands, H, W\)"):
        hirdiff_restore(noisy[0], net, k=K, progress=False)
    with pytest.raises(DataError, match=r"\[0, 1\] scale"):
        hirdiff_restore(noisy * 10000, net, k=K, progress=False)
    with pytest.raises(ConfigError, match="alphas_cumprod"):
        hirdiff_restore(noisy, net, k=K, progress=False, alphas_cumprod=torch.zeros(10))
    # A prior for 4-band images, and one that returns the wrong channel count.
    with pytest.raises(ConfigError, match="cannot take a"):
        hirdiff_restore(noisy, _tiny_unet(4), k=K, progress=False)
    with pytest.raises(ConfigError, match="must model k=3-band images"):
        hirdiff_restore(noisy, lambda x, t: x[:, :1], k=K, progress=False)


def _block_mean(cube: np.ndarray, s: int) -> np.ndarray:
    c, h, w = cube.shape
    return cube.reshape(c, h // s, s, w // s, s).mean(axis=(2, 4))


def test_sr_with_an_oracle_prior_recovers_the_detail() -> None:
    clean = _clean_cube()
    low = _block_mean(clean, 2)
    abar = make_alphas_cumprod("exp", 1000, k=8.0)
    _, bands = estimate_coefficients(low, K)
    target = torch.from_numpy(2 * clean[bands.numpy()] - 1).float()[None]

    def oracle(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a = abar[int(t[0])].float()
        return (x - a.sqrt() * target) / (1 - a).sqrt()

    out = hirdiff_restore(
        low, oracle, k=K, steps=20, progress=False, alphas_cumprod=abar, task="sr", scale=2
    )
    assert out.shape == clean.shape
    nearest = low.repeat(2, axis=1).repeat(2, axis=2)
    assert _rmse(out, clean) < 0.5 * _rmse(nearest, clean)


def test_sr_output_keeps_the_observed_block_means() -> None:
    """With an untrained prior the detail inside a block is the prior's guess (no better than
    nearest-neighbour here); the data term still holds the block means to the observation."""
    clean = _clean_cube()
    low = _block_mean(clean, 2)
    out = hirdiff_restore(low, _tiny_unet(), k=K, steps=20, progress=False, task="sr", scale=2)
    nearest = low.repeat(2, axis=1).repeat(2, axis=2)
    assert _rmse(_block_mean(out, 2), low) < 0.25 * _rmse(nearest, clean)


def test_inpaint_fills_missing_pixels_and_whole_bands() -> None:
    clean = _clean_cube()
    rng = np.random.default_rng(2)
    mask = (rng.random(clean.shape[1:]) > 0.3).astype(np.float32)[None].repeat(BANDS, 0)
    mask[5, ::2] = 0  # and every other row of one band (dead lines)
    observed = np.where(mask > 0, clean, 0.0)
    out = hirdiff_restore(
        observed, _tiny_unet(), k=K, steps=10, progress=False, task="inpaint", mask=mask
    )
    missing = mask == 0
    # Whole pixels missing: only the (untrained) prior and TV fill them, better than zeros.
    assert _rmse(out[missing], clean[missing]) < 0.5 * _rmse(observed[missing], clean[missing])
    assert _rmse(out[~missing], clean[~missing]) < 0.05
    # Dead lines of one band in pixels whose other bands were seen: the low-rank model
    # (E estimated by imputation) restores them almost exactly.
    lines = np.zeros_like(missing)
    lines[5, ::2] = mask[4, ::2] > 0
    assert _rmse(out[lines], clean[lines]) < 0.1 * _rmse(observed[lines], clean[lines])


def test_task_errors() -> None:
    noisy = _noisy(_clean_cube())
    net = _tiny_unet()
    with pytest.raises(ConfigError, match="unknown HIR-Diff task"):
        hirdiff_restore(noisy, net, k=K, progress=False, task="deblur")
    with pytest.raises(ConfigError, match="scale >= 2"):
        hirdiff_restore(noisy, net, k=K, progress=False, task="sr")
    with pytest.raises(ConfigError, match="needs a mask"):
        hirdiff_restore(noisy, net, k=K, progress=False, task="inpaint")
    with pytest.raises(ConfigError, match="only used by task='inpaint'"):
        hirdiff_restore(noisy, net, k=K, progress=False, mask=np.ones(noisy.shape))
    with pytest.raises(DataError, match="mask's shape"):
        hirdiff_restore(noisy, net, k=K, progress=False, task="inpaint", mask=np.ones((3, 3)))
    with pytest.raises(DataError, match="only 0"):
        hirdiff_restore(noisy, net, progress=False, task="inpaint", mask=np.full(noisy.shape, 0.5))
    sparse = np.ones(noisy.shape, dtype=np.float32)
    sparse[7] = 0
    with pytest.raises(DataError, match="bands 7 .* no observed value"):
        hirdiff_restore(noisy, net, k=K, progress=False, task="inpaint", mask=sparse)


@pytest.mark.realdata
def test_real_indian_pines_crop_is_denoised(shared_data: Path) -> None:
    """On a real 32×32 crop (200 bands, sigma 30/255) guided sampling beats the noisy input
    and the plain subspace projection E @ noisy[bands], even with an untrained prior."""
    from hsi.data.registry import load_dataset

    scene = load_dataset("indian_pines", root=str(shared_data))
    data = scene.cube.data[:, :32, :32].astype(np.float64)
    clean = (data - data.min()) / (data.max() - data.min())
    noisy = clean + 30 / 255 * np.random.default_rng(0).standard_normal(clean.shape)
    out = hirdiff_restore(noisy, _tiny_unet(), k=K, steps=10, seed=0, progress=False)
    coef, bands = estimate_coefficients(noisy, K)
    projected = (coef.numpy() @ noisy[bands.numpy()].reshape(K, -1)).reshape(clean.shape)
    assert _rmse(out, clean) < _rmse(noisy, clean)
    assert _rmse(out, clean) < _rmse(projected.clip(0, 1), clean)
