"""The SPOD-style point-target simulator (hsi.detection.simulator)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hsi.data.cube import SpectralCube
from hsi.detection import simulator as sim
from hsi.detection.simulator import (
    SimulationSpec,
    implant,
    library_from_labels,
    read_spectral_library,
    simulate,
)
from hsi.errors import ConfigError, DataError


def _background(bands: int = 6, size: int = 48) -> SpectralCube:
    rng = np.random.default_rng(1)
    return SpectralCube(rng.uniform(0.2, 0.4, size=(bands, size, size)).astype(np.float32))


def test_sub_pixel_target_mixes_by_covered_fraction() -> None:
    image = np.full((2, 4, 4), 1.0)
    target = np.array([3.0, 5.0])
    implant(image, target, x=1.25, y=2.25, size=0.5, abundance=0.8)
    f = 0.25 * 0.8  # a 0.5×0.5 square inside pixel (row 2, col 1)
    np.testing.assert_allclose(image[:, 2, 1], (1 - f) * 1.0 + f * target)
    image[:, 2, 1] = 1.0
    assert (image == 1.0).all()


def test_straddling_target_spreads_its_area_over_pixels() -> None:
    image = np.zeros((1, 5, 5))
    implant(image, np.array([1.0]), x=0.5, y=1.5, size=2.0, abundance=1.0)
    assert image.sum() == pytest.approx(4.0)  # area 2×2 of a unit signal on a zero background
    assert image[0, 1, 0] == pytest.approx(0.25) and image[0, 2, 1] == pytest.approx(1.0)


def test_simulate_writes_a_consistent_seeded_dataset(tmp_path) -> None:
    cube = _background()
    library = {"steel": np.full(6, 0.9), "paint": np.linspace(0.1, 0.8, 6)}
    spec = SimulationSpec(
        n_images=6, image_size=16, targets_per_image=(2, 3), region=(0, 24, 0, 48), seed=3
    )
    stats = simulate(cube, library, spec, tmp_path / "a")
    simulate(cube, library, spec, tmp_path / "b")
    coco = json.loads((tmp_path / "a" / "annotations.json").read_text())
    assert len(coco["images"]) == stats.images == 6
    assert len(coco["annotations"]) == stats.targets == sum(stats.per_class.values())
    assert sum(stats.per_size.values()) == stats.targets and stats.targets >= 12
    assert [c["name"] for c in coco["categories"]] == ["steel", "paint"]
    for image in coco["images"]:
        top, left = image["crop"]
        assert 0 <= top and top + 16 <= 24  # crops stay inside the region
        a = np.load(tmp_path / "a" / image["file_name"])
        b = np.load(tmp_path / "b" / image["file_name"])
        np.testing.assert_array_equal(a, b)  # same seed, same data
        assert a.shape == (6, 16, 16) and a.dtype == np.float32
    for ann in coco["annotations"]:
        x, y, w, h = ann["bbox"]
        assert 0 <= x and x + w <= 16 and 0 <= y and y + h <= 16
        assert all(float(v).is_integer() for v in ann["bbox"])  # SPOD: on the pixel grid
        fx, fy, side, _ = ann["footprint"]
        assert x <= fx and fx + side <= x + w and y <= fy and fy + side <= y + h
        assert w < side + 2 and h < side + 2  # the smallest grid box around the footprint
        assert ann["point"] == [fx + side / 2, fy + side / 2]
        assert ann["area"] == pytest.approx(side * side) and ann["size"] == side
    record = json.loads((tmp_path / "a" / "simulation.json").read_text())
    assert record["spec"]["seed"] == 3 and record["stats"]["targets"] == stats.targets
    assert "targets" in stats.summary()


def test_targets_change_only_their_pixels(tmp_path) -> None:
    cube = _background()
    spec = SimulationSpec(n_images=3, image_size=16, snr_db=None, sizes=(1.0,), seed=0)
    simulate(cube, {"t": np.full(6, 5.0)}, spec, tmp_path / "d")
    coco = json.loads((tmp_path / "d" / "annotations.json").read_text())
    for image in coco["images"]:
        top, left = image["crop"]
        clean = cube.data[:, top : top + 16, left : left + 16]
        changed = (np.load(tmp_path / "d" / image["file_name"]) != clean).any(axis=0)
        touched = np.zeros_like(changed)
        for ann in (a for a in coco["annotations"] if a["image_id"] == image["id"]):
            x, y, w, h = ann["bbox"]
            touched[int(y) : int(np.ceil(y + h)), int(x) : int(np.ceil(x + w))] = True
        assert changed.any() and not (changed & ~touched).any()


@pytest.mark.parametrize("boxes", ["pixel", "exact"])
def test_pixel_boxes_are_exactly_the_changed_pixels(tmp_path, boxes) -> None:
    cube = _background()
    spec = SimulationSpec(
        n_images=4, image_size=16, snr_db=None, sizes=(0.25, 0.5, 2.0), seed=1, boxes=boxes
    )
    simulate(cube, {"t": np.full(6, 5.0)}, spec, tmp_path / boxes)
    coco = json.loads((tmp_path / boxes / "annotations.json").read_text())
    sub_pixel = 0
    for image in coco["images"]:
        top, left = image["crop"]
        clean = cube.data[:, top : top + 16, left : left + 16]
        changed = (np.load(tmp_path / boxes / image["file_name"]) != clean).any(axis=0)
        boxed = np.zeros_like(changed)
        for ann in (a for a in coco["annotations"] if a["image_id"] == image["id"]):
            x, y, w, h = ann["bbox"]
            if boxes == "exact":
                assert ann["bbox"] == ann["footprint"]
                x, y = int(x), int(y)
                w, h = int(np.ceil(ann["bbox"][0] + w)) - x, int(np.ceil(ann["bbox"][1] + h)) - y
            boxed[int(y) : int(y + h), int(x) : int(x + w)] = True
            sub_pixel += ann["size"] < 1
        np.testing.assert_array_equal(changed, boxed)
    assert sub_pixel > 0


def test_unknown_box_convention_is_refused(tmp_path) -> None:
    with pytest.raises(ConfigError, match="boxes='center'"):
        simulate(
            _background(),
            {"t": np.ones(6)},
            SimulationSpec(image_size=16, boxes="center"),
            tmp_path / "x",
        )


def test_no_partial_dataset_is_left_on_failure(tmp_path, monkeypatch) -> None:
    calls = {"n": 0}
    real_save = np.save

    def failing_save(path, array):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk full")
        real_save(path, array)

    monkeypatch.setattr(sim.np, "save", failing_save)
    with pytest.raises(OSError):
        simulate(
            _background(),
            {"t": np.ones(6)},
            SimulationSpec(n_images=4, image_size=16),
            tmp_path / "out",
        )
    assert list(tmp_path.iterdir()) == []


def test_bad_input_is_refused(tmp_path) -> None:
    cube = _background()
    with pytest.raises(DataError, match="bands"):
        simulate(cube, {"t": np.ones(5)}, SimulationSpec(image_size=16), tmp_path / "x")
    with pytest.raises(ConfigError, match="outside"):
        simulate(cube, {"t": np.ones(6)}, SimulationSpec(region=(0, 99, 0, 10)), tmp_path / "x")
    with pytest.raises(ConfigError, match="does not fit"):
        simulate(cube, {"t": np.ones(6)}, SimulationSpec(image_size=64), tmp_path / "x")
    with pytest.raises(ConfigError, match="empty"):
        simulate(cube, {}, SimulationSpec(image_size=16), tmp_path / "x")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "f").write_text("x")
    with pytest.raises(ConfigError, match="not empty"):
        simulate(cube, {"t": np.ones(6)}, SimulationSpec(image_size=16), tmp_path / "full")
    nan = cube.data.copy()
    nan[0, 0, 0] = np.nan
    with pytest.raises(DataError, match="NaN"):
        simulate(
            SpectralCube(nan), {"t": np.ones(6)}, SimulationSpec(image_size=16), tmp_path / "x"
        )


def test_libraries_from_labels_and_from_a_csv(tmp_path) -> None:
    cube = SpectralCube(
        np.stack([np.full((4, 4), b, dtype=np.float32) for b in (1.0, 2.0, 3.0)]),
        wavelengths=np.array([500.0, 600.0, 700.0]),
    )
    labels = np.zeros((4, 4), dtype=np.int64)
    labels[0] = 1
    lib = library_from_labels(cube, labels, ["a", "b"], ["a"])
    np.testing.assert_allclose(lib["a"], [1.0, 2.0, 3.0])
    with pytest.raises(DataError, match="no labelled"):
        library_from_labels(cube, labels, ["a", "b"], ["b"])
    csv_path = tmp_path / "lib.csv"
    csv_path.write_text("wavelength_nm,steel\n400,0\n800,4\n")
    np.testing.assert_allclose(read_spectral_library(csv_path, cube)["steel"], [1.0, 2.0, 3.0])
