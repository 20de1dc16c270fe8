"""The Mamba block against the reference layer sizes and initialisation; 2-D scans."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from hsi.errors import ConfigError
from hsi.nn.mamba import Mamba, Mamba2DScan


def test_parameter_count_matches_reference_block_for_d_model_64() -> None:
    d_model, d_state, d_conv, expand = 64, 16, 4, 2
    d_inner, dt_rank = expand * d_model, math.ceil(d_model / 16)
    expected = (
        d_model * 2 * d_inner  # in_proj, no bias
        + (d_inner * d_conv + d_inner)  # depthwise conv1d with bias
        + d_inner * (dt_rank + 2 * d_state)  # x_proj, no bias
        + (dt_rank * d_inner + d_inner)  # dt_proj with bias
        + d_inner * d_state  # A_log
        + d_inner  # D
        + d_inner * d_model  # out_proj, no bias
    )
    model = Mamba(d_model)
    assert sum(p.numel() for p in model.parameters()) == expected == 32_640


def test_initialisation_follows_the_paper() -> None:
    torch.manual_seed(0)
    model = Mamba(32, d_state=8)
    dt = F.softplus(model.dt_proj.bias)
    assert dt.min() >= 1e-3 * (1 - 1e-5) and dt.max() <= 0.1 * (1 + 1e-5)
    A = -torch.exp(model.A_log)
    torch.testing.assert_close(A, -torch.arange(1.0, 9.0).expand(64, 8))
    assert (model.D == 1).all() and model.A_log._no_weight_decay


def test_shapes_and_gradients() -> None:
    torch.manual_seed(0)
    model = Mamba(16, d_state=4)
    x = torch.randn(2, 11, 16, requires_grad=True)
    y = model(x)
    assert y.shape == (2, 11, 16)
    y.sum().backward()
    assert x.grad is not None and all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("backend", ["reference", "chunked"])
def test_block_is_causal(backend: str) -> None:
    """Changing token t leaves every output before t unchanged.

    Exactly for the step loop; the chunked form may regroup a chunk's float sums when a
    later token moves the chunk's range bound, so it is held to 1e-6.
    """
    torch.manual_seed(0)
    model = Mamba(16, d_state=4, backend=backend, chunk_size=8).eval()
    x = torch.randn(1, 20, 16)
    t = 11
    changed = x.clone()
    changed[:, t] += 1.0
    y, y2 = model(x), model(changed)
    before = (y[:, :t] - y2[:, :t]).abs().max()
    assert before == 0 if backend == "reference" else before <= 1e-6
    assert (y[:, t] - y2[:, t]).abs().max() > 1e-4


def test_backends_agree_inside_the_block() -> None:
    torch.manual_seed(0)
    model = Mamba(16, d_state=4, chunk_size=8)
    x = torch.randn(2, 21, 16)
    model.backend = "reference"
    ref = model(x)
    model.backend = "chunked"
    assert (model(x) - ref).abs().max() <= 1e-5


def test_2d_uni_scan_is_row_major_causal() -> None:
    torch.manual_seed(0)
    scan = Mamba2DScan(8, directions="uni", d_state=4).eval()
    x = torch.randn(1, 3, 4, 8)
    changed = x.clone()
    changed[:, 1, 2] += 1.0  # row-major position 6
    y, y2 = scan(x).flatten(1, 2), scan(changed).flatten(1, 2)
    assert y.shape == (1, 12, 8)
    assert torch.equal(y[:, :6], y2[:, :6])
    assert (y[:, 6:] - y2[:, 6:]).abs().max() > 1e-4


def test_2d_bi_scan_sees_the_whole_grid_and_averages() -> None:
    torch.manual_seed(0)
    scan = Mamba2DScan(8, directions="bi", d_state=4).eval()
    x = torch.randn(2, 3, 4, 8)
    y = scan(x)
    assert y.shape == x.shape
    changed = x.clone()
    changed[:, -1, -1] += 1.0  # the last token reaches the first through the reverse scan
    assert (scan(changed)[:, 0, 0] - y[:, 0, 0]).abs().max() > 1e-5
    tokens = x.flatten(1, 2)
    fwd = scan.forward_scan(tokens)
    bwd = scan.backward_scan(tokens.flip(1)).flip(1)
    torch.testing.assert_close(y.flatten(1, 2), (fwd + bwd) / 2)


def test_errors_name_the_fix() -> None:
    with pytest.raises(ConfigError, match="directions must be 'uni' or 'bi'"):
        Mamba2DScan(8, directions="quad")
    with pytest.raises(ConfigError, match=r"expects \(batch, length, 8\)"):
        Mamba(8)(torch.randn(1, 4, 6))
    with pytest.raises(ConfigError, match=r"expects \(B, H, W, 8\)"):
        Mamba2DScan(8)(torch.randn(1, 4, 8))
