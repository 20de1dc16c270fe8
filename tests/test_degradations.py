"""Degradations: the papers' noise statistics, seeding, specs, and bad specs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hsi.data.degradations import build_degradation, degradation_names, degradation_scale
from hsi.errors import ConfigError, DataError


def _clean(bands: int = 12, h: int = 40, w: int = 60, seed: int = 0) -> np.ndarray:
    """Values in (0.2, 0.8): never exactly 0 or 1, so dead lines and impulses are visible."""
    return np.random.default_rng(seed).uniform(0.2, 0.8, (bands, h, w)).astype(np.float32)


def _rng(seed: int = 1) -> np.random.Generator:
    return np.random.default_rng(seed)


ALL_SPECS = [
    "gaussian30",
    "blind",
    "noniid",
    "case1",
    "case2",
    "case3",
    "case4",
    "case5",
    "complex",
    "stripe",
    "deadline",
    "impulse",
    "bicubic_x2",
    "gaussian_blur_x2",
    "block_mean_x2",
    {"name": "compose", "steps": ["bicubic_x2", "gaussian10"]},
]


@pytest.mark.parametrize("spec", ALL_SPECS, ids=str)
def test_seeded_reproducible_and_input_untouched(spec) -> None:
    x = _clean()
    before = x.copy()
    d = build_degradation(spec)
    a, b = d(x, _rng(3)), d(x, _rng(3))
    np.testing.assert_array_equal(a, b)
    random = not (
        isinstance(spec, str) and spec.startswith(("bicubic", "gaussian_blur", "block_mean"))
    )
    if random:  # only pure resampling is deterministic
        assert not np.array_equal(a, d(x, _rng(4)))
    np.testing.assert_array_equal(x, before)  # degradations copy, never modify the clean cube
    assert a.dtype == np.float32
    assert a.shape == (12, 40 // d.scale, 60 // d.scale)
    # the spec rebuilds the same degradation (what a checkpoint stores)
    assert build_degradation(d.spec()) == d


def test_gaussian_noise_std_is_sigma_over_255() -> None:
    x = _clean(8, 64, 64)
    for sigma in (10, 30, 50, 70):
        noise = build_degradation(f"gaussian{sigma}")(x, _rng()) - x
        assert abs(noise.std() - sigma / 255) < 0.03 * sigma / 255
        assert abs(noise.mean()) < 0.01 * sigma / 255 + 1e-3


def test_noniid_band_sigmas_come_from_the_list() -> None:
    x = _clean(40, 64, 64)
    noise = build_degradation("noniid")(x, _rng()) - x
    stds = noise.reshape(40, -1).std(axis=1) * 255
    nearest = np.array([min((10, 30, 50, 70), key=lambda s: abs(s - v)) for v in stds])
    assert np.all(np.abs(stds - nearest) < 0.06 * nearest)
    assert len(set(nearest.tolist())) > 1  # bands really differ


def test_blind_uses_one_sigma_per_sample() -> None:
    x = _clean(8, 64, 64)
    seen = set()
    for seed in range(12):
        std = (build_degradation("blind")(x, _rng(seed)) - x).std() * 255
        sigma = min((10, 30, 50, 70), key=lambda s: abs(s - std))
        assert abs(std - sigma) < 0.05 * sigma
        seen.add(sigma)
    assert len(seen) >= 3


def _columns_changed(diff_band: np.ndarray) -> np.ndarray:
    return np.flatnonzero(np.abs(diff_band).max(axis=0) > 0)


def test_stripe_hits_a_third_of_bands_with_constant_column_shifts() -> None:
    bands, w = 12, 60
    x = _clean(bands, 40, w)
    diff = build_degradation("stripe")(x, _rng()) - x
    hit = [b for b in range(bands) if np.abs(diff[b]).max() > 0]
    assert len(hit) == math.floor(bands / 3)
    for b in hit:
        cols = _columns_changed(diff[b])
        assert math.floor(0.05 * w) <= len(cols) < math.floor(0.15 * w)
        shift = diff[b][:, cols]
        np.testing.assert_allclose(shift, shift[:1].repeat(40, 0), atol=1e-6)
        assert np.all(np.abs(shift) <= 0.25 + 1e-6)


def test_deadline_zeroes_columns_of_a_third_of_bands() -> None:
    bands, w = 12, 60
    x = _clean(bands, 40, w)
    y = build_degradation("deadline")(x, _rng())
    hit = [b for b in range(bands) if (y[b] == 0).any()]
    assert len(hit) == bands // 3
    for b in hit:
        dead = np.flatnonzero((y[b] == 0).all(axis=0))
        assert math.ceil(0.05 * w) <= len(dead) < math.ceil(0.15 * w)
        np.testing.assert_array_equal(np.delete(y[b], dead, axis=1), np.delete(x[b], dead, 1))


def test_impulse_sets_salt_and_pepper_at_the_papers_amounts() -> None:
    bands = 12
    x = _clean(bands, 80, 80)
    y = build_degradation("impulse")(x, _rng())
    hit = [b for b in range(bands) if ((y[b] == 0) | (y[b] == 1)).any()]
    assert len(hit) == bands // 3
    for b in hit:
        flipped = (y[b] == 0) | (y[b] == 1)
        amount = flipped.mean()
        assert min(abs(amount - a) for a in (0.1, 0.3, 0.5, 0.7)) < 0.03
        assert abs((y[b][flipped] == 1).mean() - 0.5) < 0.1  # salt vs pepper 50/50
        np.testing.assert_array_equal(y[b][~flipped], x[b][~flipped])


def test_case5_puts_three_kinds_on_disjoint_thirds() -> None:
    bands = 12
    x = _clean(bands, 40, 60)
    # sigma 0 switches the Gaussian part off so each structured kind can be recognised
    y = build_degradation({"name": "case", "case": 5, "sigmas": [0]})(x, _rng())
    diff = y - x
    dead = {b for b in range(bands) if (y[b] == 0).all(axis=0).any()}
    impulse = {b for b in range(bands) if (y[b] == 1).any()}
    stripe = {b for b in range(bands) if b not in dead | impulse and np.abs(diff[b]).max() > 0}
    assert len(dead) == len(impulse) == len(stripe) == bands // 3
    assert not (dead & impulse) and not (dead & stripe) and not (impulse & stripe)


def test_bicubic_down_keeps_constants_and_matches_torch() -> None:
    x = np.full((3, 16, 16), 0.4, np.float32)
    y = build_degradation("bicubic_x4")(x, _rng())
    assert y.shape == (3, 4, 4)
    np.testing.assert_allclose(y, 0.4, atol=1e-6)
    z = _clean(3, 16, 16)
    ref = torch.nn.functional.interpolate(
        torch.from_numpy(z)[None], scale_factor=0.25, mode="bicubic", antialias=True
    )[0].numpy()
    np.testing.assert_allclose(build_degradation("bicubic_x4")(z, _rng()), ref, atol=1e-6)
    assert degradation_scale("bicubic_x8") == 8


def test_gaussian_blur_down_decimates_block_centres() -> None:
    x = np.full((2, 16, 16), 0.3, np.float32)
    y = build_degradation({"name": "gaussian_blur_down", "factor": 4, "blur_sigma": 1.0})(x, _rng())
    assert y.shape == (2, 4, 4)
    np.testing.assert_allclose(y, 0.3, atol=1e-6)


def test_block_mean_down_is_the_diffusion_sr_operator() -> None:
    import torch

    from hsi.diffusion.operators import DegradationOperator

    x = _clean()
    y = build_degradation("block_mean_x4")(x, _rng())
    assert y.shape == (12, 10, 15)
    assert y[3, 0, 0] == pytest.approx(float(x[3, :4, :4].mean()), rel=1e-5)
    expected = DegradationOperator("sr", scale=4)(torch.from_numpy(x).double()).numpy()
    np.testing.assert_allclose(y, expected, rtol=1e-5)


def test_compose_downsamples_then_adds_noise() -> None:
    d = build_degradation({"name": "compose", "steps": ["bicubic_x2", "gaussian30"]})
    assert d.scale == 2
    x = np.full((4, 32, 32), 0.5, np.float32)
    y = d(x, _rng())
    assert y.shape == (4, 16, 16)
    assert abs((y - 0.5).std() - 30 / 255) < 0.1 * 30 / 255


@pytest.mark.parametrize(
    "spec",
    [
        "nonsense",
        {"name": "gaussian", "sigma": -1},
        {"name": "gaussian", "sgima": 30},
        {"name": "case", "case": 6},
        {"name": "impulse", "amounts": [1.5]},
        {"name": "stripe", "min_amount": 0.3, "max_amount": 0.1},
        {"name": "bicubic_down", "factor": 1},
        {"name": "compose", "steps": []},
        42,
    ],
    ids=str,
)
def test_bad_specs_are_config_errors(spec) -> None:
    with pytest.raises(ConfigError):
        build_degradation(spec)


def test_bad_inputs_are_data_errors() -> None:
    with pytest.raises(DataError, match="divide by scale"):
        build_degradation("bicubic_x4")(_clean(2, 10, 10), _rng())
    with pytest.raises(DataError, match="bands, H, W"):
        build_degradation("gaussian30")(np.zeros((4, 4)), _rng())
    with pytest.raises(DataError, match="too narrow"):
        build_degradation("stripe")(_clean(3, 8, 5), _rng())


def test_names_listed() -> None:
    assert {"gaussian", "blind_gaussian", "complex", "case", "bicubic_down"} <= set(
        degradation_names()
    )
