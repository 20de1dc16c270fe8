"""NumPy ``.npy`` arrays, memory-mapped so that a window reads only its part."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from hsi.data.cube import SpectralCube
from hsi.data.readers._common import (
    _NUMERIC_KINDS,
    WindowLike,
    _band_indices,
    _band_names,
    _nodata_mask,
    _normalise_window,
    _one_line,
    _select,
)
from hsi.errors import DataError


def _load_npy(p: Path) -> np.ndarray:
    """Memory-map a .npy so that windowed reads touch only the requested part."""
    try:
        arr = np.load(p, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(
            f"{p}: not a readable .npy array ({_one_line(exc)}); the file may be truncated "
            "or hold Python objects — re-save it with numpy.save(path, numeric_array)"
        ) from exc
    if arr.dtype.kind not in _NUMERIC_KINDS:
        raise DataError(
            f"{p}: holds {arr.dtype} values, not numbers; save the numeric array instead"
        )
    return arr


def _read_npy_cube(
    p: Path, layout: str, window: WindowLike | None, bands: Sequence[int] | None
) -> SpectralCube:
    arr = _load_npy(p)
    if arr.ndim != 3:
        raise DataError(
            f"{p}: holds an array of shape {arr.shape}, not a 3-D cube; "
            "pass the cube file (labels go through read_labels)"
        )
    axis = {ch: layout.index(ch) for ch in "bhw"}
    count, height, width = (arr.shape[axis[c]] for c in "bhw")
    win = _normalise_window(window, height, width, p)
    idx = _band_indices(bands, count, p)
    data = _select(lambda sl: arr[sl], arr.shape, layout, win, idx)
    return SpectralCube(
        data=data,
        band_names=_band_names(None, idx, count),
        nodata_mask=_nodata_mask(data, None),
        source=str(p),
        metadata={"format": "npy", "layout": layout},
    )
