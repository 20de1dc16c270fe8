"""ESSAformer (Zhang et al., ICCV 2023) against the authors' reference code
(github.com/Rexzhan/ESSAformer, ``ESSA.py``)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import hsi
from hsi.errors import ConfigError, DataError
from hsi.models.essaformer import ESSAformer, ESSAttention, scc


def _n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _expected_params(bands: int, scale: int, d: int) -> int:
    """The count derived layer by layer from the reference's ``ESSA`` class.

    - conv_first 3×3 bands→d and conv_last 3×3 d→bands, with bias
    - two blocks (the shared up- and down-block), each: LayerNorm 2d; ESSA ``qkv``
      d·3d + 3d and ``proj`` d² + d; convs 1×1 2d→2d (4d² + 2d), 3×3 2d→2d (36d² + 2d),
      1×1 2d→d (2d² + d)
    - per factor of two: up-sampler conv 3×3 d→4d (36d² + 4d), down-sampler conv 3×3
      d→d/4 (9d²/4 + d/4)
    """
    steps = int(math.log2(scale))
    convs = (9 * bands * d + d) + (9 * d * bands + bands)
    block = 2 * d + (3 * d * d + 3 * d) + (d * d + d) + (4 * d * d + 2 * d)
    block += (36 * d * d + 2 * d) + (2 * d * d + d)
    resample = steps * ((36 * d * d + 4 * d) + (9 * d * d // 4 + d // 4))
    return convs + 2 * block + resample


def test_parameter_counts_match_reference_code() -> None:
    # Reference figures from instantiating the authors' ESSA(inch=128, dim=256, upscale=s)
    # (Chikusei, 128 bands; their example and released checkpoint are ×4).
    assert _expected_params(128, 4, 256) == 11_640_832
    assert _expected_params(128, 2, 256) == 9_132_992
    assert _expected_params(128, 8, 256) == 14_148_672
    assert _n_params(hsi.create_model("essaformer", in_bands=128, scale=4)) == 11_640_832
    assert _n_params(ESSAformer(in_bands=31, scale=8, dim=32)) == _expected_params(31, 8, 32)


@pytest.mark.parametrize(("bands", "scale"), [(5, 2), (12, 4), (31, 4), (7, 8)])
def test_output_is_scaled_by_scale(bands: int, scale: int) -> None:
    torch.manual_seed(0)
    model = hsi.create_model("essaformer", in_bands=bands, scale=scale, dim=16).eval()
    with torch.no_grad():
        y = model(torch.rand(2, bands, 3, 5))
    assert y.shape == (2, bands, 3 * scale, 5 * scale)
    assert torch.isfinite(y).all()
    assert model.task == "super_resolution" and model.scale == scale


def test_scc_equals_numpy_correlation_coefficient() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4, 9))
    b = rng.normal(size=(6, 9)) + rng.uniform(-2, 2, size=(6, 1))  # offsets must not matter
    expected = np.corrcoef(a, b)[:4, 4:]
    got = scc(torch.from_numpy(a), torch.from_numpy(b), eps=0.0).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)
    # scale- and offset-invariant, bounded by 1, and 1 on itself
    again = scc(torch.from_numpy(3 * a + 1), torch.from_numpy(b), eps=0.0).numpy()
    np.testing.assert_allclose(again, expected, atol=1e-12)
    np.testing.assert_allclose(np.diag(scc(torch.from_numpy(a), torch.from_numpy(a)).numpy()), 1)


def test_essa_linear_form_equals_explicit_quadratic_form() -> None:
    """The module multiplies φ(q)(φ(k)ᵀv); here the N×N kernel matrix is built explicitly."""
    torch.manual_seed(0)
    dim, n = 6, 10
    attn = ESSAttention(dim).double()
    x = torch.randn(2, n, dim, dtype=torch.float64)
    with torch.no_grad():
        got = attn(x).numpy()
        w, b = attn.qkv.weight.numpy(), attn.qkv.bias.numpy()
        pw, pb = attn.proj.weight.numpy(), attn.proj.bias.numpy()
    qkv = x.numpy() @ w.T + b
    q, k, v = qkv[..., :dim], qkv[..., dim : 2 * dim], qkv[..., 2 * dim :]
    eps = 1e-7

    def share(t: np.ndarray) -> np.ndarray:  # per-channel share of each token's variance
        c = t - t.mean(-1, keepdims=True)
        return c**2 / ((c**2).sum(-1, keepdims=True) + eps)

    qs, ks = share(q), share(k)
    qs = qs / np.linalg.norm(qs, axis=-1, keepdims=True)  # over channels
    ks = ks / np.linalg.norm(ks, axis=-2, keepdims=True)  # over tokens
    for batch in range(2):
        kernel = np.array([[qs[batch, i] @ ks[batch, j] for j in range(n)] for i in range(n)])
        assert kernel.shape == (n, n)
        mixed = v[batch] + kernel @ v[batch] / math.sqrt(n)
        np.testing.assert_allclose(got[batch], mixed @ pw.T + pb, rtol=1e-10, atol=1e-12)


def test_refinement_shares_one_up_block_and_one_down_block() -> None:
    model = ESSAformer(in_bands=4, scale=2, dim=8).eval()
    calls = {"up": 0, "down": 0}
    model.up_block.register_forward_hook(lambda *_: calls.__setitem__("up", calls["up"] + 1))
    model.down_block.register_forward_hook(lambda *_: calls.__setitem__("down", calls["down"] + 1))
    with torch.no_grad():
        model(torch.rand(1, 4, 4, 4))
    assert calls == {"up": 3, "down": 2}


def test_bad_input_and_config_are_clear_errors() -> None:
    with pytest.raises(ConfigError, match=r"scale in \[2, 4, 8\]"):
        ESSAformer(in_bands=4, scale=3)
    with pytest.raises(ConfigError, match="multiple of 4"):
        ESSAformer(in_bands=4, dim=30)
    model = ESSAformer(in_bands=4, scale=2, dim=8).eval()
    with pytest.raises(DataError, match="built for 4 bands"):
        model(torch.rand(1, 5, 4, 4))
    with pytest.raises(DataError, match=r"\(batch, bands, height, width\)"):
        model(torch.rand(4, 4, 4))
    with pytest.raises(DataError, match="empty"):
        model(torch.rand(1, 4, 0, 4))


def test_one_training_step_reduces_l1_loss() -> None:
    torch.manual_seed(0)
    model = hsi.create_model("essaformer", in_bands=6, scale=2, dim=16).train()
    high = torch.rand(4, 6, 8, 8)
    low = torch.nn.functional.avg_pool2d(high, 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

    def loss() -> torch.Tensor:
        torch.manual_seed(1)  # the same dropout masks before and after the step
        return torch.nn.functional.l1_loss(model(low), high)

    before = loss()
    before.backward()
    optimizer.step()
    with torch.no_grad():
        after = loss()
    assert after.item() < before.item()
