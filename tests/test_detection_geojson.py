"""Score-map peaks and GeoJSON output (hsi.detection.geojson)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from affine import Affine
from rasterio.crs import CRS

from hsi.detection.geojson import score_peaks, write_detections_geojson
from hsi.errors import DataError


def test_peaks_are_local_maxima_best_first() -> None:
    s = np.zeros((10, 10))
    s[2, 3] = 5.0
    s[2, 4] = 4.0  # neighbour of a higher peak: suppressed
    s[7, 7] = 3.0
    s[0, 9] = np.nan
    found = score_peaks(s, threshold=1.0, min_distance=2)
    assert [(d.row, d.col, d.score) for d in found] == [(2.5, 3.5, 5.0), (7.5, 7.5, 3.0)]
    assert len(score_peaks(s, threshold=1.0, max_detections=1)) == 1


def test_plateau_gives_one_detection() -> None:
    s = np.zeros((6, 6))
    s[2:4, 2:4] = 1.0
    assert len(score_peaks(s, threshold=0.5)) == 1


def test_geojson_is_in_the_scene_crs(tmp_path) -> None:
    s = np.zeros((4, 4))
    s[1, 2] = 1.0
    transform = Affine(30.0, 0.0, 500000.0, 0.0, -30.0, 5800000.0)
    path = write_detections_geojson(
        tmp_path / "d.geojson", score_peaks(s, 0.5), transform, CRS.from_epsg(32633)
    )
    collection = json.loads(path.read_text())
    (feature,) = collection["features"]
    assert feature["geometry"]["coordinates"] == [500000.0 + 2.5 * 30, 5800000.0 - 1.5 * 30]
    assert collection["crs"]["properties"]["name"].endswith("32633")
    with pytest.raises(Exception, match="exists"):
        write_detections_geojson(tmp_path / "d.geojson", [], transform)


def test_bad_score_maps_are_refused() -> None:
    with pytest.raises(DataError):
        score_peaks(np.zeros(5))
    with pytest.raises(DataError):
        score_peaks(np.zeros((3, 3)), min_distance=0)
