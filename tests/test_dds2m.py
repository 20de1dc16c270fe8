"""DDS2M (Miao et al., ICCV 2023): network sizes, restoration quality on tiny cubes, bad input."""

from __future__ import annotations

import pytest
import torch

from hsi.diffusion.dds2m import VS2M, SpatialSkipNet, SpectralFCN, dds2m_restore
from hsi.errors import ConfigError, DataError

torch.set_num_threads(1)

FAST = dict(
    rank=2,
    steps=30,
    iters_per_step=8,
    lr=2e-3,
    ema=0.0,
    progress=False,
    spatial_channels=(8, 16, 16),
)


def _low_rank_cube(bands: int = 8, size: int = 16) -> torch.Tensor:
    """A smooth rank-2 cube in [0, 1] (two spatial maps × two random spectra)."""
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    maps = torch.stack([0.5 + 0.4 * torch.sin(3 * xx + yy), 0.5 + 0.4 * torch.cos(2 * yy)])
    spectra = torch.rand(2, bands, generator=g) * 0.5 + 0.25
    cube = torch.einsum("rhw,rc->chw", maps, spectra)
    return (cube - cube.min()) / (cube.max() - cube.min())


def _dip_skip_params(channels, skip, kernels) -> int:
    """Parameters of the authors' DIP ``skip`` net (1 -> 1), counted layer by layer by hand."""
    total, c_in = 0, 1
    for i, (c, s, k) in enumerate(zip(channels, skip, kernels, strict=True)):
        c_deep = channels[i + 1] if i + 1 < len(channels) else c
        if s:
            total += c_in * s + s + 2 * s  # 1x1 conv + BN
        total += c_in * c * k * k + c + 2 * c + c * c * k * k + c + 2 * c  # two down convs + BN
        total += 2 * (s + c_deep)  # BN after concatenation
        total += (s + c_deep) * c * k * k + c + 2 * c + c * c + c + 2 * c  # up conv + 1x1 + BN
        c_in = c
    return total + channels[0] + 1  # 1x1 output conv


def _n(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_network_sizes_match_authors_defaults() -> None:
    full = SpatialSkipNet()  # (16, 32, 64, 128, 128, 128), skip (0, 0, 4, 4, 4, 4), k 7,7,5,5,3,3
    assert _n(full) == _dip_skip_params(
        (16, 32, 64, 128, 128, 128), (0, 0, 4, 4, 4, 4), (7, 7, 5, 5, 3, 3)
    )
    with torch.no_grad():  # six halvings: 128 -> 2 at the bottom level
        assert full(torch.rand(2, 1, 128, 128)).shape == (2, 1, 128, 128)
    bands = 31
    fcn = SpectralFCN(bands)  # fcn(C, C, [128, 256, 256, 128])
    expected = (
        (bands * 128 + 128)
        + (128 * 256 + 256)
        + (256 * 256 + 256)
        + (256 * 128 + 128)
        + (128 * bands + bands)
    )
    assert _n(fcn) == expected
    vs2m = VS2M(bands=8, height=16, width=12, rank=3, spatial_channels=(8, 16, 16))
    assert len(vs2m.spatial) == len(vs2m.spectral) == 3
    assert vs2m().shape == (8, 16, 12)


def test_denoise_shape_seed_and_quality() -> None:
    clean = _low_rank_cube()
    noisy = clean + 0.1 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(1))
    out = dds2m_restore(noisy, sigma=0.1, seed=3, **FAST)
    assert out.shape == clean.shape
    assert float(out.min()) >= 0 and float(out.max()) <= 1
    short = {**FAST, "steps": 8}
    first = dds2m_restore(noisy, sigma=0.1, seed=3, **short)
    assert torch.equal(first, dds2m_restore(noisy, sigma=0.1, seed=3, **short))
    assert not torch.equal(first, dds2m_restore(noisy, sigma=0.1, seed=4, **short))
    mse_noisy = float(((noisy - clean) ** 2).mean())
    mse_out = float(((out - clean) ** 2).mean())
    assert mse_out < 0.5 * mse_noisy, (mse_out, mse_noisy)


def test_inpaint_keeps_observed_and_fills_missing() -> None:
    clean = _low_rank_cube()
    keep = (torch.rand(1, 16, 16, generator=torch.Generator().manual_seed(2)) > 0.5).float()
    mask = keep.expand_as(clean)
    out = dds2m_restore(clean * mask, task="inpaint", mask=mask, sigma=0.0, seed=0, **FAST)
    miss = 1 - mask
    err_missing = float(((out - clean) ** 2 * miss).sum() / miss.sum())
    err_zeros = float((clean**2 * miss).sum() / miss.sum())
    err_observed = float(((out - clean) ** 2 * mask).sum() / mask.sum())
    assert err_missing < 0.1 * err_zeros, (err_missing, err_zeros)
    assert err_observed < 1e-3, err_observed


def test_sr_runs_and_keeps_block_means() -> None:
    clean = _low_rank_cube()
    low = torch.nn.functional.avg_pool2d(clean[None], 2)
    up = torch.nn.functional.interpolate(low, scale_factor=2, mode="nearest")[0]
    out = dds2m_restore(up, task="sr", scale=2, sigma=0.0, **{**FAST, "steps": 10})
    assert out.shape == clean.shape
    block_err = float(((torch.nn.functional.avg_pool2d(out[None], 2) - low) ** 2).mean())
    # DDRM's last step (sigma' = 0) returns VS2M's x0, so consistency is approximate:
    # an RMS deviation of the block means under 0.05 on [0, 1] data.
    assert block_err < 2.5e-3, block_err


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(steps=0), ConfigError, "steps"),
        (dict(rank=9), ConfigError, "rank 9 cannot exceed"),
        (dict(task="inpaint", mask=torch.ones(8, 8, 8)), DataError, "mask's shape"),
        (dict(task="inpaint"), ConfigError, "needs a mask"),
        (dict(task="sr", scale=3), ConfigError, "divide"),
        (dict(task="blur"), ConfigError, "unknown DDS2M task"),
    ],
)
def test_bad_config(kwargs: dict, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        dds2m_restore(torch.rand(8, 16, 16), progress=False, **{"rank": 2, **kwargs})


def test_bad_data() -> None:
    cube = torch.rand(8, 16, 16)
    cube[0, 0, 0] = float("nan")
    with pytest.raises(DataError, match="NaN"):
        dds2m_restore(cube, progress=False)
    with pytest.raises(DataError, match=r"scaled to \[0, 1\]"):
        dds2m_restore(torch.rand(8, 16, 16) * 4000, progress=False)
    with pytest.raises(DataError, match="bands, H, W"):
        dds2m_restore(torch.rand(16, 16), progress=False)
