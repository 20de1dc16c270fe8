"""SpecDETR on real target scenes trained on simulation: background fill, folds, score map,
per-object hit radii, and one tiny end-to-end fold."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from conftest import real
from rasterio.crs import CRS

from hsi.data.cube import SpectralCube
from hsi.detection.classical import background_stats, cem
from hsi.detection.evaluation import evaluate_scene, held_out_folds, mean_spectrum, roc_auc
from hsi.detection.geojson import PointDetection
from hsi.detection.metrics import point_average_precision
from hsi.detection.scene import SceneDetection, detect_cube, detect_scene, load_detection_task
from hsi.detection.scene_training import (
    FoldSettings,
    dilate,
    fold_objects,
    object_radius,
    remove_targets,
    score_map,
    train_and_score_fold,
)
from hsi.errors import DataError

BANDS, SIDE = 20, 48
# (row, col, height, width) of the planted objects, in id (raster) order
OBJECTS = ((4, 6, 2, 2), (10, 30, 3, 3), (28, 12, 1, 1), (36, 36, 2, 3))
TINY = dict(
    embed_dim=16, num_heads=2, ffn_dim=32, encoder_layers=1, decoder_layers=1, num_queries=10
)


pytestmark = pytest.mark.usefixtures("one_thread")


def _scene(seed: int = 0) -> tuple[SpectralCube, np.ndarray]:
    """A smooth random background with four planted objects of one bright spectrum."""
    rng = np.random.default_rng(seed)
    base = np.linspace(100.0, 200.0, BANDS)[:, None, None]
    data = base * (1 + 0.1 * rng.standard_normal((1, SIDE, SIDE))) + rng.normal(
        0, 2.0, (BANDS, SIDE, SIDE)
    )
    target = np.linspace(400.0, 150.0, BANDS)
    truth = np.zeros((SIDE, SIDE), dtype=np.int64)
    for r, c, h, w in OBJECTS:
        data[:, r : r + h, c : c + w] = target[:, None, None]
        truth[r : r + h, c : c + w] = 1
    return SpectralCube(data.astype(np.float32), source="synthetic"), truth


def test_remove_targets_fills_dilated_targets_and_keeps_the_rest() -> None:
    cube, truth = _scene()
    out = remove_targets(cube, truth > 0, dilation=1)
    filled = dilate(truth > 0, 1)
    # one pixel in all eight directions: a 2x2 object becomes 4x4
    assert filled[3:7, 5:9].all() and filled.sum() == 16 + 25 + 9 + 20
    np.testing.assert_array_equal(out.data[:, ~filled], cube.data[:, ~filled])
    # every filled pixel holds the spectrum of its nearest pixel outside the mask
    outside = np.argwhere(~filled)
    for r, c in np.argwhere(filled):
        distance = np.hypot(outside[:, 0] - r, outside[:, 1] - c)
        nearest = outside[np.isclose(distance, distance.min())]  # ties: any of them
        assert any(np.array_equal(out.data[:, r, c], cube.data[:, a, b]) for a, b in nearest)
    # no target spectrum is left anywhere
    target = cube.data[:, 4, 6]
    assert not np.isclose(out.data, target[:, None, None], rtol=1e-3).all(axis=0).any()
    with pytest.raises(DataError, match="target mask"):
        remove_targets(cube, truth[:-1] > 0)
    with pytest.raises(DataError, match="no background pixel"):
        remove_targets(cube, np.ones_like(truth, dtype=bool))


def test_held_out_folds_alternate_in_id_order_and_are_evaluate_scenes_split() -> None:
    cube, truth = _scene()
    folds = held_out_folds(truth)
    for k, (r, c, h, w) in enumerate(OBJECTS):
        assert (folds[r : r + h, c : c + w] == k % 2).all()
    assert ((folds >= 0) == (truth > 0)).all()
    # evaluate_scene's held-out CEM is exactly CEM with these folds' donors
    stats = background_stats(cube)
    aucs = []
    for fold in (0, 1):
        donor = folds == 1 - fold
        scores = cem(cube, mean_spectrum(cube, donor), stats)
        aucs.append(roc_auc(scores, truth > 0, keep=~donor))
    assert evaluate_scene(cube, truth, "held_out", ("cem",))["cem"] == pytest.approx(
        np.mean(aucs), abs=1e-12
    )
    # one object: fold 1 is empty and no held-out score exists
    single = np.zeros_like(truth)
    single[4:6, 6:8] = 1
    assert not (held_out_folds(single) == 1).any()
    assert np.isnan(evaluate_scene(cube, single, "held_out", ("cem",))["cem"])


def _det(score: float, box: tuple[float, float, float, float]) -> SceneDetection:
    r0, c0, r1, c1 = box
    return SceneDetection(PointDetection((r0 + r1) / 2, (c0 + c1) / 2, score), box)


def test_score_map_takes_the_best_covering_box_per_pixel() -> None:
    dets = [
        _det(0.4, (2.0, 3.5, 4.0, 5.2)),  # rows 2-3, cols 3-5
        _det(0.9, (3.2, 5.0, 3.7, 5.4)),  # sub-pixel: only pixel (3, 5)
        _det(0.2, (-1.0, 8.5, 1.0, 12.0)),  # clipped to rows 0, cols 8-9
        _det(0.7, (20.0, 20.0, 21.0, 21.0)),  # outside the image: ignored
    ]
    out = score_map(dets, (6, 10))
    expected = np.zeros((6, 10))
    expected[2:4, 3:6] = 0.4
    expected[3, 5] = 0.9
    expected[0, 8:10] = 0.2
    np.testing.assert_array_equal(out, expected)
    with pytest.raises(DataError, match="not finite"):
        score_map([_det(0.5, (0.0, 0.0, float("nan"), 1.0))], (4, 4))


def test_fold_objects_centres_radii_and_per_object_hits() -> None:
    _, truth = _scene()
    objs = fold_objects(truth, 1)
    # objects 2 and 4: 3x3 at (10, 30) and 2x3 at (36, 36); centres are pixel centres
    np.testing.assert_allclose(objs["points"], [(31.5, 11.5), (37.5, 37.0)])
    np.testing.assert_allclose(objs["areas"], [9, 6])
    np.testing.assert_allclose(objs["radii"], [0.5 * math.hypot(3, 3), 0.5 * math.hypot(2, 3)])
    assert object_radius((0, 0, 1, 1)) == 1.0  # a 1-pixel object keeps the 1 px default
    # a detection 2 px from the 3x3 object's centre hits it with its own radius (2.12 px),
    # not with the default 1 px
    pred = [{"points": np.array([[33.5, 11.5]]), "scores": np.array([0.9]), "labels": [0]}]
    assert point_average_precision(pred, [objs], num_classes=1)["AP"] == pytest.approx(0.5)
    plain = {k: v for k, v in objs.items() if k != "radii"}
    assert point_average_precision(pred, [plain], num_classes=1)["AP"] == 0.0
    with pytest.raises(DataError, match="radii"):
        point_average_precision(pred, [{**objs, "radii": np.array([1.0])}])


def test_one_tiny_fold_end_to_end(tmp_path: Path) -> None:
    """Simulate, train 1 epoch, score the real-scene stand-in; also detect_cube on the
    trained checkpoint gives the points detect_scene gives from the same scene as a file."""
    cube, truth = _scene()
    settings = FoldSettings(
        epochs=1,
        n_images=8,
        image_size=16,
        sizes=(1.0, 2.0, 3.0),
        targets_per_image=(1, 3),
        val=0.25,
        batch_size=4,
        tile=16,
        overlap=4,
        accelerator="cpu",
        task_kwargs=dict(model_kwargs=TINY, lr=1e-3, max_detections=20),
    )
    result = train_and_score_fold(cube, truth, 0, tmp_path / "fold0", settings)
    for key in ("auc", "point_AP", "recall", "best_val_point_AP"):
        assert 0.0 <= result[key] <= 1.0, (key, result[key])
    assert result["objects_scored"] == 2 and result["fold"] == 0
    assert result["detections"] >= result["detections_off_donor"] >= 0
    assert result["train_seconds"] > 0 and math.isfinite(result["seconds_per_epoch"])
    assert (result["train_images"], result["val_images"]) == (6, 2)
    sim = tmp_path / "fold0" / "sim"
    assert len(list((sim / "images").glob("*.npy"))) == 8
    # the simulated images hold no real target: none is as bright as the planted spectrum
    target = cube.data[:, 4, 6]
    for f in (sim / "images").glob("*.npy"):
        img = np.load(f)
        assert not np.isclose(img, target[:, None, None], rtol=0.02).all(axis=0).any()

    task = load_detection_task(result["checkpoint"])
    path = tmp_path / "scene.tif"
    profile = dict(driver="GTiff", width=SIDE, height=SIDE, count=BANDS, dtype="float32")
    transform = Affine(30.0, 0.0, 500000.0, 0.0, -30.0, 5800000.0)
    with rasterio.open(path, "w", crs=CRS.from_epsg(32633), transform=transform, **profile) as f:
        f.write(cube.data)
    from_file, _, _ = detect_scene(task, path, 16, 4, 0.0, progress=False)
    in_memory = detect_cube(task, cube, 16, 4, 0.0)
    assert [d.point for d in in_memory] == from_file
    for d in in_memory:
        r0, c0, r1, c1 = d.box
        assert r0 <= d.point.row <= r1 and c0 <= d.point.col <= c1

    with pytest.raises(DataError, match="one target object"):
        single = np.zeros_like(truth)
        single[4:6, 6:8] = 1
        train_and_score_fold(cube, single, 0, tmp_path / "x", settings)


def test_real_san_diego_background_has_no_planes_left() -> None:
    from hsi.detection.real_scenes import load_target_scene

    scene = load_target_scene("san_diego", real("target_detection"))
    truth = scene.target_map > 0
    out = remove_targets(scene.cube, truth)
    filled = dilate(truth, 1)
    np.testing.assert_array_equal(out.data[:, ~filled], scene.cube.data[:, ~filled])
    signature = mean_spectrum(scene.cube, truth)
    stats = background_stats(scene.cube)
    before = cem(scene.cube, signature, stats)
    after = cem(out, signature, stats)
    # the planes stood out; after the fill their pixels score like the background around them
    assert np.median(before[truth]) > 0.5
    assert after[truth].max() < np.percentile(before[~filled], 99.9)
