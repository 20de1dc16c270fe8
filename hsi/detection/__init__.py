"""Hyperspectral target detection: classical detectors, target annotations, real scenes.

- :mod:`hsi.detection.classical`: the non-learned detectors users compare against (RX, CEM,
  adaptive matched filter, ACE), on one background-statistics estimate.
- :mod:`hsi.detection.targets`: pixel-level target maps turned into point/box annotations
  (connected components), and matching of a library signature to a scene's band grid.
- :mod:`hsi.detection.real_scenes`: the real target scenes (ABU, San Diego, HYDICE) with
  checksums, read from a local folder.
- :mod:`hsi.detection.evaluation`: ROC AUC per scene under a named signature protocol.
- :mod:`hsi.detection.simulator`: SPOD-style sub-pixel targets implanted in real scenes;
  :mod:`hsi.detection.spod` converts the real SPOD benchmark to the same folder format.
- :mod:`hsi.detection.datamodule`, :mod:`hsi.detection.matching`, :mod:`hsi.detection.metrics`:
  SpecDETR's data, Hungarian one-to-many matching and losses, point-distance AP.
- :mod:`hsi.detection.scene`, :mod:`hsi.detection.geojson`: whole-scene detection to GeoJSON.
"""

from hsi.detection.classical import (
    BackgroundStats,
    ace,
    adaptive_matched_filter,
    background_stats,
    cem,
    rx,
)
from hsi.detection.targets import TargetAnnotation, annotate_targets, match_signature

__all__ = [
    "BackgroundStats",
    "TargetAnnotation",
    "ace",
    "adaptive_matched_filter",
    "annotate_targets",
    "background_stats",
    "cem",
    "match_signature",
    "rx",
]
