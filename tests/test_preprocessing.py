"""Preprocessing is fitted on the pixels it is given and round-trips through a checkpoint."""

from __future__ import annotations

import numpy as np
import pytest

from hsi.data.preprocessing import Preprocessor
from hsi.errors import ConfigError, DataError
from hsi.metrics import classification_metrics


def test_pca_whitened_components_on_training_pixels() -> None:
    rng = np.random.default_rng(0)
    pixels = rng.standard_normal((500, 12)) @ rng.standard_normal((12, 12))
    pre = Preprocessor(pca_components=5, whiten=True).fit(pixels)
    out = pre.transform_pixels(pixels)
    assert out.shape == (500, 5)
    assert np.allclose(out.mean(0), 0, atol=1e-5)
    assert np.allclose(np.cov(out.T), np.eye(5), atol=1e-3)
    # restored from its state dict, it transforms identically
    again = Preprocessor.from_state_dict(pre.state_dict())
    assert np.array_equal(again.transform_pixels(pixels), out)


def test_cube_transform_zeroes_nodata_and_checks_bands() -> None:
    rng = np.random.default_rng(1)
    cube = rng.uniform(size=(6, 4, 5))
    valid = np.ones((4, 5), dtype=bool)
    valid[0, 0] = False
    pre = Preprocessor(pca_components=3).fit(cube.reshape(6, -1).T)
    out = pre.transform_cube(cube, valid)
    assert out.shape == (3, 4, 5) and np.all(out[:, 0, 0] == 0)
    with pytest.raises(DataError, match="6"):
        pre.transform_cube(cube[:5])


def test_bad_fits() -> None:
    with pytest.raises(ConfigError, match="pca_components"):
        Preprocessor(pca_components=10).fit(np.ones((5, 4)))
    with pytest.raises(DataError, match="NaN"):
        Preprocessor().fit(np.array([[1.0, np.nan], [2.0, 3.0]]))


def test_classification_metrics_by_hand() -> None:
    cm = np.array([[8, 2, 0], [1, 9, 0], [0, 0, 0]])
    m = classification_metrics(cm)
    assert m["OA"] == pytest.approx(85.0)
    assert m["AA"] == pytest.approx((80 + 90) / 2)
    pe = (10 * 9 + 10 * 11) / 400
    assert m["kappa"] == pytest.approx(100 * (0.85 - pe) / (1 - pe))
    assert m["per_class"][2] is None and m["classes_absent_from_reference"] == [2]
