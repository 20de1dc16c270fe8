"""What every reader shares: path and argument checks, windowed band selection, no-data masks,
label and band-name clean-up, wavelength units, and GDAL's errors turned into one-line reasons."""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np

from hsi.errors import ConfigError, DataError

if TYPE_CHECKING:  # pragma: no cover - typing only
    from rasterio.windows import Window


PathLike = Union[str, "os.PathLike[str]"]

WindowLike = Union["Window", tuple[tuple[int, int], tuple[int, int]]]

_NUMERIC_KINDS = "biuf"  # bool, int, uint, float

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
