"""Shared diffusion utilities: schedules, the strided timesteps, the DDIM step, the small U-Net."""

from __future__ import annotations

import math

import pytest
import torch

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
from hsi.diffusion.unet import SmallUNet, timestep_embedding
from hsi.errors import ConfigError, DataError

torch.set_num_threads(1)


def _strictly_decreasing(x: torch.Tensor) -> bool:
    return bool((x[1:] < x[:-1]).all())


def test_linear_schedule_endpoints_and_monotone() -> None:
    betas = linear_betas(1000)
    assert betas[0].item() == pytest.approx(1e-4) and betas[-1].item() == pytest.approx(2e-2)
    abar = alphas_cumprod_from_betas(betas)
    assert abar[0].item() == pytest.approx(1 - 1e-4)
    assert _strictly_decreasing(abar)
    # DDPM's schedule ends almost at pure noise: prod(1 - beta) over 1000 steps ~ 4e-5.
    expected_last = math.prod(1 - b for b in betas.tolist())
    assert abar[-1].item() == pytest.approx(expected_last, rel=1e-9)
    assert abar[-1].item() < 1e-4


def test_cosine_schedule_matches_closed_form() -> None:
    T, s = 1000, 0.008
    abar = alphas_cumprod_from_betas(cosine_betas(T, s))
    assert _strictly_decreasing(abar)

    def f(t: float) -> float:
        return math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2

    # Away from the clipped end, alpha_bar(t) = f(t + 1) / f(0) exactly (telescoping product).
    for t in (0, 10, 500, 900):
        assert abar[t].item() == pytest.approx(f(t + 1) / f(0), rel=1e-9)
    assert cosine_betas(T, s).max().item() <= 0.999


def test_exponential_schedule_properties() -> None:
    T, k, floor = 1000, 8.0, 1e-3
    abar = exponential_alphas_cumprod(T, k, floor)
    assert abar.shape == (T,)
    assert _strictly_decreasing(abar)
    assert abar[-1].item() == pytest.approx(floor)
    # Closed form of the authors' curve at t: (1 - exp(-k (T - 1 - t) / T)) / (1 - exp(-k)).
    for t in (0, 250, 500, 999):
        g = (1 - math.exp(-k * (T - 1 - t) / T)) / (1 - math.exp(-k))
        assert abar[t].item() == pytest.approx(g * (1 - floor) + floor, rel=1e-12)
    # Larger k keeps the signal longer (less noise at mid-trajectory): the point of the schedule.
    mid = T // 2
    assert exponential_alphas_cumprod(T, 8.0)[mid] > exponential_alphas_cumprod(T, 5.0)[mid]
    assert exponential_alphas_cumprod(T, 8.0)[mid] > make_alphas_cumprod("linear", T)[mid]
    # Betas derived from it are valid and give back the same alpha_bar.
    betas = 1 - abar[1:] / abar[:-1]
    assert bool(((betas > 0) & (betas < 1)).all())
    assert torch.allclose(abar[0] * alphas_cumprod_from_betas(betas), abar[1:], rtol=1e-10)


def test_schedule_by_name_and_bad_values() -> None:
    assert torch.equal(make_alphas_cumprod("exp", 100, k=5.0), exponential_alphas_cumprod(100, 5.0))
    with pytest.raises(ConfigError, match="unknown noise schedule"):
        make_alphas_cumprod("sigmoid", 100)
    with pytest.raises(ConfigError, match="positive integer"):
        linear_betas(0)
    with pytest.raises(ConfigError, match="k > 0"):
        exponential_alphas_cumprod(100, k=0.0)


def test_timestep_subsequence() -> None:
    ts = timestep_subsequence(1000, 20)
    assert ts == list(range(950, -1, -50))  # the authors' indices for T = 1000, step = 20
    for steps in (1, 3, 7, 30, 1000):
        ts = timestep_subsequence(1000, steps)
        assert len(ts) == steps and ts[-1] == 0 and len(set(ts)) == steps
        assert all(0 <= t < 1000 for t in ts)
        gaps = {a - b for a, b in zip(ts, ts[1:], strict=False)}
        assert len(gaps) <= 1  # uniform stride
    with pytest.raises(ConfigError, match="steps must be a positive integer"):
        timestep_subsequence(1000, 0)
    with pytest.raises(ConfigError, match="cannot exceed"):
        timestep_subsequence(10, 11)


