"""Readers: every supported file format becomes a :class:`SpectralCube` (bands × height × width).

One entry point, :func:`read_cube`, dispatches on the file suffix so that the rest of hsi
never cares whether a scene came as a MATLAB file from the community benchmarks, a NumPy
dump, an ENVI cube from an airborne campaign or a (tiled) GeoTIFF from a satellite archive.
Problems a user can fix are raised as one-line :class:`~hsi.errors.DataError` messages that
name the file and say what to do; window and band selection are honoured as early as the
format allows so that large scenes are not read whole.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np

from hsi.data.cube import SpectralCube
from hsi.errors import ConfigError, DataError

if TYPE_CHECKING:  # pragma: no cover - typing only
    from rasterio.io import DatasetReader
    from rasterio.windows import Window

__all__ = [
    "read_cube",
    "read_labels",
    "mat_variables",
    "read_envi_header",
    "SUPPORTED_SUFFIXES",
]

PathLike = Union[str, "os.PathLike[str]"]
WindowLike = Union["Window", tuple[tuple[int, int], tuple[int, int]]]

_MAT_SUFFIXES = (".mat",)
_NPY_SUFFIXES = (".npy",)
_RASTER_SUFFIXES = (".tif", ".tiff", ".vrt")
_ENVI_BINARY_SUFFIXES = ("", ".img", ".dat", ".raw", ".bsq", ".bil", ".bip")
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

# MATLAB class names -> NumPy dtype names (what mat_variables reports for numeric arrays).
_MATLAB_CLASSES = {
    "double": "float64",
    "single": "float32",
    "int8": "int8",
    "int16": "int16",
    "int32": "int32",
    "int64": "int64",
    "uint8": "uint8",
    "uint16": "uint16",
    "uint32": "uint32",
    "uint64": "uint64",
    "logical": "bool",
}
_NUMERIC_KINDS = "biuf"  # bool, int, uint, float

# ENVI "data type" codes -> NumPy dtypes (complex types 6 and 9 are not spectral cubes).
_ENVI_DTYPES = {
    1: "u1",
    2: "i2",
    3: "i4",
    4: "f4",
    5: "f8",
    12: "u2",
    13: "u4",
    14: "i8",
    15: "u8",
}
_ENVI_INTERLEAVE_LAYOUT = {"bsq": "bhw", "bil": "hbw", "bip": "hwb"}

# Wavelength unit names -> factor to nanometres.
_UNIT_TO_NM = {
    "nanometers": 1.0,
    "nanometer": 1.0,
    "nanometres": 1.0,
    "nanometre": 1.0,
    "nm": 1.0,
    "micrometers": 1000.0,
    "micrometer": 1000.0,
    "micrometres": 1000.0,
    "micrometre": 1000.0,
    "microns": 1000.0,
    "micron": 1000.0,
    "um": 1000.0,
    "µm": 1000.0,
    "μm": 1000.0,
    "millimeters": 1e6,
    "millimetres": 1e6,
    "mm": 1e6,
}


# --------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------


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


def mat_variables(path: PathLike) -> dict[str, tuple[tuple[int, ...], str]]:
    """Variables of a MATLAB file as ``name -> (shape, dtype)`` without loading the data.

    Shapes are in MATLAB order for both v5 and v7.3 (HDF5) files; numeric classes are
    reported as NumPy dtype names (``double`` -> ``float64``), others by their MATLAB class
    (``struct``, ``cell``, ``char``, ``sparse``). This is the MATLAB class: scipy may hand
    back the smaller type the values were stored in (Indian Pines' doubles read as uint16),
    and read_cube keeps that stored type rather than inflating it.
    """
    p = _existing(path)
    if _is_hdf5(p):
        return _mat73_variables(p)
    import scipy.io

    try:
        entries = scipy.io.whosmat(str(p))
    except NotImplementedError:  # v7.3 that h5py did not recognise (should not happen)
        return _mat73_variables(p)
    except Exception as exc:  # scipy raises ValueError/TypeError/OSError on corrupt files
        raise DataError(
            f"{p}: not a readable MATLAB file ({_one_line(exc)}); "
            "re-download it or re-save it in MATLAB with save(..., '-v7')"
        ) from exc
    return {
        name: (tuple(int(n) for n in shape), _MATLAB_CLASSES.get(cls, cls))
        for name, shape, cls in entries
    }


def read_envi_header(path: PathLike) -> dict[str, str]:
    """Parse an ENVI ``.hdr`` into ``key -> raw value`` (lower-case keys, braces removed).

    Our own small parser so that hsi does not depend on spectral python; multi-line
    ``{...}`` values (wavelength lists, band names, map info) are joined.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise DataError(f"{p}: cannot read the ENVI header ({_one_line(exc)})") from exc
    lines = text.splitlines()
    first = next((ln.strip() for ln in lines if ln.strip()), "")
    if not first.upper().startswith("ENVI"):
        raise DataError(
            f"{p}: not an ENVI header (the first line must be 'ENVI'); "
            "pass the .hdr written with the cube"
        )
    header: dict[str, str] = {}
    i = next(n for n, ln in enumerate(lines) if ln.strip()) + 1
    while i < len(lines):
        line = lines[i]
        i += 1
        if "=" not in line or line.lstrip().startswith(";"):
            continue
        key, value = line.split("=", 1)
        value = value.strip()
        if value.startswith("{"):
            while "}" not in value and i < len(lines):
                value += "\n" + lines[i]
                i += 1
            value = value[1 : value.rfind("}")] if "}" in value else value[1:]
        header[" ".join(key.strip().lower().split())] = value.strip()
    return header


# --------------------------------------------------------------------------------------
# dispatch and argument checks
# --------------------------------------------------------------------------------------


def _existing(path: PathLike) -> Path:
    """The path, or a DataError that says where we looked (relative paths are confusing)."""
    try:
        p = Path(os.fspath(path)).expanduser()
    except TypeError as exc:
        raise ConfigError(f"expected a file path, got {path!r}") from exc
    if not p.exists():
        raise DataError(
            f"{p}: file not found (looked for {p.resolve()}); check the path "
            "or download the data set"
        )
    if p.is_dir():
        raise DataError(f"{p}: is a directory; pass the data file inside it")
    return p


def _envi_header_beside(p: Path) -> Path | None:
    """The ``.hdr`` that belongs to binary file ``p`` (``x.img`` -> ``x.hdr`` or ``x.img.hdr``)."""
    for cand in (p.with_suffix(".hdr"), Path(str(p) + ".hdr")):
        if cand != p and cand.is_file():
            return cand
    return None


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


def _check_layout(layout: str | None, *, allow_file_order: bool = True) -> str:
    """Validate a layout string; returns the effective layout (default ``"hwb"``)."""
    if layout is None:
        return "hwb"
    if not isinstance(layout, str) or sorted(layout.lower()) != ["b", "h", "w"]:
        raise ConfigError(
            f"layout={layout!r} is not a permutation of 'b', 'h', 'w'; use 'hwb' for "
            "height×width×bands arrays (Indian Pines, Salinas, Pavia) or 'bhw' for band-first"
        )
    layout = layout.lower()
    if not allow_file_order and layout != "bhw":
        raise ConfigError(
            f"layout={layout!r} applies to .mat/.npy arrays only; GeoTIFF and ENVI files "
            "define their own band order, so drop layout="
        )
    return layout


def _normalise_window(
    window: WindowLike | None, height: int, width: int, source: Path | str
) -> tuple[int, int, int, int] | None:
    """``(row0, row1, col0, col1)`` of a window checked against the image size, or None."""
    if window is None:
        return None
    try:
        from rasterio.windows import Window

        if isinstance(window, Window):
            r0, c0 = window.row_off, window.col_off
            r1, c1 = r0 + window.height, c0 + window.width
        else:
            (r0, r1), (c0, c1) = window  # type: ignore[misc]
        vals = [float(v) for v in (r0, r1, c0, c1)]
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"window={window!r} is not a rasterio Window or ((row0, row1), (col0, col1))"
        ) from exc
    if any(v != math.floor(v) for v in vals):
        raise ConfigError(f"window={window!r} must have whole-pixel offsets and sizes")
    r0, r1, c0, c1 = (int(v) for v in vals)
    if not (0 <= r0 < r1 <= height and 0 <= c0 < c1 <= width):
        raise DataError(
            f"{source}: window rows {r0}:{r1}, cols {c0}:{c1} is empty or outside the "
            f"{height}×{width} image; pick a window inside it"
        )
    return r0, r1, c0, c1


