"""Splits: stratification, spatial disjointness with the leak buffer, saving/reloading."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_scene
from scipy import ndimage

from hsi.data.protocols import Split, disjoint_split, make_split, random_split
from hsi.errors import ConfigError, DataError


def _labels() -> np.ndarray:
    return make_scene(height=80, width=72, classes=4)[1].astype(np.int64)


def test_random_split_is_stratified_and_seeded() -> None:
    labels = _labels()
    split = random_split(labels, train=0.3, val=0.1, seed=3)
    counts = split.counts(labels, 4)
    totals = np.bincount(labels.ravel(), minlength=5)[1:]
    assert np.allclose(counts["train"], np.round(totals * 0.3))
    assert all(t + v + s == n for t, v, s, n in zip(*counts.values(), totals, strict=True))
    again = random_split(labels, train=0.3, val=0.1, seed=3)
    assert np.array_equal(split.assignment, again.assignment)
    other = random_split(labels, train=0.3, val=0.1, seed=4)
    assert not np.array_equal(split.assignment, other.assignment)


def test_random_split_per_class_counts() -> None:
    labels = _labels()
    counts = random_split(labels, train=20, val=5, seed=0).counts(labels, 4)
    assert counts["train"] == [20] * 4 and counts["val"] == [5] * 4


def test_disjoint_split_keeps_test_pixels_outside_training_windows() -> None:
    labels = _labels()
    patch = 9
    split = disjoint_split(labels, train=0.3, val=0.1, patch_size=patch, block_size=9, seed=0)
    train = split.assignment == 1
    windows = ndimage.maximum_filter(train.astype(np.uint8), size=patch) > 0
    assert train.any() and (split.assignment == 3).any()
    assert not (windows & (split.assignment == 3)).any()
    assert not (windows & (split.assignment == 2)).any()
    # every class present in training on this easily split scene
    assert all(c > 0 for c in split.counts(labels, 4)["train"])


def test_split_round_trip_and_fingerprint_check(tmp_path) -> None:
    labels = _labels()
    split = make_split("disjoint", labels, seed=1, train=0.3, val=0.1, patch_size=5)
    split.fingerprint = "a" * 64
    path = split.save(tmp_path / "split.json")
    loaded = Split.load(path, fingerprint="a" * 64)
    assert np.array_equal(loaded.assignment, split.assignment)
    assert loaded.protocol == "disjoint" and loaded.seed == 1
    with pytest.raises(DataError, match="another cube"):
        Split.load(path, fingerprint="b" * 64)
    with pytest.raises(DataError, match="shape"):
        loaded.check_labels(labels[:-1])


def test_bad_protocol_arguments() -> None:
    labels = _labels()
    with pytest.raises(ConfigError, match="unknown protocol"):
        make_split("randm", labels)
    with pytest.raises(ConfigError, match="does not take"):
        make_split("random", labels, patch_size=5)
    with pytest.raises(ConfigError, match="train"):
        disjoint_split(labels, train=0.8, val=0.3)
