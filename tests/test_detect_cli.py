"""``hsi detect``: classical detection over a GeoTIFF scene with a spectral library."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS

from hsi.cli import main
from hsi.data.cube import SpectralCube
from hsi.detection.classical import StatsAccumulator, background_stats

WAVELENGTHS = np.linspace(450.0, 900.0, 12)


def _scene(path, target: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    mixing = rng.normal(size=(12, 12)) / 4
    data = (rng.normal(size=(40 * 30, 12)) @ mixing + 5.0).T.reshape(12, 40, 30)
    data[:, 8, 20] = target
    data[:, 30, 5] = 0.7 * target + 0.3 * data[:, 30, 5]
    transform = Affine(30.0, 0.0, 500000.0, 0.0, -30.0, 5800000.0)
    profile = dict(driver="GTiff", width=30, height=40, count=12, dtype="float32")
    with rasterio.open(path, "w", crs=CRS.from_epsg(32633), transform=transform, **profile) as f:
        f.write(data.astype(np.float32))
        for b, wl in enumerate(WAVELENGTHS, start=1):
            f.update_tags(b, wavelength=str(wl))


def test_streamed_statistics_equal_the_whole_scene_ones() -> None:
    cube = np.random.default_rng(1).normal(size=(5, 20, 9))
    acc = StatsAccumulator(5)
    for r0 in range(0, 20, 6):
        acc.add(SpectralCube(cube[:, r0 : r0 + 6]))
    whole, streamed = background_stats(SpectralCube(cube)), acc.finish()
    np.testing.assert_allclose(streamed.mean, whole.mean)
    np.testing.assert_allclose(streamed.cov_inv, whole.cov_inv, rtol=1e-8)
    np.testing.assert_allclose(streamed.corr_inv, whole.corr_inv, rtol=1e-8)


def test_detect_finds_the_implanted_targets(tmp_path) -> None:
    target = np.linspace(9.0, 2.0, 12)
    scene, lib = tmp_path / "scene.tif", tmp_path / "lib.csv"
    _scene(scene, target)
    # the library is on a coarser grid than the scene and is resampled to it
    grid = np.linspace(400.0, 950.0, 23)
    rows = ["wavelength_nm,steel"] + [
        f"{w},{v}" for w, v in zip(grid, np.interp(grid, WAVELENGTHS, target), strict=True)
    ]  # noqa: E501
    lib.write_text("\n".join(rows) + "\n")
    out, scores = tmp_path / "d.geojson", tmp_path / "ace.tif"
    argv = ["detect", "--input", str(scene), "--library", str(lib), "--threshold", "0.5"]
    argv += ["--output", str(out), "--scores", str(scores), "--strip-rows", "7"]
    assert main(argv) == 0
    collection = json.loads(out.read_text())
    made_by = collection["properties"]["hsi"]  # what made the detections
    assert made_by["detector"] == "ace" and made_by["targets"] == ["steel"]
    assert made_by["threshold"] == 0.5 and made_by["library"] == str(lib)
    features = collection["features"]
    found = {(f["properties"]["row"], f["properties"]["col"]) for f in features}
    assert {(8.5, 20.5), (30.5, 5.5)} <= found
    assert all(f["properties"]["class_name"] == "steel" for f in features)
    with rasterio.open(scores) as f:
        assert f.count == 1 and f.crs.to_epsg() == 32633
        assert np.nanargmax(f.read(1)) == 8 * 30 + 20
    assert main(argv) == 2  # outputs exist: refused without --overwrite


def test_detect_bad_input_is_a_clear_error(tmp_path, capsys) -> None:
    scene = tmp_path / "scene.tif"
    _scene(scene, np.ones(12))
    out = tmp_path / "d.geojson"
    base = ["detect", "--input", str(scene), "--output", str(out), "--threshold", "0.5"]
    assert main(base + ["--detector", "ace"]) == 2
    assert "needs --library" in capsys.readouterr().err
    lib = tmp_path / "lib.csv"
    lib.write_text("wavelength_nm,steel\n500,1\n600,2\n")
    assert main(base + ["--library", str(lib)]) == 2
    assert "extrapolated" in capsys.readouterr().err
    lib.write_text("wavelength_nm,steel\n300,1\n1000,2\n")
    assert main(base + ["--library", str(lib), "--target", "paint"]) == 2
    assert "not in the library" in capsys.readouterr().err
    assert not out.exists()
    assert main(base + ["--detector", "rx"]) == 0 and out.exists()


@pytest.mark.parametrize("name", ["d.txt"])
def test_detect_output_must_be_geojson(tmp_path, name, capsys) -> None:
    argv = ["detect", "--input", "x.tif", "--output", str(tmp_path / name), "--threshold", "1"]
    assert main(argv) == 2 and "geojson" in capsys.readouterr().err