def _band_indices(bands: Sequence[int] | None, count: int, source: Path | str) -> list[int] | None:
    """Checked 0-based band indices (None means all bands)."""
    if bands is None:
        return None
    try:
        idx = [int(_operator_index(b)) for b in bands]
    except TypeError as exc:
        raise ConfigError(f"bands={bands!r} must be a sequence of integer band indices") from exc
    if not idx:
        raise ConfigError("bands= is empty; pass at least one 0-based band index")
    bad = [i for i in idx if not 0 <= i < count]
    if bad:
        raise DataError(
            f"{source}: band indices {bad} out of range for {count} bands; "
            f"bands= takes 0-based indices 0..{count - 1}"
        )
    return idx


def _operator_index(value: Any) -> int:
    """``operator.index`` that also accepts NumPy integers (and rejects floats/bools)."""
    import operator

    if isinstance(value, (bool, np.bool_)):
        raise TypeError("bool is not a band index")
    return operator.index(value)


def _window_transform(transform: Any, win: tuple[int, int, int, int] | None) -> Any:
    if transform is None or win is None:
        return transform
    from rasterio.windows import Window
    from rasterio.windows import transform as wtransform

    r0, r1, c0, c1 = win
    return wtransform(Window(c0, r0, c1 - c0, r1 - r0), transform)


