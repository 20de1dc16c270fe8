"""MorpMamba against the authors' notebook (Ahmad et al., Neurocomputing 2025)."""

from __future__ import annotations

import pytest
import torch

import hsi
from hsi.errors import ConfigError, DataError
from hsi.models.morpmamba import MorpMamba


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_parameter_count_against_the_authors_notebook() -> None:
    # the notebook's UH run: 15 PCA bands, 4x4 patch, 15 classes, out_channels 64, 4 heads
    model = hsi.create_model("morpmamba", in_bands=15, num_classes=15, patch_size=4)
    assert isinstance(model, MorpMamba)
    # the parts we share with the notebook equal its Keras model.summary() line by line
    token_generation = (
        _count(model.spatial_morphology)
        + _count(model.spectral_morphology)
        + _count(model.pointwise)
    )
    assert token_generation == 2934
    assert _count(model.spatial_gate) + _count(model.spectral_gate) == 8320
    assert _count(model.attention) == 12480
    assert _count(model.head[-1]) == 1935
    # where we differ: a Mamba block (Gu & Dao defaults, d_model 64: 32,640) with its two
    # LayerNorms (256) replaces the notebook's linear recurrence (24,832), and the 128-wide
    # hidden layer reads a 64-wide token (8,320) instead of a 128-wide state (16,512)
    assert _count(model.layers[0].mixer) == 32640
    assert _count(model.layers[0].norm) + _count(model.norm) == 256
    assert _count(model.head[0]) == 8320
    assert _count(model) == 67013 - 24832 - 16512 + 32640 + 256 + 8320 == 66885


def test_indian_pines_setting_count_and_grey_mode_drops_the_kernels() -> None:
    conv = hsi.create_model("morpmamba", in_bands=15, num_classes=16, patch_size=5)
    # 66,885 above with a 5-wide patch (+2*25 spectral taps) and 16 classes (+129)
    assert _count(conv) == 66885 + 2 * 25 + 129
    grey = hsi.create_model(
        "morpmamba", in_bands=15, num_classes=16, patch_size=5, morphology="grey"
    )
    assert _count(conv) - _count(grey) == 2 * (15 + 5) * 5 * 5


@pytest.mark.parametrize(("morphology", "directions"), [("conv", "uni"), ("grey", "bi")])
def test_forward_shapes(morphology: str, directions: str) -> None:
    model = MorpMamba(
        in_bands=6,
        num_classes=4,
        patch_size=5,
        embed_dim=16,
        kernel_size=3,
        morphology=morphology,  # type: ignore[arg-type]
        directions=directions,  # type: ignore[arg-type]
        depth=2,
    )
    x = torch.randn(3, 6, 5, 5)
    spatial, spectral = model.tokens(x)
    assert spatial.shape == spectral.shape == (3, 5, 5, 16)
    assert model(x).shape == (3, 4)


def _small(**kw) -> MorpMamba:
    torch.manual_seed(0)
    # a 7x7 patch gives 49 tokens: more than one 32-step chunk of the chunked scan
    return MorpMamba(in_bands=6, num_classes=3, patch_size=7, embed_dim=16, kernel_size=3, **kw)


def test_gradients_reach_the_selective_scan() -> None:
    model = _small(scan_backend="chunked")
    model(torch.randn(4, 6, 7, 7)).logsumexp(-1).sum().backward()
    mamba = model.layers[0].mixer.forward_scan
    # A, D, the input-dependent B/C/delta projection and delta's bias live only in the scan
    for param in (mamba.A_log, mamba.D, mamba.x_proj.weight, mamba.dt_proj.bias):
        assert param.grad is not None and bool(param.grad.abs().sum() > 0)
    for param in (model.spatial_morphology.erode_conv.weight, model.pointwise.weight):
        assert param.grad is not None and bool(param.grad.abs().sum() > 0)


@pytest.mark.parametrize("directions", ["uni", "bi"])
def test_reference_and_chunked_scans_give_the_same_logits(directions: str) -> None:
    model = _small(directions=directions).eval()
    x = torch.randn(4, 6, 7, 7)
    with torch.no_grad():
        model.set_scan_backend("reference")
        reference = model(x)
        model.set_scan_backend("chunked")
        chunked = model(x)
    torch.testing.assert_close(chunked, reference, atol=1e-4, rtol=1e-4)


def test_one_training_step_reduces_the_loss() -> None:
    model = _small(scan_backend="chunked")
    generator = torch.Generator().manual_seed(1)
    y = torch.arange(12) % 3
    # a learnable toy batch: each class shifts the whole patch by its index
    x = torch.randn(12, 6, 7, 7, generator=generator) + y.view(-1, 1, 1, 1).float()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def loss() -> torch.Tensor:
        return torch.nn.functional.cross_entropy(model(x), y)

    model.eval()  # compare without dropout noise
    with torch.no_grad():
        before = loss()
    model.train()
    optimizer.zero_grad()
    loss().backward()
    optimizer.step()
    model.eval()
    with torch.no_grad():
        after = loss()
    assert after < before


def test_bad_configuration_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="at least 3x3"):
        MorpMamba(in_bands=6, num_classes=3, patch_size=2)
    with pytest.raises(ConfigError, match="too large"):
        MorpMamba(in_bands=6, num_classes=3, patch_size=3, kernel_size=7)
    with pytest.raises(ConfigError, match="multiple of num_heads"):
        MorpMamba(in_bands=6, num_classes=3, patch_size=5, kernel_size=3, embed_dim=10)
    with pytest.raises(ConfigError, match="odd"):
        MorpMamba(in_bands=6, num_classes=3, patch_size=5, kernel_size=4)
    with pytest.raises(ConfigError, match="scan_backend"):
        MorpMamba(in_bands=6, num_classes=3, patch_size=5, kernel_size=3, scan_backend="cuda")
    with pytest.raises(ConfigError, match="cross"):
        MorpMamba(in_bands=6, num_classes=3, patch_size=5, structuring_element="cross")
    with pytest.raises(ConfigError, match="in_band"):
        hsi.create_model("morpmamba", in_band=15)


def test_wrong_input_is_a_data_error() -> None:
    model = MorpMamba(in_bands=6, num_classes=3, patch_size=5, embed_dim=16, kernel_size=3)
    with pytest.raises(DataError, match=r"\(N, 6, 5, 5\).*PCA"):
        model(torch.zeros(2, 7, 5, 5))
    with pytest.raises(DataError, match=r"\(N, 6, 5, 5\)"):
        model(torch.zeros(6, 5, 5))
