"""``hsi predict`` with a detection checkpoint: GeoTIFF scene in, GeoJSON points out."""

from __future__ import annotations

import json

import lightning as L
import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS
from test_detection_task import TINY, write_folder

from hsi.cli import main
from hsi.detection.datamodule import DetectionDataModule
from hsi.detection.scene import _tiles
from hsi.tasks import DetectionTask

pytestmark = pytest.mark.usefixtures("one_thread")


def test_tile_cores_partition_the_scene() -> None:
    for height, width, tile, overlap in ((40, 37, 16, 4), (16, 16, 16, 4), (70, 23, 32, 8)):
        owners = np.zeros((height, width), dtype=int)
        for r0, r1, c0, c1, (rlo, rhi, clo, chi) in _tiles(height, width, tile, overlap):
            assert r1 - r0 <= tile and c1 - c0 <= tile
            assert r0 <= rlo and rhi <= r1 and c0 <= clo and chi <= c1
            rows = [r for r in range(height) if rlo <= r + 0.5 < rhi]
            cols = [c for c in range(width) if clo <= c + 0.5 < chi]
            owners[np.ix_(rows, cols)] += 1
        assert (owners == 1).all(), (height, width, tile, overlap)


def _checkpoint(tmp_path):
    dm = DetectionDataModule(str(write_folder(tmp_path / "train", n_images=4)), val=0.25)
    task = DetectionTask(model_kwargs=TINY, lr=1e-3, report_dir=str(tmp_path / "report"))
    trainer = L.Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(task, datamodule=dm)
    path = tmp_path / "det.ckpt"
    trainer.save_checkpoint(path)
    return path


def _scene(path, bands: int = 6) -> None:
    rng = np.random.default_rng(0)
    data = rng.normal(1.0, 0.05, size=(bands, 40, 36)).astype(np.float32)
    data[:, 10:12, 20:22] = np.linspace(2.0, 4.0, bands)[:, None, None]
    transform = Affine(30.0, 0.0, 500000.0, 0.0, -30.0, 5800000.0)
    profile = dict(driver="GTiff", width=36, height=40, count=bands, dtype="float32")
    with rasterio.open(path, "w", crs=CRS.from_epsg(32633), transform=transform, **profile) as f:
        f.write(data)


def test_predict_writes_georeferenced_points(tmp_path) -> None:
    ckpt = _checkpoint(tmp_path)
    scene, out = tmp_path / "scene.tif", tmp_path / "det.geojson"
    _scene(scene)
    argv = ["predict", "--ckpt", str(ckpt), "--input", str(scene), "--output", str(out)]
    argv += ["--tile", "16", "--overlap", "4", "--score-threshold", "0", "--no-progress"]
    assert main(argv) == 0
    collection = json.loads(out.read_text())
    assert collection["crs"]["properties"]["name"].endswith("32633")
    made_by = collection["properties"]["hsi"]  # what made the detections
    assert made_by["checkpoint"] == str(ckpt) and made_by["input"] == [str(scene)]
    assert made_by["score_threshold"] == 0 and made_by["tile"] == 16
    features = collection["features"]
    assert features, "a score threshold of 0 keeps every core detection"
    scores = [f["properties"]["score"] for f in features]
    assert scores == sorted(scores, reverse=True)
    for f in features:
        x, y = f["geometry"]["coordinates"]
        row, col = f["properties"]["row"], f["properties"]["col"]
        assert 0 <= row <= 40 and 0 <= col <= 36
        assert (x, y) == pytest.approx((500000.0 + 30 * col, 5800000.0 - 30 * row))
        assert f["properties"]["class_name"] in ("steel", "paint")
    # an existing output is refused, a wrong band count is a clear error, nothing is written
    assert main(argv) == 2
    bad, out2 = tmp_path / "bad.tif", tmp_path / "bad.geojson"
    _scene(bad, bands=5)
    argv2 = ["predict", "--ckpt", str(ckpt), "--input", str(bad), "--output", str(out2)]
    assert main(argv2) == 2 and not out2.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]
