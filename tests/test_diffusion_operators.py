"""The degradation operators shared by HIR-Diff and DDS2M: H, its pseudo-inverse, projection."""

from __future__ import annotations

import pytest
import torch

from hsi.diffusion.operators import DegradationOperator
from hsi.errors import ConfigError


def _ops() -> list[DegradationOperator]:
    mask = (torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(0)) > 0.4).float()
    return [
        DegradationOperator("denoise"),
        DegradationOperator("inpaint", mask=mask),
        DegradationOperator("sr", scale=2),
    ]


@pytest.mark.parametrize("op", _ops(), ids=lambda o: o.task)
def test_projection_and_pseudo_inverse_identities(op: DegradationOperator) -> None:
    x = torch.randn(3, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    if op.mask is not None:
        op.mask = op.mask.double()
    p = op.project(x)
    assert torch.allclose(op.project(p), p)  # a projection
    assert torch.allclose(op(p), op(x))  # it keeps what H sees
    y = op(x)
    assert torch.allclose(op(op.pinv(y)), y)  # H H+ y = y
    # The singular value: ||H v|| = sv ||v|| for v in the row space.
    assert float(op(p).norm()) == pytest.approx(op.singular * float(p.norm()), rel=1e-10)


def test_sr_shapes_and_block_means() -> None:
    op = DegradationOperator("sr", scale=4)
    x = torch.arange(2 * 8 * 8, dtype=torch.float64).reshape(2, 8, 8)
    y = op(x)
    assert y.shape == (2, 2, 2)
    assert y[0, 0, 0] == pytest.approx(float(x[0, :4, :4].mean()))
    assert op.pinv(y).shape == x.shape


def test_operator_arguments_are_checked() -> None:
    with pytest.raises(ConfigError, match="unknown restoration task"):
        DegradationOperator("deblur")
    with pytest.raises(ConfigError, match="mask"):
        DegradationOperator("inpaint")
    with pytest.raises(ConfigError, match="scale"):
        DegradationOperator("denoise", scale=2)
