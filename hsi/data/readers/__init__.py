"""Readers: every supported file format becomes a :class:`SpectralCube` (bands × height × width).

One entry point, :func:`read_cube`, dispatches on the file suffix so that the rest of hsi
never cares whether a scene came as a MATLAB file from the community benchmarks, a NumPy
dump, an ENVI cube from an airborne campaign or a (tiled) GeoTIFF from a satellite archive.
Problems a user can fix are raised as one-line :class:`~hsi.errors.DataError` messages that
name the file and say what to do; window and band selection are honoured as early as the
format allows so that large scenes are not read whole. Unmixing releases that store a
``bands x pixels`` matrix go through :func:`read_pixels_matrix`, given the image shape.
One module per format (``mat``, ``npy``, ``raster``, ``envi``); ``_common`` holds the
checks they share.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from hsi.data.cube import SpectralCube
from hsi.data.readers._common import (
    PathLike,
    WindowLike,
    _as_int_labels,
    _check_layout,
    _cple_base,
    _existing,
    _normalise_window,
    _quiet,
)
from hsi.data.readers.envi import (
    _ENVI_BINARY_SUFFIXES,
    _envi_header_beside,
    _read_envi_cube,
    read_envi_header,
)
from hsi.data.readers.mat import (
    _read_mat_cube,
    _read_mat_labels,
    mat_variables,
    read_pixels_matrix,
)
from hsi.data.readers.npy import _load_npy, _read_npy_cube
from hsi.data.readers.raster import _read_mosaic, _read_raster_cube, check_tiles_compatible
from hsi.errors import ConfigError, DataError

__all__ = [
    "SUPPORTED_SUFFIXES",
    "check_tiles_compatible",
    "mat_variables",
    "read_cube",
    "read_envi_header",
    "read_labels",
    "read_pixels_matrix",
]

_MAT_SUFFIXES = (".mat",)

_NPY_SUFFIXES = (".npy",)

_RASTER_SUFFIXES = (".tif", ".tiff", ".vrt")

SUPPORTED_SUFFIXES = (
    ".mat (MATLAB v5/v7.3)",
    ".npy",
    ".tif/.tiff/.vrt (GeoTIFF/GDAL)",
    ".hdr (ENVI, with its binary file)",
)

_SUPPORTED_TEXT = (
    ", ".join(SUPPORTED_SUFFIXES) + " or any other raster GDAL can open; "
    "convert the file to one of these"
)


def read_cube(
    path: PathLike | Sequence[PathLike],
    variable: str | None = None,
    *,
    layout: str | None = None,
    window: WindowLike | None = None,
    bands: Sequence[int] | None = None,
) -> SpectralCube:
    """Read a hyperspectral cube from any supported file into a bands × height × width cube.

    Args:
        path: a ``.mat``/``.npy``/GeoTIFF/``.vrt``/ENVI file, or a list of GeoTIFF tiles of
            one scene (mosaicked with ``rasterio.merge``).
        variable: the MATLAB variable holding the cube; found automatically when the file
            holds a single 3-D numeric array.
        layout: axis order of ``.mat``/``.npy`` arrays, a permutation of ``"bhw"``; the
            community files (Indian Pines, Salinas, Pavia) are ``"hwb"``, the default.
            GeoTIFF and ENVI files define their own order, so only ``None``/``"bhw"`` is
            accepted for them.
        window: ``rasterio.windows.Window`` or ``((row0, row1), (col0, col1))`` to read a
            part of the image; the cube's transform is then the window's.
        bands: 0-based band indices to read (in the order given).

    Values are returned as stored (no scale/offset applied): GeoTIFF scales/offsets are in
    ``metadata["scales"]``/``metadata["offsets"]``.
    """
    if isinstance(path, (list, tuple)):
        if variable is not None:
            raise ConfigError("variable= applies to .mat files only, not to a list of tiles")
        _check_layout(layout, allow_file_order=False)
        paths = [_existing(p) for p in path]
        if not paths:
            raise ConfigError("read_cube got an empty list of tiles; pass at least one file")
        if len(paths) == 1:
            return read_cube(paths[0], window=window, bands=bands)
        return _read_mosaic(paths, window=window, bands=bands)

    p = _existing(path)
    fmt = _format_of(p)
    if fmt in ("raster", "envi"):
        _check_layout(layout, allow_file_order=False)
    if variable is not None and fmt != "mat":
        raise ConfigError(f"{p}: variable= applies to .mat files only; drop it for this file")
    if fmt == "mat":
        return _read_mat_cube(p, variable, _check_layout(layout), window, bands)
    if fmt == "npy":
        return _read_npy_cube(p, _check_layout(layout), window, bands)
    if fmt == "envi":
        return _read_envi_cube(p, window, bands)
    return _read_raster_cube(p, window, bands)


def read_labels(
    path: PathLike,
    variable: str | None = None,
    *,
    window: WindowLike | None = None,
) -> np.ndarray:
    """Read a ground-truth label map as an ``int64`` (height, width) array.

    ``.mat`` files: the single 2-D integer-valued array is found automatically. GeoTIFF
    and ENVI: band 1. Float labels are accepted when every value is a whole number (many
    community files store classes as doubles); anything else is a DataError.
    """
    p = _existing(path)
    fmt = _format_of(p)
    if variable is not None and fmt != "mat":
        raise ConfigError(f"{p}: variable= applies to .mat files only; drop it for this file")
    if fmt == "mat":
        arr = _read_mat_labels(p, variable)
    elif fmt == "npy":
        arr = _load_npy(p)
    elif fmt == "envi":
        return _as_int_labels(_read_envi_cube(p, window, [0]).data[0], p)
    else:
        return _as_int_labels(_read_raster_cube(p, window, [0], labels=True).data[0], p)

    if arr.ndim == 3 and 1 in (arr.shape[0], arr.shape[-1]):
        arr = arr.reshape([n for n in arr.shape if n != 1] or [1, 1])
    if arr.ndim != 2:
        raise DataError(
            f"{p}: a label map must be 2-D (height, width), got shape {arr.shape}; "
            "pass the ground-truth file, not the cube"
        )
    win = _normalise_window(window, arr.shape[0], arr.shape[1], p)
    if win is not None:
        r0, r1, c0, c1 = win
        arr = arr[r0:r1, c0:c1]
    return _as_int_labels(np.asarray(arr), p)


def _format_of(p: Path) -> str:
    """One of ``mat``, ``npy``, ``envi``, ``raster`` — or a DataError listing what we read."""
    suffix = p.suffix.lower()
    if suffix in _MAT_SUFFIXES:
        return "mat"
    if suffix in _NPY_SUFFIXES:
        return "npy"
    if suffix == ".hdr":
        return "envi"
    if suffix in _RASTER_SUFFIXES:
        return "raster"
    if suffix in _ENVI_BINARY_SUFFIXES and _envi_header_beside(p) is not None:
        return "envi"
    # Anything else: accept it if GDAL can open it (ERDAS .img, netCDF, JP2, ...).
    import rasterio
    from rasterio.errors import RasterioError

    try:
        with _quiet(), rasterio.open(p):
            pass
    except (RasterioError, _cple_base()):
        raise DataError(
            f"{p}: unsupported file type '{suffix or '(no suffix)'}'; hsi reads {_SUPPORTED_TEXT}"
        ) from None
    return "raster"
