"""Grey-scale morphology against scipy.ndimage, and the learnable (conv) variant's shapes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from hsi.errors import ConfigError, DataError
from hsi.nn import Morphology, grey_dilation, grey_erosion


def _footprint(size: int, shape: str) -> np.ndarray:
    if shape == "square":
        return np.ones((size, size), dtype=bool)
    footprint = np.zeros((size, size), dtype=bool)
    footprint[size // 2, :] = True
    footprint[:, size // 2] = True
    return footprint


@pytest.mark.parametrize("shape", ["square", "cross"])
@pytest.mark.parametrize("size", [1, 3, 5, 7])
def test_grey_operators_equal_scipy(size: int, shape: str) -> None:
    rng = np.random.default_rng(size)
    # non-square maps smaller than some kernels exercise the clipped border on every side
    x = rng.standard_normal((2, 3, 6, 9))
    footprint = _footprint(size, shape)
    expected_erosion = np.stack(
        [
            [ndimage.grey_erosion(ch, footprint=footprint, mode="nearest") for ch in item]
            for item in x
        ]
    )
    expected_dilation = np.stack(
        [
            [ndimage.grey_dilation(ch, footprint=footprint, mode="nearest") for ch in item]
            for item in x
        ]
    )
    t = torch.from_numpy(x)
    np.testing.assert_array_equal(grey_erosion(t, size, shape).numpy(), expected_erosion)
    np.testing.assert_array_equal(grey_dilation(t, size, shape).numpy(), expected_dilation)


@pytest.mark.parametrize("shape", ["square", "cross"])
def test_duality_and_ordering(shape: str) -> None:
    x = torch.randn(2, 4, 7, 7)
    eroded, dilated = grey_erosion(x, 3, shape), grey_dilation(x, 3, shape)
    assert torch.equal(eroded, -grey_dilation(-x, 3, shape))
    # the element contains its centre, so erosion <= x <= dilation everywhere
    assert bool((eroded <= x).all()) and bool((x <= dilated).all())
    assert bool((eroded < x).any()) and bool((x < dilated).any())


def test_grey_module_has_no_parameters_and_matches_functions() -> None:
    module = Morphology(4, kernel_size=3, mode="grey", shape="cross")
    assert sum(p.numel() for p in module.parameters()) == 0
    x = torch.randn(2, 4, 5, 5)
    eroded, dilated = module(x)
    assert torch.equal(eroded, grey_erosion(x, 3, "cross"))
    assert torch.equal(dilated, grey_dilation(x, 3, "cross"))


def test_conv_mode_shapes_parameters_and_initialisation() -> None:
    module = Morphology(6, kernel_size=5, mode="conv")
    # two depthwise 5x5 kernels per channel, no bias
    assert sum(p.numel() for p in module.parameters()) == 2 * 6 * 5 * 5
    x = torch.randn(3, 6, 4, 4, requires_grad=True)
    eroded, dilated = module(x)
    assert eroded.shape == dilated.shape == x.shape
    # ones-initialised ("same", zero-padded) box sums: the erosion is the dilation negated
    box = torch.nn.functional.conv2d(x, torch.ones(6, 1, 5, 5), padding=2, groups=6)
    torch.testing.assert_close(dilated, box)
    torch.testing.assert_close(eroded, -box)
    (eroded.square().sum() + dilated.sum()).backward()
    assert module.erode_conv is not None and module.erode_conv.weight.grad is not None
    assert x.grad is not None and bool(x.grad.abs().sum() > 0)


def test_bad_arguments_are_clear_errors() -> None:
    with pytest.raises(ConfigError, match="odd"):
        Morphology(3, kernel_size=4)
    with pytest.raises(ConfigError, match="'conv' or 'grey'"):
        Morphology(3, mode="open")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="cross"):
        Morphology(3, mode="conv", shape="cross")
    with pytest.raises(DataError, match="built for 3 channels"):
        Morphology(3, mode="grey")(torch.zeros(1, 4, 5, 5))
    with pytest.raises(DataError, match=r"\(N, C, H, W\)"):
        grey_dilation(torch.zeros(5, 5))
    with pytest.raises(DataError, match="floating-point"):
        grey_erosion(torch.zeros(1, 1, 5, 5, dtype=torch.int64))
