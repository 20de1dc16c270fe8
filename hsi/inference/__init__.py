"""Scene inference: a trained checkpoint applied to a whole scene, window by window.

Two layers:

- :func:`classify_cube` turns a padded, preprocessed ``(C, H + 2r, W + 2r)`` tensor into
  ``(K, H, W)`` class probabilities. Models with ``forward_dense`` (HybridSN) are run
  fully-convolutionally, which shares the convolutions of overlapping patches; any other
  patch model gets batched patches cut with ``Tensor.unfold`` (no Python loop per pixel).
- :func:`predict_scene` (``hsi predict --input``) reads a scene of any size in windows with
  a halo of ``r = patch_size // 2`` pixels, applies the checkpoint's preprocessing (fitted
  on the training pixels, never refitted on the scene), and writes a georeferenced class
  map (plus optional confidence/probability rasters and a PNG quick-look) atomically.

Memory is bounded by the window size: the scene and its maps are never held whole, so a
100 km satellite scene needs no more memory than a 256×256 window.
(``benchmarks/bench_predict_memory.py`` measures it.) Several processes, GPUs or nodes
share a scene's windows in :mod:`hsi.inference.distributed` (``hsi predict --devices N``);
:mod:`hsi.inference.restoration` runs restoration checkpoints over scenes the same way.

Modules: ``dense`` (classify_cube), ``scenes`` (scene files and mosaics read window by
window), ``windows`` (one window preprocessed, its probabilities turned into maps), ``plan``
(every check before any output exists), ``outputs`` (the rasters, written atomically),
``predict`` (predict_scene) and ``cli`` (``hsi predict``).
"""

from importlib import import_module
from typing import Any

__all__ = ["classify_cube", "predict_scene", "scene_main"]

# Each public name is imported from its module on first use: the package's modules
# (distributed, restoration) and the classification task's test step, which needs only
# classify_cube, then do not load scene prediction (checkpoint loading, Lightning, rasterio).
_HOMES = {
    "classify_cube": "hsi.inference.dense",
    "predict_scene": "hsi.inference.predict",
    "scene_main": "hsi.inference.cli",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'hsi.inference' has no attribute {name!r}")
