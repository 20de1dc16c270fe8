"""The patch data module: leak-free statistics, on-demand patches, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io as sio
import torch
from conftest import make_scene
from scipy import ndimage

from hsi.data.datamodule import HyperspectralPatchDataModule
from hsi.errors import ConfigError, DataError


def _toy_files(tmp_path: Path, cube: np.ndarray | None = None) -> tuple[Path, Path]:
    toy, labels = make_scene(height=48, width=44, bands=20, classes=4)
    cube = toy if cube is None else cube
    sio.savemat(tmp_path / "toy.mat", {"toy": cube})
    sio.savemat(tmp_path / "toy_gt.mat", {"toy_gt": labels})
    return tmp_path / "toy.mat", tmp_path / "toy_gt.mat"


def _dm(image: Path, labels: Path, **kwargs) -> HyperspectralPatchDataModule:
    args = dict(
        dataset=None,
        image=str(image),
        labels=str(labels),
        protocol="disjoint",
        patch_size=7,
        block_size=8,
        pca_components=6,
        batch_size=16,
    )
    args.update(kwargs)
    return HyperspectralPatchDataModule(**args)


def test_statistics_are_fitted_on_training_pixels_only(tmp_path: Path) -> None:
    image, labels = _toy_files(tmp_path)
    dm = _dm(image, labels)
    dm.setup("fit")
    rows, cols = dm.split.indices("train").T
    cube = dm.scene.cube.data.astype(np.float64)
    train_mean = cube[:, rows, cols].mean(axis=1)
    assert np.allclose(dm.preprocessor.mean, train_mean)
    assert not np.allclose(dm.preprocessor.mean, cube.reshape(20, -1).mean(axis=1))
    assert dm.describe()["leaky"] is False
    leaky = _dm(image, labels, protocol="random", pca_fit="image")
    leaky.setup("fit")
    assert leaky.describe()["leaky"] is True and len(leaky.describe()["leaky_reasons"]) == 2


def test_batches_are_patches_of_one_shared_cube(tmp_path: Path) -> None:
    image, labels = _toy_files(tmp_path)
    dm = _dm(image, labels, augment=True)
    dm.setup("fit")
    train = dm.train_dataloader().dataset
    # patches are views into one padded cube, not a materialised copy per pixel
    assert train.padded is dm.val_dataloader().dataset.padded
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (16, 6, 7, 7) and batch["label"].max() < 4
    # the centre of an un-augmented patch is the preprocessed pixel itself
    test = dm.test_dataloader().dataset
    sample = test[0]
    r, c = sample["coords"].tolist()
    expected = dm.preprocessor.transform_pixels(dm.scene.cube.data[:, r, c][None].astype(float))
    assert torch.allclose(sample["image"][:, 3, 3], torch.from_numpy(expected[0]), atol=1e-5)
    assert sample["label"] == dm.scene.labels[r, c] - 1


def test_split_file_is_reused_and_checked(tmp_path: Path) -> None:
    image, labels = _toy_files(tmp_path)
    split_file = tmp_path / "split.json"
    dm = _dm(image, labels, split_file=str(split_file))
    dm.setup("fit")
    assert split_file.is_file()
    again = _dm(image, labels, split_file=str(split_file), seed=99)
    again.setup("fit")
    assert np.array_equal(again.split.assignment, dm.split.assignment)
    with pytest.raises(ConfigError, match="protocol"):
        _dm(image, labels, split_file=str(split_file), protocol="random").setup("fit")
    # a split made for another cube is refused
    other_dir = tmp_path / "other"
    other_dir.mkdir()
    cube2, _ = make_scene(height=48, width=44, bands=20, classes=4, seed=5)
    image2, labels2 = _toy_files(other_dir, cube2)
    with pytest.raises(DataError, match="another cube"):
        _dm(image2, labels2, split_file=str(split_file)).setup("fit")


def test_nan_pixels_are_a_clear_error(tmp_path: Path) -> None:
    cube, _ = make_scene(height=48, width=44, bands=20, classes=4)
    cube[5, 6, 3] = np.nan
    image, labels = _toy_files(tmp_path, cube)
    with pytest.raises(DataError, match="NaN"):
        _dm(image, labels).setup("fit")


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="odd"):
        HyperspectralPatchDataModule(patch_size=24)
    with pytest.raises(ConfigError, match="image"):
        HyperspectralPatchDataModule(dataset=None)
    image, labels = _toy_files(tmp_path)
    with pytest.raises(ConfigError, match="pca_components"):
        _dm(image, labels, pca_components=50).setup("fit")


@pytest.mark.realdata
def test_indian_pines_disjoint_split_is_leak_free(shared_data: Path) -> None:
    dm = HyperspectralPatchDataModule(
        dataset="indian_pines", root=str(shared_data), protocol="disjoint", patch_size=25
    )
    dm.setup("fit")
    assert dm.in_bands == 30 and dm.num_classes == 16
    train = dm.split.assignment == 1
    windows = ndimage.maximum_filter(train.astype(np.uint8), size=25) > 0
    assert not (windows & (dm.split.assignment >= 2)).any()
    totals = dm.describe()["split"]["totals"]
    assert totals["train"] > 2000 and totals["test"] > 1000
