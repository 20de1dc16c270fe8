"""Image-quality metrics against hand computations and plain-numpy references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.signal import correlate2d

from hsi.errors import DataError
from hsi.image_quality import ergas, mpsnr, mssim, quality_report, sam


def test_mpsnr_is_the_mean_of_band_psnrs() -> None:
    target = torch.full((1, 3, 8, 8), 0.5, dtype=torch.float64)
    offsets = torch.tensor([0.1, 0.01, 0.001], dtype=torch.float64)
    pred = target + offsets.view(1, 3, 1, 1)  # band b has MSE offsets[b]^2
    expected = np.mean([-20 * math.log10(d) for d in (0.1, 0.01, 0.001)])  # 20, 40, 60 dB
    assert mpsnr(pred, target).item() == pytest.approx(expected, abs=1e-5)  # float rounding
    # band-wise averaging differs from one PSNR over the whole cube (that would be ~24.7 dB)
    whole = -10 * math.log10(float((offsets**2).mean()))
    assert abs(expected - whole) > 10


def test_mpsnr_per_image_and_unbatched() -> None:
    t = torch.rand(2, 4, 12, 12, dtype=torch.float64)
    p = t.clone()
    p[1] += 0.05
    values = mpsnr(p, t)
    assert values.shape == (2,)
    assert math.isinf(values[0].item())
    assert values[1].item() == pytest.approx(-20 * math.log10(0.05), abs=1e-5)
    assert mpsnr(p[1], t[1]).item() == pytest.approx(values[1].item())


def _ssim_reference(x: np.ndarray, y: np.ndarray) -> float:
    """Wang et al. (2004) SSIM: 11x11 Gaussian (sigma 1.5) window, valid positions only."""
    g = np.exp(-((np.arange(11) - 5) ** 2) / (2 * 1.5**2))
    g /= g.sum()
    k = np.outer(g, g)

    def f(a: np.ndarray) -> np.ndarray:
        return correlate2d(a, k, mode="valid")

    mx, my = f(x), f(y)
    sxx, syy, sxy = f(x * x) - mx**2, f(y * y) - my**2, f(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    ssim_map = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))
    return float(ssim_map.mean())


def test_mssim_matches_a_numpy_reference_band_by_band() -> None:
    rng = np.random.default_rng(0)
    t = rng.random((3, 24, 20))
    p = np.clip(t + 0.1 * rng.standard_normal(t.shape), 0, 1)
    expected = np.mean([_ssim_reference(p[b], t[b]) for b in range(3)])
    got = mssim(torch.from_numpy(p), torch.from_numpy(t)).item()
    assert got == pytest.approx(expected, abs=1e-10)
    assert mssim(torch.from_numpy(t), torch.from_numpy(t)).item() == pytest.approx(1.0)


def test_sam_recovers_a_known_angle_in_degrees_and_radians() -> None:
    theta = 0.3
    target = torch.zeros(1, 2, 4, 4, dtype=torch.float64)
    target[:, 0] = 2.0  # spectrum (2, 0)
    pred = torch.zeros_like(target)
    pred[:, 0], pred[:, 1] = math.cos(theta), math.sin(theta)  # rotated by theta, other length
    assert sam(pred, target, degrees=False).item() == pytest.approx(theta, abs=1e-9)
    assert sam(pred, target).item() == pytest.approx(math.degrees(theta), abs=1e-7)


def test_sam_leaves_out_zero_spectra() -> None:
    target = torch.ones(1, 3, 2, 2, dtype=torch.float64)
    pred = target.clone()
    pred[0, :, 0, 0] = 0  # no angle defined here; the other 3 pixels are perfect
    assert sam(pred, target).item() == pytest.approx(0.0, abs=1e-6)


def test_ergas_hand_computation() -> None:
    target = torch.tensor([[[[1.0, 3.0]], [[2.0, 2.0]]]], dtype=torch.float64)  # (1, 2, 1, 2)
    pred = target + torch.tensor([0.5, 0.2], dtype=torch.float64).view(1, 2, 1, 1)
    # band RMSEs 0.5, 0.2; band means 2, 2 -> 100 / 4 * sqrt(((0.25)^2 + (0.1)^2) / 2)
    expected = 100 / 4 * math.sqrt((0.25**2 + 0.1**2) / 2)
    assert ergas(pred, target, ratio=4).item() == pytest.approx(expected, rel=1e-9)


def test_quality_report_clamps_the_restored_image() -> None:
    t = torch.rand(1, 4, 16, 16)
    p = t + 0.01 * torch.randn_like(t)
    p[0, 0, 0, 0] = 5.0  # an overshoot clipped to 1 before scoring
    clipped = p.clamp(0, 1)
    report = quality_report(p, t)
    assert set(report) == {"MPSNR", "MSSIM", "SAM", "ERGAS"}
    assert report["MPSNR"].item() == pytest.approx(mpsnr(clipped, t).item())
    assert quality_report(p, t, clamp=False)["MPSNR"].item() < report["MPSNR"].item()


def test_bad_inputs() -> None:
    with pytest.raises(DataError, match="differ in shape"):
        mpsnr(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 9))
    with pytest.raises(DataError, match="at least 11x11"):
        mssim(torch.rand(1, 3, 8, 40), torch.rand(1, 3, 8, 40))
    with pytest.raises(DataError, match="2 bands"):
        sam(torch.rand(1, 1, 4, 4), torch.rand(1, 1, 4, 4))
    with pytest.raises(DataError, match="mean is 0"):
        ergas(torch.rand(1, 2, 4, 4), torch.zeros(1, 2, 4, 4))