def test_ddim_step_is_exact_with_the_true_noise() -> None:
    gen = torch.Generator().manual_seed(0)
    x0 = torch.rand(2, 3, 4, 4, generator=gen) * 2 - 1
    eps = torch.randn(2, 3, 4, 4, generator=gen)
    abar = make_alphas_cumprod("cosine", 1000)
    a, a_next = abar[700].item(), abar[300].item()
    x_t = math.sqrt(a) * x0 + math.sqrt(1 - a) * eps
    assert torch.allclose(predict_x0(x_t, eps, a), x0, atol=1e-5)
    # eta = 0: the step lands exactly on the forward marginal at the next timestep...
    x_next = ddim_step(predict_x0(x_t, eps, a), eps, a, a_next)
    assert torch.allclose(x_next, math.sqrt(a_next) * x0 + math.sqrt(1 - a_next) * eps, atol=1e-5)
    # ...and on x0 itself at the end (alpha_bar = 1), whatever eta is (sigma vanishes there).
    for eta in (0.0, 1.0):
        assert torch.allclose(ddim_step(x0, eps, a, 1.0, eta=eta), x0, atol=1e-6)


def test_ddim_eta_adds_the_ddpm_variance() -> None:
    x0, eps, z = torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 2)
    a, a_next = 0.5, 0.8
    sigma = math.sqrt((1 - a_next) / (1 - a) * (1 - a / a_next))
    out = ddim_step(x0, eps, a, a_next, eta=1.0, noise=z)
    assert torch.allclose(out, torch.full_like(out, sigma))
    with pytest.raises(ConfigError, match="eta"):
        ddim_step(x0, eps, a, a_next, eta=-0.1)


def _conv(ci: int, co: int, k: int = 3) -> int:
    return ci * co * k * k + co


def _res(ci: int, co: int, td: int = 128) -> int:
    skip = _conv(ci, co, 1) if ci != co else 0
    return 2 * ci + _conv(ci, co) + td * co + co + 2 * co + _conv(co, co) + skip


def test_unet_default_parameter_count_by_hand() -> None:
    # Default: base 32, multipliers 1-2-2, 1 block down / 2 up per level, time MLP 32->128->128.
    expected = (
        (32 * 128 + 128) + (128 * 128 + 128)  # time MLP
        + _conv(3, 32)  # stem
        + _res(32, 32) + _conv(32, 32)  # level 0 + downsample
        + _res(32, 64) + _conv(64, 64)  # level 1 + downsample
        + _res(64, 64)  # level 2
        + 2 * _res(64, 64)  # middle
        + _res(128, 64) + _res(128, 64) + _conv(64, 64)  # up level 2 (skips 64, 64) + upsample
        + _res(128, 64) + _res(96, 64) + _conv(64, 64)  # up level 1 (skips 64, 32) + upsample
        + _res(96, 32) + _res(64, 32)  # up level 0 (skips 32, 32)
        + 2 * 32 + _conv(32, 3)  # output norm + conv
    )  # fmt: skip
    model = SmallUNet()
    assert sum(p.numel() for p in model.parameters()) == expected == 1_046_883
    assert model.min_tile == 4


def test_unet_shapes_and_time_conditioning() -> None:
    torch.manual_seed(0)
    model = SmallUNet(in_channels=3, base_channels=8, channel_mults=(1, 2), num_res_blocks=1)
    x = torch.randn(2, 3, 8, 12)
    out = model(x, torch.tensor([5, 900]))
    assert out.shape == x.shape
    assert torch.equal(model(x[:1], 5), model(x[:1], torch.tensor([5])))
    assert not torch.allclose(model(x[:1], 5), model(x[:1], 900))  # t actually conditions
    emb = timestep_embedding(torch.tensor([0, 7]), 9)
    assert emb.shape == (2, 9) and torch.equal(emb[0, :4], torch.ones(4))


def test_unet_bad_input() -> None:
    model = SmallUNet(in_channels=3, base_channels=8, channel_mults=(1, 2, 2), num_res_blocks=1)
    with pytest.raises(DataError, match="divisible by 4"):
        model(torch.zeros(1, 3, 10, 8), 0)
    with pytest.raises(DataError, match=r"expects \(B, 3, H, W\)"):
        model(torch.zeros(1, 4, 8, 8), 0)
    with pytest.raises(ConfigError):
        SmallUNet(in_channels=0)
