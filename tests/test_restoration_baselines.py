"""The classical denoising baselines reduce Gaussian noise (BM3D/BM4D when installed)."""

from __future__ import annotations

import numpy as np
import pytest

from hsi import restoration_baselines as rb


def _noisy(sigma: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    clean = np.tile(np.linspace(0.2, 0.8, 16)[None, None, :], (4, 16, 1)).astype(np.float32)
    return clean, (clean + rng.normal(0, sigma, clean.shape)).astype(np.float32)


def _rmse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(((a - b) ** 2).mean()))


@pytest.mark.parametrize("name", ["bm4d_denoise", "bm3d_bandwise"])
def test_block_matching_baselines_cut_the_noise(name: str) -> None:
    pytest.importorskip(name.split("_")[0], reason="optional baseline (pip install hsi[baselines])")
    clean, noisy = _noisy()
    out = getattr(rb, name)(noisy, sigma=0.1 * 255)  # sigma on the 0-255 scale
    assert out.shape == noisy.shape and out.dtype == np.float32
    assert _rmse(out, clean) < 0.5 * _rmse(noisy, clean)


def test_filters_cut_the_noise() -> None:
    clean, noisy = _noisy()
    for out in (rb.gaussian_filter_denoise(noisy), rb.median_filter_denoise(noisy)):
        assert _rmse(out, clean) < _rmse(noisy, clean)
