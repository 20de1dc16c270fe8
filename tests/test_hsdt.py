"""HSDT (Lai et al., ICCV 2023) against the reference code, github.com/Zeqiang-Lai/HSDT."""

from __future__ import annotations

import pytest
import torch

import hsi
from hsi.errors import ConfigError, DataError
from hsi.models.hsdt import GSSA, HSDT, S3Conv


def _n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _expected_params(bands: int, ch: int, half: int, down: tuple[int, ...]) -> int:
    """The count derived layer by layer from the reference's ``HSDT`` class.

    - transformer block at C channels, K = bands queries: GSSA ``attn_proj`` C·K + K,
      ``value_proj`` and ``fc`` C² each (no bias); SM-FFN ``w1`` C·2C + 2C, ``w2`` 2C·C + C,
      ``w3`` C·2C + 2C → 8C² + 5C + CK + K
    - BatchNorm3d: 2C
    - plain layer (S3Conv i→o, no bias): spatial 9io + 9o², spectral 3io
    - down/up layer: Conv3d 3×3×3 i→o, no bias: 27io
    - tail Conv3d o=16→1 with bias: 27·ch + 1
    """

    def block(c: int) -> int:
        return 8 * c * c + 5 * c + c * bands + bands

    def plain(i: int, o: int) -> int:
        return 12 * i * o + 9 * o * o + 2 * o + block(o)

    def resample(i: int, o: int) -> int:
        return 27 * i * o + 2 * o + block(o)

    total = plain(1, ch) + 27 * ch + 1
    c = ch
    for i in range(half):  # encoder
        total += resample(c, 2 * c) if i in down else plain(c, c)
        c = 2 * c if i in down else c
    for i in reversed(range(half)):  # decoder
        total += resample(c, c // 2) if i in down else plain(c, c)
        c = c // 2 if i in down else c
    return total


def test_parameter_counts_match_reference_code() -> None:
    # The reference figures were obtained by instantiating the authors' classes:
    # hsdt() = HSDT(1, 16, 5, [1, 3]) → 521,158 (paper: HSDT-M 0.52 M);
    # hsdt_8 → 134,350 (HSDT-S 0.13 M); hsdt_deep = HSDT(1, 16, 7, [1, 3, 5]) → 2,094,786
    # (HSDT-L 2.09 M). All with 31 bands (ICVL), i.e. 31 learnable queries per GSSA.
    assert _expected_params(31, 16, 5, (1, 3)) == 521_158
    assert _expected_params(31, 8, 5, (1, 3)) == 134_350
    assert _expected_params(31, 16, 7, (1, 3, 5)) == 2_094_786
    assert _n_params(hsi.create_model("hsdt", in_bands=31)) == 521_158
    assert _n_params(hsi.create_model("hsdt_s", in_bands=31)) == 134_350
    assert _n_params(hsi.create_model("hsdt_l", in_bands=31)) == 2_094_786
    # only the queries depend on the band count
    assert _n_params(HSDT(in_bands=200)) == _expected_params(200, 16, 5, (1, 3))


@pytest.mark.parametrize("bands", [1, 7, 31, 40])
def test_denoiser_keeps_shape_for_any_band_count(bands: int) -> None:
    torch.manual_seed(0)
    model = hsi.create_model("hsdt", in_bands=bands).eval()
    x = torch.rand(2, bands, 8, 12)
    with torch.no_grad():
        y = model(x)
    assert y.shape == x.shape
    assert torch.isfinite(y).all()
    assert model.task == "denoising" and model.min_tile == 4


def test_large_variant_needs_multiples_of_eight() -> None:
    model = hsi.create_model("hsdt_l", in_bands=5).eval()
    assert model.min_tile == 8
    with torch.no_grad():
        assert model(torch.rand(1, 5, 8, 16)).shape == (1, 5, 8, 16)
    with pytest.raises(DataError, match="multiples of 8"):
        model(torch.rand(1, 5, 12, 12))


def test_s3conv_is_a_spatial_plus_a_spectral_branch() -> None:
    conv = S3Conv(2, 4)
    x = torch.rand(1, 2, 9, 6, 6)
    assert conv(x).shape == (1, 4, 9, 6, 6)
    # the spectral branch alone reaches only 3 bands: an impulse in band 4 spreads to 3..5
    with torch.no_grad():
        impulse = torch.zeros(1, 2, 9, 6, 6)
        impulse[:, :, 4, 3, 3] = 1.0
        touched = conv.spectral(impulse).abs().sum(dim=(0, 1, 3, 4)) > 0
    assert touched.nonzero().flatten().tolist() == [3, 4, 5]


def _capture_maps(model: torch.nn.Module) -> tuple[list[torch.Size], list]:
    shapes: list[torch.Size] = []
    handles = [
        m.register_forward_hook(lambda _m, _i, out: shapes.append(out[1].shape))
        for m in model.modules()
        if isinstance(m, GSSA)
    ]
    return shapes, handles


def test_gssa_builds_one_band_map_per_image_not_per_pixel() -> None:
    """The attention map is (bands × queries) per image, whatever the spatial size.

    Per-pixel spectral attention (the paper's ablation) would hold H·W maps of D×D; GSSA's
    map comes from spatially pooled features, so its size must not change with H, W.
    """
    bands = 6
    model = HSDT(in_bands=bands).eval()
    n_gssa = sum(isinstance(m, GSSA) for m in model.modules())
    assert n_gssa == 11  # head + 5 encoder + 5 decoder layers
    for size in (8, 16):
        shapes, handles = _capture_maps(model)
        with torch.no_grad():
            model(torch.rand(2, bands, size, size))
        for h in handles:
            h.remove()
        assert shapes == [torch.Size([2, bands, bands])] * n_gssa


def test_gssa_guided_and_self_attention_paths_match_their_formulas() -> None:
    torch.manual_seed(0)
    gssa = GSSA(channels=4, num_queries=5).eval()
    x = torch.randn(2, 4, 5, 3, 3)
    pooled = x.mean(dim=(3, 4)).transpose(1, 2)  # (B, D, C)
    with torch.no_grad():
        out, attn = gssa(x)
        guided = torch.softmax(pooled @ gssa.attn_proj.weight.T + gssa.attn_proj.bias, -1)
        torch.testing.assert_close(attn, guided)
        # output: every pixel's band vectors mixed by the one map, then fc, plus residual
        values = torch.einsum("bcdhw,ec->bdhwe", x, gssa.value_proj.weight)
        mixed = torch.einsum("bde,behwc->bdhwc", guided, values)
        expected = torch.einsum("bdhwc,ec->bedhw", mixed, gssa.fc.weight) + x
        torch.testing.assert_close(out, expected)

        gssa.flex = True  # evaluation with self-attention, and any band count
        _, attn = gssa(x)
        torch.testing.assert_close(attn, torch.softmax(pooled @ pooled.transpose(1, 2), -1))
        _, attn = gssa(torch.randn(1, 4, 9, 3, 3))
        assert attn.shape == (1, 9, 9)

    gssa.train()  # training draws the path at random, as the reference does
    gssa.self_attention_prob = 1.0
    torch.testing.assert_close(gssa(x)[1], torch.softmax(pooled @ pooled.transpose(1, 2), -1))
    gssa.self_attention_prob = 0.0
    torch.testing.assert_close(gssa(x)[1], guided)


def test_flex_model_runs_on_other_band_counts() -> None:
    strict = HSDT(in_bands=8).eval()
    with pytest.raises(DataError, match="built for 8 bands"):
        strict(torch.rand(1, 12, 8, 8))
    flexible = HSDT(in_bands=8, flex=True).eval()
    with torch.no_grad():
        assert flexible(torch.rand(1, 12, 8, 8)).shape == (1, 12, 8, 8)


def test_bad_input_and_config_are_clear_errors() -> None:
    model = HSDT(in_bands=4).eval()
    with pytest.raises(DataError, match=r"\(batch, bands, height, width\)"):
        model(torch.rand(4, 8, 8))
    with pytest.raises(DataError, match="multiples of 4"):
        model(torch.rand(1, 4, 10, 8))
    with pytest.raises(DataError, match="multiples of 4"):
        model(torch.rand(1, 4, 0, 8))
    with pytest.raises(ConfigError, match="downsample_at"):
        HSDT(in_bands=4, downsample_at=(5,))
    with pytest.raises(ConfigError, match="in_bands"):
        HSDT(in_bands=0)
    with pytest.raises(ConfigError, match="does not take"):
        hsi.create_model("hsdt", in_bands=4, scale=2)


def test_one_training_step_reduces_l1_loss() -> None:
    torch.manual_seed(0)
    model = hsi.create_model("hsdt", in_bands=6).train()
    clean = torch.rand(4, 6, 8, 8)
    noisy = (clean + 0.1 * torch.randn_like(clean)).clamp(0, 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

    def loss() -> torch.Tensor:
        torch.manual_seed(1)  # the same random GSSA paths before and after the step
        return torch.nn.functional.l1_loss(model(noisy), clean)

    before = loss()
    before.backward()
    optimizer.step()
    with torch.no_grad():
        after = loss()
    assert after.item() < before.item()
