"""HybridSN against the paper's Table I (Roy et al., IEEE GRSL 2020)."""

from __future__ import annotations

import pytest
import torch

import hsi
from hsi.errors import ConfigError


def test_parameter_count_matches_paper_table_1() -> None:
    model = hsi.create_model("hybridsn", in_bands=30, num_classes=16, patch_size=25)
    assert sum(p.numel() for p in model.parameters()) == 5_122_176


def test_layer_shapes_match_paper_table_1() -> None:
    model = hsi.create_model("hybridsn", in_bands=30, num_classes=16, patch_size=25)
    x = torch.zeros(2, 1, 30, 25, 25)
    shapes = []
    for layer in model.conv3d:
        x = layer(x)
        if isinstance(layer, torch.nn.Conv3d):
            shapes.append(tuple(x.shape[1:]))
    # Table I lists (h, w, spectral, channels); ours is (channels, spectral, h, w)
    assert shapes == [(8, 24, 23, 23), (16, 20, 21, 21), (32, 18, 19, 19)]
    y = model.conv2d(x.flatten(1, 2))
    assert tuple(y.shape[1:]) == (64, 17, 17)
    assert model(torch.zeros(2, 30, 25, 25)).shape == (2, 16)


def test_salinas_setting_builds() -> None:
    model = hsi.create_model("hybridsn", in_bands=15, num_classes=16, patch_size=25)
    assert model(torch.zeros(1, 15, 25, 25)).shape == (1, 16)


def test_registry_errors_are_clear() -> None:
    assert "hybridsn" in hsi.list_models()
    with pytest.raises(ConfigError, match="hybridsn"):
        hsi.create_model("hybridsnn")
    with pytest.raises(ConfigError, match="in_band"):
        hsi.create_model("hybridsn", in_band=30)
    with pytest.raises(ConfigError, match="at least 13"):
        hsi.create_model("hybridsn", in_bands=8)


def test_wrong_input_shape_is_a_clear_error() -> None:
    model = hsi.create_model("hybridsn", in_bands=30, num_classes=16, patch_size=25)
    with pytest.raises(ConfigError, match=r"\(N, 30, 25, 25\)"):
        model(torch.zeros(1, 20, 25, 25))