def _select(
    get: Callable[[tuple[slice, slice, slice]], np.ndarray],
    shape: tuple[int, ...],
    layout: str,
    win: tuple[int, int, int, int] | None,
    idx: list[int] | None,
) -> np.ndarray:
    """Read only the window/bands of a lazily indexable array stored in ``layout`` order.

    ``get`` takes one slice per stored axis, so memory maps and HDF5 datasets touch only
    the requested part. Returns a C-contiguous, native-endian bands × height × width copy.
    """
    axis = {ch: layout.index(ch) for ch in "bhw"}
    slices: list[slice] = [slice(None)] * 3
    if win is not None:
        r0, r1, c0, c1 = win
        slices[axis["h"]] = slice(r0, r1)
        slices[axis["w"]] = slice(c0, c1)
    if idx is not None:
        slices[axis["b"]] = slice(min(idx), max(idx) + 1)
    part = np.asarray(get(tuple(slices)))  # type: ignore[arg-type]
    part = np.transpose(part, (axis["b"], axis["h"], axis["w"]))
    if idx is not None:
        lo = min(idx)
        if idx != list(range(lo, max(idx) + 1)):
            part = part[[i - lo for i in idx]]
    return np.array(part, dtype=part.dtype.newbyteorder("="), order="C", copy=True)


def _nodata_mask(data: np.ndarray, nodata: float | None) -> np.ndarray | None:
    """``True`` where ALL bands equal ``nodata`` (or are NaN), the usual no-data convention.

    "All" rather than "any" matters: EnMAP L2A marks whole bad bands (e.g. 130-135) with
    the no-data value, so an "any" rule would mask every pixel. Float pixels that are NaN
    in every band are no-data even without a declared no-data value. Returns None when no
    rule applies (no nodata value and no all-NaN pixel). Loops over bands to avoid a full
    boolean copy of the cube.
    """
    is_float = np.issubdtype(data.dtype, np.floating)
    if nodata is not None and not math.isnan(float(nodata)):
        mask = np.ones(data.shape[1:], dtype=bool)
        for band in data:
            mask &= band == nodata
            if not mask.any():
                break
        return mask
    if not is_float:
        return None if nodata is None else np.zeros(data.shape[1:], dtype=bool)
    mask = np.ones(data.shape[1:], dtype=bool)
    for band in data:
        mask &= np.isnan(band)
        if not mask.any():
            break
    if nodata is None and not mask.any():
        return None
    return mask


def _one_line(exc: BaseException) -> str:
    """The most useful one-line reason of an exception (GDAL puts it in ``__cause__``)."""
    msg = str(exc)
    cause = exc.__cause__ or exc.__context__
    if cause is not None and ("previous exception" in msg or not msg):
        msg = str(cause)
    return " ".join(msg.split()) or type(exc).__name__


def _cple_base() -> type[BaseException]:
    try:
        from rasterio.errors import CPLE_BaseError  # type: ignore[attr-defined]
    except ImportError:  # rasterio < 1.4 keeps it private
        from rasterio._err import CPLE_BaseError
    return CPLE_BaseError


class _quiet(warnings.catch_warnings):
    """Silence rasterio's NotGeoreferencedWarning: a plain image is fine, transform=None."""

    def __enter__(self) -> Any:
        out = super().__enter__()
        from rasterio.errors import NotGeoreferencedWarning

        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        return out


# --------------------------------------------------------------------------------------
# wavelengths
# --------------------------------------------------------------------------------------


def _parse_list(value: str) -> list[str]:
    """``"{a, b, c}"`` or ``"a, b, c"`` -> ``["a", "b", "c"]``."""
    value = value.strip()
    if value.startswith("{"):
        value = value[1:]
    if value.endswith("}"):
        value = value[:-1]
    return [v.strip() for v in value.split(",") if v.strip()]


def _floats(values: Iterable[str]) -> list[float] | None:
    try:
        return [float(v) for v in values]
    except (TypeError, ValueError):
        return None


def _to_nm(values: Sequence[float] | None, units: str | None) -> np.ndarray | None:
    """Wavelengths in nanometres, or None when the units say they are not wavelengths.

    Missing units are guessed from magnitude (below 100 -> micrometres), which matches
    every sensor from 350 nm to 2.5 µm; explicit "Unknown"/"Index" units are not trusted.
    """
    if not values:
        return None
    arr = np.asarray(values, dtype=np.float64)
    key = (units or "").strip().lower()
    if not key:
        factor = 1000.0 if np.nanmax(arr) < 100 else 1.0
    elif key in _UNIT_TO_NM:
        factor = _UNIT_TO_NM[key]
    else:
        return None
    return arr * factor


