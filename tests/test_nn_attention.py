"""Window attention: partitioning, the Swin relative-position table, SDPA vs the formula."""

from __future__ import annotations

import pytest
import torch

from hsi.errors import ConfigError
from hsi.nn.attention import (
    RelativePositionBias,
    WindowAttention,
    attention_reference,
    pad_to_windows,
    window_partition,
    window_reverse,
)


def _module(dim: int = 16, heads: int = 2, window: int = 4, pad: bool = False) -> WindowAttention:
    torch.manual_seed(0)
    module = WindowAttention(dim, heads, window=window, pad=pad).eval()
    with torch.no_grad():  # a bias large enough to matter in the comparison
        module.relative_position.table.normal_()
    return module


def test_partition_round_trips_and_orders_windows_row_major() -> None:
    x = torch.arange(2 * 4 * 6 * 3, dtype=torch.float32).reshape(2, 4, 6, 3)
    windows = window_partition(x, 2)
    assert windows.shape == (2 * 2 * 3, 4, 3)
    # second window of the first image: rows 0-1, columns 2-3
    torch.testing.assert_close(windows[1], x[0, 0:2, 2:4].reshape(4, 3))
    torch.testing.assert_close(window_reverse(windows, 2, 4, 6), x)


def test_relative_position_table_has_swin_shape_and_index() -> None:
    rpb = RelativePositionBias(window=3, num_heads=5)
    assert rpb.table.shape == ((2 * 3 - 1) ** 2, 5)
    index = rpb.index
    centre = (3 - 1) * (2 * 3 - 1) + (3 - 1)  # offset (0, 0)
    assert (index.diagonal() == centre).all()
    assert (index + index.T == 2 * centre).all()  # offset (a, b) mirrors (−a, −b)
    assert index.max() < rpb.table.shape[0] and index.min() >= 0
    assert rpb().shape == (5, 9, 9)
    assert "index" not in rpb.state_dict()


def test_parameter_count_matches_swin_formula() -> None:
    dim, heads, w = 96, 3, 7  # Swin-T stage 1
    module = WindowAttention(dim, heads, window=w)
    expected = (dim * 3 * dim + 3 * dim) + (dim * dim + dim) + (2 * w - 1) ** 2 * heads
    assert sum(p.numel() for p in module.parameters()) == expected == 37_755


def test_reference_is_the_written_out_formula() -> None:
    q, k, v = torch.randn(3, 2, 4, 8).unbind(0)
    bias = torch.randn(4, 4)
    weights = torch.softmax(q @ k.transpose(-1, -2) / 8**0.5 + bias, dim=-1)
    torch.testing.assert_close(attention_reference(q, k, v, bias), weights @ v)


@pytest.mark.parametrize("shape,pad", [((2, 8, 12), False), ((2, 5, 7), True), ((1, 3, 9), True)])
def test_sdpa_path_equals_reference(shape, pad) -> None:
    module = _module(window=4, pad=pad)
    x = torch.randn(*shape, 16)
    out = module(x)
    assert out.shape == x.shape
    assert (out - module(x, reference=True)).abs().max() <= 1e-5


def test_padded_tokens_are_masked_out() -> None:
    """A window holding one real token: that token can only attend to itself."""
    module = _module(window=4, pad=True)
    x = torch.randn(2, 5, 5, 16)  # padded to 8×8: the bottom-right window has one real token
    out = module(x)
    v = module.qkv(x[:, 4, 4])[:, 32:]  # the token's own value vector
    torch.testing.assert_close(out[:, 4, 4], module.proj(v))


def test_gradients_reach_the_position_table() -> None:
    module = _module(window=2)
    module(torch.randn(1, 4, 4, 16)).sum().backward()
    assert module.relative_position.table.grad.abs().sum() > 0


def test_pad_mask_marks_real_tokens() -> None:
    padded, real = pad_to_windows(torch.ones(1, 5, 3, 2), 4)
    assert padded.shape == (1, 8, 4, 2) and real.shape == (8, 4)
    assert real.sum() == 15 and padded.sum() == 30


def test_window_errors_name_the_fix() -> None:
    with pytest.raises(
        ConfigError, match=r"window 7×7 is larger than the 5×6 token grid.*pad=True"
    ):
        WindowAttention(16, 2, window=7)(torch.randn(1, 5, 6, 16))
    with pytest.raises(ConfigError, match=r"6×6 token grid does not split into 4×4 windows"):
        WindowAttention(16, 2, window=4)(torch.randn(1, 6, 6, 16))
    with pytest.raises(ConfigError, match="not divisible by 3 heads"):
        WindowAttention(16, 3)
    with pytest.raises(ConfigError, match=r"expects \(B, H, W, 16\)"):
        WindowAttention(16, 2, window=2)(torch.randn(1, 4, 4, 8))
