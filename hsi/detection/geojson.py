"""Detections as points: peaks of a score map, and GeoJSON in the scene's CRS.

A detector's output for point objects is a list of (row, col, score, class) in pixel
coordinates. :func:`score_peaks` turns a classical detector's score map into that list
(local maxima above a threshold, at least ``min_distance`` pixels apart), so classical and
learned detectors are scored by the same point metric; :func:`write_detections_geojson`
maps the points through the scene's affine transform into its CRS, as a GIS expects.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from hsi.data.writers import atomic_output
from hsi.errors import DataError


@dataclass(frozen=True)
class PointDetection:
    """A detected point object at pixel (row, col) (centre of pixel = +0.5), with a score."""

    row: float
    col: float
    score: float
    class_id: int = 1
    class_name: str | None = None


def score_peaks(
    scores: np.ndarray,
    threshold: float | None = None,
    min_distance: int = 2,
    max_detections: int | None = None,
    class_id: int = 1,
) -> list[PointDetection]:
    """Local maxima of ``scores`` (H×W; NaN = no data) as detections, best first.

    A pixel is a peak when it is the maximum of its (2·min_distance+1)² neighbourhood;
    plateaus keep their first pixel in raster order. Coordinates are pixel centres.
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2:
        raise DataError(f"a score map must be 2-D, got shape {s.shape}")
    if min_distance < 1:
        raise DataError("min_distance must be >= 1 pixel")
    filled = np.where(np.isfinite(s), s, -np.inf)
    size = 2 * min_distance + 1
    peaks = (filled == ndimage.maximum_filter(filled, size=size, mode="nearest")) & np.isfinite(s)
    if threshold is not None:
        peaks &= filled >= threshold
    rows, cols = np.nonzero(peaks)
    order = np.argsort(-filled[rows, cols], kind="stable")
    taken = np.zeros_like(peaks)
    detections: list[PointDetection] = []
    for k in order:
        r, c = int(rows[k]), int(cols[k])
        r0, c0 = max(r - min_distance, 0), max(c - min_distance, 0)
        if taken[r0 : r + min_distance + 1, c0 : c + min_distance + 1].any():
            continue  # a plateau neighbour already reported
        taken[r, c] = True
        detections.append(PointDetection(r + 0.5, c + 0.5, float(filled[r, c]), class_id))
        if max_detections is not None and len(detections) >= max_detections:
            break
    return detections


def detections_to_geojson(
    detections: list[PointDetection],
    transform: Any = None,
    crs: Any = None,
    provenance: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A GeoJSON FeatureCollection; coordinates in the CRS when a transform is given,
    else in pixel (col, row) units, said so in the collection's properties.
    ``provenance`` (what made the detections: input, detector or checkpoint, threshold)
    goes to the collection's ``properties["hsi"]``, as a class map's ``hsi_*`` tags."""
    features = []
    for d in detections:
        if transform is not None:
            t = transform  # affine: x = a·col + b·row + c, y = d·col + e·row + f
            x, y = t.a * d.col + t.b * d.row + t.c, t.d * d.col + t.e * d.row + t.f
        else:
            x, y = d.col, d.row
        features.append(
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [float(x), float(y)]},
                "properties": {
                    "score": d.score,
                    "class_id": d.class_id,
                    "class_name": d.class_name,
                    "row": d.row,
                    "col": d.col,
                },
            }
        )
    collection: dict[str, Any] = {"type": "FeatureCollection", "features": features}
    if crs is not None:
        # RFC 7946 drops "crs"; GDAL/QGIS still read this member for projected CRSs
        collection["crs"] = {"type": "name", "properties": {"name": _crs_name(crs)}}
    properties: dict[str, Any] = {}
    if transform is None:
        properties["coordinates"] = "pixel (col, row), no georeference"
    if provenance:
        properties["hsi"] = provenance
    if properties:
        collection["properties"] = properties
    return collection


def _crs_name(crs: Any) -> str:
    epsg = getattr(crs, "to_epsg", lambda: None)()
    return f"urn:ogc:def:crs:EPSG::{epsg}" if epsg else str(crs)


def write_detections_geojson(
    path: str | os.PathLike,
    detections: list[PointDetection],
    transform: Any = None,
    crs: Any = None,
    overwrite: bool = False,
    provenance: dict[str, Any] | None = None,
) -> Path:
    """Write detections as GeoJSON atomically (no partial file on failure)."""
    collection = detections_to_geojson(detections, transform, crs, provenance)
    with atomic_output(path, overwrite=overwrite) as tmp:
        Path(tmp).write_text(json.dumps(collection, indent=1))
    return Path(path)
