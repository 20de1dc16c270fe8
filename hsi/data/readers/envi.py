"""ENVI cubes: hsi's own header parser (no spectral-python dependency) and a memory map of the
binary file in its interleave, with georeferencing from ``map info`` as GDAL reads it."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hsi.data.cube import SpectralCube
from hsi.data.readers._common import (
    PathLike,
    WindowLike,
    _band_indices,
    _band_names,
    _floats,
    _nodata_mask,
    _normalise_window,
    _one_line,
    _parse_list,
    _select,
    _to_nm,
    _window_transform,
)
from hsi.errors import DataError

_ENVI_BINARY_SUFFIXES = ("", ".img", ".dat", ".raw", ".bsq", ".bil", ".bip")

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


def _envi_header_beside(p: Path) -> Path | None:
    """The ``.hdr`` that belongs to binary file ``p`` (``x.img`` -> ``x.hdr`` or ``x.img.hdr``)."""
    for cand in (p.with_suffix(".hdr"), Path(str(p) + ".hdr")):
        if cand != p and cand.is_file():
            return cand
    return None


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