def _lower(tags: dict[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in tags.items()}


def _raster_spectral_tags(src: DatasetReader) -> dict[str, Any]:
    """Wavelengths (nm), FWHM (nm) and bad-band list of all bands of a GDAL dataset.

    Looked up, in order, in the ENVI metadata domain (``{v1, v2, ...}`` lists, as written
    by GDAL's ENVI driver and by hsi), per-band tags (``wavelength``/``WAVELENGTH`` +
    ``wavelength_units``; EnMAP L2A GeoTIFFs keep them here), the default domain, and
    GDAL >= 3.10's per-band ``IMAGERY`` domain (``CENTRAL_WAVELENGTH_UM``).
    """
    count = src.count
    out: dict[str, Any] = {}
    default = _lower(src.tags())
    envi = _lower(src.tags(ns="ENVI")) if "ENVI" in (src.tag_namespaces() or []) else {}
    band_tags = [_lower(src.tags(b)) for b in range(1, count + 1)]

    def from_lists(key: str) -> tuple[list[float] | None, str | None]:
        for dom in (envi, default):
            if key in dom:
                vals = _floats(_parse_list(dom[key]))
                if vals is not None and len(vals) == count:
                    return vals, dom.get("wavelength_units", dom.get("wavelength units"))
        vals = _floats(bt.get(key, "") for bt in band_tags)
        if vals is not None:
            units = band_tags[0].get("wavelength_units") or envi.get("wavelength_units")
            return vals, units or default.get("wavelength_units")
        return None, None

    wl, units = from_lists("wavelength")
    if wl is None:
        imagery = [_lower(src.tags(b, ns="IMAGERY")) for b in range(1, count + 1)]
        wl = _floats(t.get("central_wavelength_um", "") for t in imagery)
        units = "micrometers" if wl is not None else None
        fw = _floats(t.get("fwhm_um", "") for t in imagery)
        if fw is not None:
            out["fwhm"] = _to_nm(fw, "micrometers")
    out["wavelengths"] = _to_nm(wl, units)
    if wl is not None and out["wavelengths"] is None:
        out["wavelengths_raw"] = (list(wl), units)
    if "fwhm" not in out:
        fw, _ = from_lists("fwhm")
        if fw is not None and wl is not None:
            # FWHM shares the wavelength units; guess from the wavelengths, not the FWHM.
            factor = None if out["wavelengths"] is None else out["wavelengths"][0] / wl[0]
            if factor is not None and np.isfinite(factor):
                out["fwhm"] = np.asarray(fw) * factor
    bbl, _ = from_lists("bbl")
    if bbl is not None:
        out["bbl"] = [int(v) for v in bbl]
    return out


# --------------------------------------------------------------------------------------
# MATLAB
# --------------------------------------------------------------------------------------


def _is_hdf5(p: Path) -> bool:
    import h5py

    try:
        return bool(h5py.is_hdf5(str(p)))
    except OSError:
        return False


def _decode(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("ascii", "replace")
    if isinstance(value, np.ndarray) and value.dtype.kind == "S":
        return b"".join(value.ravel().tolist()).decode("ascii", "replace")
    return str(value)


def _mat73_variables(p: Path) -> dict[str, tuple[tuple[int, ...], str]]:
    import h5py

    out: dict[str, tuple[tuple[int, ...], str]] = {}
    try:
        with h5py.File(p, "r") as f:
            for name, obj in f.items():
                if name.startswith("#"):  # #refs#, #subsystem#: MATLAB internals
                    continue
                attrs = obj.attrs
                cls = _decode(attrs["MATLAB_class"]) if "MATLAB_class" in attrs else None
                if isinstance(obj, h5py.Group):
                    kind = "sparse" if "MATLAB_sparse" in attrs else (cls or "group")
                    out[name] = ((), kind)
                    continue
                shape = tuple(int(n) for n in obj.shape[::-1])
                if "MATLAB_empty" in attrs and attrs["MATLAB_empty"]:
                    shape = (0,) * max(len(shape), 2)
                if obj.dtype.names and {"real", "imag"} <= set(obj.dtype.names):
                    kind = "complex"
                elif cls is None:
                    kind = obj.dtype.name if obj.dtype.kind in _NUMERIC_KINDS else str(obj.dtype)
                else:
                    kind = _MATLAB_CLASSES.get(cls, cls)
                out[name] = (shape, kind)
    except OSError as exc:
        raise DataError(
            f"{p}: not a readable MATLAB v7.3 (HDF5) file ({_one_line(exc)}); re-download it"
        ) from exc
    return out


def _is_numeric_kind(kind: str) -> bool:
    try:
        return np.dtype(kind).kind in _NUMERIC_KINDS
    except TypeError:
        return False


def _describe(variables: dict[str, tuple[tuple[int, ...], str]]) -> str:
    return (
        ", ".join(f"{n} {'×'.join(map(str, s)) or '?'} {k}" for n, (s, k) in variables.items())
        or "none"
    )


def _choose_variable(
    p: Path,
    variables: dict[str, tuple[tuple[int, ...], str]],
    variable: str | None,
    ndim: int,
    what: str,
    integer_valued: Callable[[str], bool] | None = None,
) -> str:
    """The variable to read: the one named, or the single numeric ``ndim``-D array."""
    if variable is not None:
        if variable not in variables:
            raise DataError(
                f"{p}: no variable {variable!r}; the file holds {_describe(variables)}; "
                "pass one of these as variable="
            )
        shape, kind = variables[variable]
        if not _is_numeric_kind(kind):
            raise DataError(
                f"{p}: variable {variable!r} is a {kind}, not a numeric array; "
                f"pass the variable holding the {what} as variable="
            )
        return variable
    cands = [
        n
        for n, (s, k) in variables.items()
        if len(s) == ndim and min(s, default=0) > 1 and _is_numeric_kind(k) and k != "bool"
    ]
    if ndim == 2:  # a 2-D label map may be logical (binary target maps)
        cands += [
            n
            for n, (s, k) in variables.items()
            if len(s) == 2 and min(s) > 1 and k == "bool" and n not in cands
        ]
    if len(cands) > 1 and integer_valued is not None:
        cands = [n for n in cands if integer_valued(n)] or cands
    if len(cands) == 1:
        return cands[0]
    if not cands:
        raise DataError(
            f"{p}: no {ndim}-D numeric array found for the {what} (variables: "
            f"{_describe(variables)}); pass the right file or variable="
        )
    raise DataError(
        f"{p}: several candidate {what} arrays ({', '.join(cands)}); "
        "pass the one to use as variable="
    )


class _MatFile:
    """Lazy access to the variables of a v5 or v7.3 MATLAB file, in MATLAB axis order."""

    def __init__(self, p: Path) -> None:
        self.path = p
        self.v73 = _is_hdf5(p)
        self.variables = mat_variables(p)
        self._v5_cache: dict[str, np.ndarray] = {}

    @property
    def format(self) -> str:
        return "mat-v7.3" if self.v73 else "mat-v5"

    def _v5(self, name: str) -> np.ndarray:
        if name not in self._v5_cache:
            import scipy.io

            try:
                arr = scipy.io.loadmat(str(self.path), variable_names=[name])[name]
            except Exception as exc:
                raise DataError(
                    f"{self.path}: cannot read variable {name!r} ({_one_line(exc)}); "
                    "the file may be truncated or corrupt, re-download it"
                ) from exc
            self._v5_cache[name] = self._check(name, np.asarray(arr))
        return self._v5_cache[name]

    def _check(self, name: str, arr: np.ndarray) -> np.ndarray:
        if arr.dtype.kind not in _NUMERIC_KINDS:
            raise DataError(
                f"{self.path}: variable {name!r} holds {arr.dtype} values, not numbers; "
                "pass the variable holding the numeric cube as variable="
            )
        return arr

    def shape(self, name: str) -> tuple[int, ...]:
        return self.variables[name][0]

    def read(self, name: str, slices: tuple[slice, ...] | None = None) -> np.ndarray:
        """The variable (or a slice of it, given in MATLAB axis order)."""
        if not self.v73:
            arr = self._v5(name)
            return arr if slices is None else arr[slices]
        import h5py

        try:
            with h5py.File(self.path, "r") as f:
                ds = f[name]
                if not isinstance(ds, h5py.Dataset) or ds.dtype.kind not in _NUMERIC_KINDS:
                    raise DataError(
                        f"{self.path}: variable {name!r} is not a numeric array; "
                        "pass the variable holding the cube as variable="
                    )
                # h5py sees MATLAB's column-major H×W×B array as B×W×H: reverse the slices,
                # read, and transpose back so v5 and v7.3 files give the same array.
                part = ds[tuple(reversed(slices))] if slices is not None else ds[()]
                is_logical = _decode(ds.attrs.get("MATLAB_class", b"")) == "logical"
        except OSError as exc:
            raise DataError(
                f"{self.path}: cannot read variable {name!r} ({_one_line(exc)}); "
                "the file may be truncated or corrupt, re-download it"
            ) from exc
        part = np.asarray(part).T
        return part.astype(bool) if is_logical else part

    def is_integer_valued(self, name: str) -> bool:
        arr = self.read(name)
        return arr.dtype.kind in "biu" or bool(np.all(np.isfinite(arr) & (arr == np.round(arr))))


def _read_mat_cube(
    p: Path,
    variable: str | None,
    layout: str,
    window: WindowLike | None,
    bands: Sequence[int] | None,
) -> SpectralCube:
    mat = _MatFile(p)
    name = _choose_variable(p, mat.variables, variable, 3, "cube")
    shape = mat.shape(name)
    if len(shape) != 3:
        raise DataError(
            f"{p}: variable {name!r} has shape {shape}, not a 3-D cube; "
            "pass the variable holding the cube as variable="
        )
    axis = {ch: layout.index(ch) for ch in "bhw"}
    count, height, width = (shape[axis[c]] for c in "bhw")
    win = _normalise_window(window, height, width, p)
    idx = _band_indices(bands, count, p)
    data = _select(lambda sl: mat.read(name, sl), shape, layout, win, idx)
    return SpectralCube(
        data=data,
        band_names=_band_names(None, idx, count),
        nodata_mask=_nodata_mask(data, None),
        source=str(p),
        metadata={"format": mat.format, "variable": name, "layout": layout},
    )


def _read_mat_labels(p: Path, variable: str | None) -> np.ndarray:
    mat = _MatFile(p)
    name = _choose_variable(
        p, mat.variables, variable, 2, "label map", integer_valued=mat.is_integer_valued
    )
    return mat.read(name)


# --------------------------------------------------------------------------------------
# NumPy
# --------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------
# labels
# --------------------------------------------------------------------------------------


def _as_int_labels(arr: np.ndarray, p: Path) -> np.ndarray:
    """int64 labels; whole-number floats are accepted, anything fractional is an error."""
    arr = np.asarray(arr)
    if arr.dtype.kind in "biu":
        return arr.astype(np.int64)
    if arr.dtype.kind != "f":
        raise DataError(f"{p}: labels hold {arr.dtype} values, not class numbers")
    finite = np.isfinite(arr)
    if not finite.all():
        raise DataError(
            f"{p}: labels hold {int((~finite).sum())} NaN/inf values; "
            "use 0 (or another class number) for unlabelled pixels"
        )
    frac = arr != np.round(arr)
    if frac.any():
        example = arr[frac].flat[0]
        raise DataError(
            f"{p}: labels hold non-integer values (e.g. {example:g}); pass a class map "
            "with whole class numbers, not a probability or abundance map"
        )
    return arr.astype(np.int64)


def _band_names(names: Sequence[str | None] | None, idx: list[int] | None, count: int) -> list[str]:
    """Names of the selected bands; unnamed bands keep their original 1-based number."""
    sel = idx if idx is not None else list(range(count))
    out = []
    for i in sel:
        name = names[i] if names is not None and i < len(names) else None
        out.append(name.strip() if name and name.strip() else f"band_{i + 1}")
    return out


# --------------------------------------------------------------------------------------
# GeoTIFF / GDAL rasters
# --------------------------------------------------------------------------------------


def _open_raster(p: Path) -> DatasetReader:
    import rasterio
    from rasterio.errors import RasterioError

    try:
        with _quiet():
            return rasterio.open(p)
    except (RasterioError, _cple_base()) as exc:
        raise DataError(
            f"{p}: cannot open as a raster ({_one_line(exc)}); the file may be truncated "
            "or corrupt — re-download or re-export it"
        ) from exc


def _georef(src: DatasetReader) -> tuple[Any, Any]:
    """CRS and transform, with rasterio's identity stand-in for "none" mapped to None."""
    transform = src.transform
    if src.crs is None and transform.is_identity:
        transform = None
    return src.crs, transform


def _read_raster_cube(
    p: Path,
    window: WindowLike | None,
    bands: Sequence[int] | None,
    *,
    labels: bool = False,
) -> SpectralCube:
    from rasterio.enums import MaskFlags
    from rasterio.errors import RasterioError
    from rasterio.windows import Window

    src = _open_raster(p)
    with src:
        count = src.count
        if count == 0:
            raise DataError(f"{p}: the raster has no bands; pass the image file")
        idx = _band_indices(bands, count, p)
        win = _normalise_window(window, src.height, src.width, p)
        rwin = None if win is None else Window(win[2], win[0], win[3] - win[2], win[1] - win[0])
        indexes = [i + 1 for i in idx] if idx is not None else list(range(1, count + 1))
        try:
            with _quiet():
                data = src.read(indexes=indexes, window=rwin)
                dataset_mask = None
                flags = [src.mask_flag_enums[i - 1] for i in indexes]
                if all(MaskFlags.per_dataset in f for f in flags) and not any(
                    MaskFlags.nodata in f for f in flags
                ):
                    dataset_mask = src.dataset_mask(window=rwin) == 0
        except (RasterioError, _cple_base()) as exc:
            raise DataError(
                f"{p}: reading the pixels failed ({_one_line(exc)}); the file is probably "
                "truncated or corrupt — re-download or re-export it"
            ) from exc
        if data.dtype.kind not in _NUMERIC_KINDS:
            raise DataError(f"{p}: holds {data.dtype} pixels, not real numbers")
        crs, transform = _georef(src)
        if rwin is not None and transform is not None:
            transform = src.window_transform(rwin)
        nodata = src.nodata
        meta: dict[str, Any] = {"format": "raster", "driver": src.driver}
        if labels:
            spectral: dict[str, Any] = {}
        else:
            spectral = _raster_spectral_tags(src)
            sel = [i - 1 for i in indexes]
            meta["scales"] = [float(src.scales[i]) for i in sel]
            meta["offsets"] = [float(src.offsets[i]) for i in sel]
            meta["tags"] = dict(src.tags())
            for key in ("fwhm", "bbl"):
                if spectral.get(key) is not None:
                    meta[key] = [spectral[key][i] for i in sel]
            if "wavelengths_raw" in spectral:
                meta["wavelengths_raw"] = spectral["wavelengths_raw"]
        names = list(src.descriptions)

    mask = _nodata_mask(data, nodata)
    if dataset_mask is not None and dataset_mask.any():
        mask = dataset_mask if mask is None else (mask | dataset_mask)
    wl = spectral.get("wavelengths")
    return SpectralCube(
        data=data,
        wavelengths=None if wl is None else wl[[i - 1 for i in indexes]],
        band_names=_band_names(names, idx, count),
        nodata_mask=mask,
        crs=crs,
        transform=transform,
        nodata=None if nodata is None else float(nodata),
        source=str(p),
        metadata=meta,
    )


def check_tiles_compatible(tiles: Sequence[tuple[str, Any, int, tuple[float, float]]]) -> None:
    """Raise unless every tile ``(source, crs, band count, (xres, yres))`` matches the first.

    The one rule for mosaicking tiles of one scene, whether they are merged in memory
    (:func:`read_cube` with a list) or read window by window (scene prediction).
    """
    first_src, crs, count, res = tiles[0]
    first = Path(first_src).name
    for src, t_crs, t_count, t_res in tiles[1:]:
        if t_crs != crs:
            raise DataError(
                f"{src}: CRS {t_crs} differs from {first}'s {crs}; reproject the "
                "tiles to one CRS before mosaicking"
            )
        if t_count != count:
            raise DataError(
                f"{src}: {t_count} bands but {first} has {count}; "
                "mosaic only tiles of the same product"
            )
        if not np.allclose(np.abs(t_res), np.abs(res)):
            raise DataError(
                f"{src}: pixel size {tuple(t_res)} differs from {first}'s {tuple(res)}; "
                "resample the tiles to one grid before mosaicking"
            )


def _read_mosaic(
    paths: list[Path], window: WindowLike | None, bands: Sequence[int] | None
) -> SpectralCube:
    """Mosaic GeoTIFF tiles of one scene; gaps between tiles become no-data."""
    from rasterio.errors import RasterioError
    from rasterio.merge import merge
    from rasterio.windows import from_bounds

    first = paths[0]
    with ExitStack() as stack:
        srcs = [stack.enter_context(_open_raster(p)) for p in paths]
        ref = srcs[0]
        check_tiles_compatible(
            [(str(p), s.crs, s.count, s.res) for p, s in zip(paths, srcs, strict=True)]
        )
        idx = _band_indices(bands, ref.count, first)
        indexes = [i + 1 for i in idx] if idx is not None else None
        nodata = ref.nodata
        try:
            with _quiet():
                data, transform = merge(srcs, indexes=indexes, nodata=nodata)
        except (RasterioError, _cple_base()) as exc:
            raise DataError(
                f"{first}: mosaicking {len(paths)} tiles failed ({_one_line(exc)}); "
                "check that every tile opens and reads on its own"
            ) from exc
        covered = np.zeros(data.shape[1:], dtype=bool)
        for s in srcs:
            w = from_bounds(*s.bounds, transform=transform).round_offsets().round_lengths()
            r0, c0 = max(int(w.row_off), 0), max(int(w.col_off), 0)
            covered[r0 : r0 + int(w.height), c0 : c0 + int(w.width)] = True
        spectral = _raster_spectral_tags(ref)
        names = list(ref.descriptions)
        count = ref.count
        crs = ref.crs
        sel = idx if idx is not None else list(range(count))
        meta: dict[str, Any] = {
            "format": "mosaic",
            "tiles": [str(p) for p in paths],
            "scales": [float(ref.scales[i]) for i in sel],
            "offsets": [float(ref.offsets[i]) for i in sel],
        }
        for key in ("fwhm", "bbl"):
            if spectral.get(key) is not None:
                meta[key] = [spectral[key][i] for i in sel]

    win = _normalise_window(window, data.shape[1], data.shape[2], first)
    if win is not None:
        r0, r1, c0, c1 = win
        data = np.ascontiguousarray(data[:, r0:r1, c0:c1])
        covered = covered[r0:r1, c0:c1]
        transform = _window_transform(transform, win)
    mask = _nodata_mask(data, nodata)
    mask = ~covered if mask is None else (mask | ~covered)
    wl = spectral.get("wavelengths")
    return SpectralCube(
        data=data,
        wavelengths=None if wl is None else wl[sel],
        band_names=_band_names(names, idx, count),
        nodata_mask=mask,
        crs=crs,
        transform=transform,
        nodata=None if nodata is None else float(nodata),
        source=f"{first} (+{len(paths) - 1} tiles)",
        metadata=meta,
    )


# --------------------------------------------------------------------------------------
# ENVI
# --------------------------------------------------------------------------------------


def _envi_pair(p: Path) -> tuple[Path, Path]:
    """(header, binary) for a path to either of them."""
    if p.suffix.lower() == ".hdr":
        stem = p.with_suffix("")
        tried = []
        for ext in _ENVI_BINARY_SUFFIXES:
            for cand in dict.fromkeys([Path(str(stem) + ext), Path(str(stem) + ext.upper())]):
                tried.append(cand.name)
                if cand.is_file() and cand != p:
                    return p, cand
        raise DataError(
            f"{p}: the ENVI binary file is missing (looked for {', '.join(dict.fromkeys(tried))} "
            f"in {p.parent}); put the data file next to its header"
        )
    hdr = _envi_header_beside(p)
    assert hdr is not None  # _format_of only routes here when a header exists
    return hdr, p


def _envi_int(header: dict[str, str], key: str, hdr: Path, default: int | None = None) -> int:
    if key not in header:
        if default is not None:
            return default
        raise DataError(f"{hdr}: ENVI header lacks '{key} = ...'; fix or regenerate the header")
    try:
        return int(float(header[key]))
    except ValueError as exc:
        raise DataError(f"{hdr}: ENVI header has '{key} = {header[key]}', not a number") from exc


def _envi_georef(header: dict[str, str], hdr: Path) -> tuple[Any, Any]:
    """Affine transform and CRS from ``map info`` / ``coordinate system string``.

    The reference pixel is 1-based with (1, 1) the upper-left corner of the first pixel,
    as in GDAL's ENVI driver; rotation follows GDAL too. The CRS comes from the WKT in
    ``coordinate system string`` when present, else from UTM/WGS-84 or geographic WGS-84
    map info; any other projection leaves crs None rather than guessing.
    """
    from affine import Affine

    crs = None
    if "coordinate system string" in header:
        from rasterio.crs import CRS
        from rasterio.errors import CRSError

        try:
            crs = CRS.from_wkt(header["coordinate system string"])
        except CRSError:
            crs = None
    if "map info" not in header:
        return None, crs
    items = _parse_list(header["map info"])
    nums = _floats(items[1:7]) if len(items) >= 7 else None
    if nums is None:
        raise DataError(
            f"{hdr}: cannot parse 'map info = {{{header['map info']}}}'; it needs projection, "
            "ref x, ref y, easting, northing, pixel x, pixel y — fix the header"
        )
    refx, refy, east, north, px, py = nums
    x0 = east - (refx - 1.0) * px
    y0 = north + (refy - 1.0) * py
    rotation = 0.0
    for item in items:
        if item.lower().replace(" ", "").startswith("rotation="):
            try:
                rotation = float(item.split("=", 1)[1])
            except ValueError as exc:
                raise DataError(f"{hdr}: map info has '{item}', not a number; fix it") from exc
    if rotation:
        rad = math.radians(rotation)
        cos, sin = math.cos(rad), math.sin(rad)
        transform = Affine(cos * px, sin * px, x0, sin * py, -cos * py, y0)
    else:
        transform = Affine(px, 0.0, x0, 0.0, -py, y0)
    proj = items[0].strip().lower()
    if crs is None:
        from rasterio.crs import CRS

        datum = (
            " ".join(items[9:10]).lower().replace("-", "").replace(" ", "")
            if len(items) > 9
            else ""
        )
        if proj == "utm" and len(items) >= 9 and datum == "wgs84":
            try:
                zone = int(float(items[7]))
                south = items[8].strip().lower().startswith("s")
                crs = CRS.from_epsg((32700 if south else 32600) + zone)
            except ValueError:
                crs = None
        elif proj.startswith("geographic") and "wgs84" in "".join(items[7:]).lower().replace(
            "-", ""
        ):
            crs = CRS.from_epsg(4326)
    return transform, crs


def _read_envi_cube(
    p: Path, window: WindowLike | None, bands: Sequence[int] | None
) -> SpectralCube:
    hdr, binary = _envi_pair(p)
    header = read_envi_header(hdr)
    samples = _envi_int(header, "samples", hdr)
    lines = _envi_int(header, "lines", hdr)
    count = _envi_int(header, "bands", hdr)
    code = _envi_int(header, "data type", hdr)
    offset = _envi_int(header, "header offset", hdr, default=0)
    byte_order = _envi_int(header, "byte order", hdr, default=0)
    if code not in _ENVI_DTYPES:
        raise DataError(
            f"{hdr}: ENVI data type {code} is not supported (complex or unknown); "
            f"hsi reads types {sorted(_ENVI_DTYPES)} — convert the cube to a real type"
        )
    interleave = header.get("interleave", "bsq").strip().lower()
    if interleave not in _ENVI_INTERLEAVE_LAYOUT:
        raise DataError(
            f"{hdr}: unknown interleave '{interleave}'; ENVI uses bsq, bil or bip — fix the header"
        )
    dtype = np.dtype(_ENVI_DTYPES[code]).newbyteorder(">" if byte_order == 1 else "<")
    layout = _ENVI_INTERLEAVE_LAYOUT[interleave]
    dims = {"b": count, "h": lines, "w": samples}
    shape = tuple(dims[c] for c in layout)
    expected = offset + samples * lines * count * dtype.itemsize
    actual = binary.stat().st_size
    if actual < expected:
        raise DataError(
            f"{binary}: holds {actual} bytes but {hdr.name} describes {expected} "
            f"({lines}×{samples}×{count} {dtype.name} + {offset}-byte offset); the file is "
            "truncated or the header is wrong — re-download or fix the header"
        )
    win = _normalise_window(window, lines, samples, p)
    idx = _band_indices(bands, count, p)
    mm = np.memmap(binary, dtype=dtype, mode="r", offset=offset, shape=shape)
    data = _select(lambda sl: mm[sl], shape, layout, win, idx)

    nodata = None
    if "data ignore value" in header:
        try:
            nodata = float(header["data ignore value"])
        except ValueError:
            nodata = None
    transform, crs = _envi_georef(header, hdr)
    transform = _window_transform(transform, win)
    names = _parse_list(header["band names"]) if "band names" in header else None
    wl_values = _floats(_parse_list(header["wavelength"])) if "wavelength" in header else None
    if wl_values is not None and len(wl_values) != count:
        raise DataError(
            f"{hdr}: {len(wl_values)} wavelengths for {count} bands; "
            "fix the header's wavelength list"
        )
    wl = _to_nm(wl_values, header.get("wavelength units"))
    sel = idx if idx is not None else list(range(count))
    meta: dict[str, Any] = {
        "format": "envi",
        "interleave": interleave,
        "header": str(hdr),
        "binary": str(binary),
    }
    fwhm = _floats(_parse_list(header["fwhm"])) if "fwhm" in header else None
    if fwhm is not None and len(fwhm) == count and wl is not None and wl_values:
        meta["fwhm"] = [fwhm[i] * (wl[0] / wl_values[0]) for i in sel]
    bbl = _floats(_parse_list(header["bbl"])) if "bbl" in header else None
    if bbl is not None and len(bbl) == count:
        meta["bbl"] = [int(bbl[i]) for i in sel]
    if "reflectance scale factor" in header:
        meta["reflectance_scale_factor"] = header["reflectance scale factor"]
    if "map info" in header:
        meta["map_info"] = header["map info"]
    return SpectralCube(
        data=data,
        wavelengths=None if wl is None else wl[sel],
        band_names=_band_names(names if names and len(names) == count else None, idx, count),
        nodata_mask=_nodata_mask(data, nodata),
        crs=crs,
        transform=transform,
        nodata=nodata,
        source=str(p),
        metadata=meta,
    )
