"""MATLAB files (v5 through scipy, v7.3 through h5py): the community benchmark scenes' format.

Both versions give the same arrays in MATLAB axis order; a window or band subset of a v7.3
file is read from disk without loading the whole variable."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hsi.data.cube import SpectralCube
from hsi.data.readers._common import (
    _NUMERIC_KINDS,
    PathLike,
    WindowLike,
    _band_indices,
    _band_names,
    _existing,
    _nodata_mask,
    _normalise_window,
    _one_line,
    _select,
)
from hsi.errors import DataError

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


def read_pixels_matrix(
    path: PathLike,
    variable: str | None = None,
    *,
    shape: Sequence[int],
    shape_source: str = "pixels_shape",
) -> SpectralCube:
    """A ``bands x pixels`` MATLAB matrix (unmixing releases such as Jasper Ridge's ``Y``) as a
    ``(bands, rows, cols)`` cube.

    The pixels run down the columns first (MATLAB order), as those releases store them; the
    file does not say its image shape reliably, so ``shape`` ``(rows, cols)`` is given (the
    dataset card's ``pixels_shape``). ``nRow``/``nCol`` in the file, when present, must agree
    with it (``shape_source`` names where the shape came from in that error). v5 and v7.3
    files both work; ``variable`` is found when the file holds one 2-D numeric array.
    """
    p = _existing(path)
    rows, cols = (int(n) for n in shape)
    mat = _MatFile(p)
    name = _choose_variable(p, mat.variables, variable, 2, "bands x pixels matrix")
    for key, want in (("nRow", rows), ("nCol", cols)):
        if key in mat.variables:
            got = int(np.asarray(mat.read(key)).ravel()[0])
            if got != want:
                raise DataError(
                    f"{p}: the file says {key}={got}, {shape_source} {want}; this is "
                    "another release of the scene or the wrong shape"
                )
    arr = np.asarray(mat.read(name))
    if arr.ndim != 2 or arr.shape[1] != rows * cols:
        raise DataError(
            f"{p}: {name} has shape {arr.shape}, expected (bands, {rows * cols}) for "
            f"{rows}x{cols} pixels ({shape_source}); check the shape (nRow, nCol in the file)"
        )
    cube = np.ascontiguousarray(arr.reshape(arr.shape[0], cols, rows).transpose(0, 2, 1))
    return SpectralCube(
        data=cube,
        source=str(p),
        metadata={"format": mat.format, "variable": name, "layout": "pixels"},
    )
