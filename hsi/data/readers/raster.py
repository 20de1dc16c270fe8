"""GeoTIFF and every other raster GDAL opens (through rasterio), single files or tiles of one
scene mosaicked in memory; wavelengths from the ENVI, band, default or IMAGERY metadata."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hsi.data.cube import SpectralCube
from hsi.data.readers._common import (
    _NUMERIC_KINDS,
    WindowLike,
    _band_indices,
    _band_names,
    _cple_base,
    _floats,
    _nodata_mask,
    _normalise_window,
    _one_line,
    _parse_list,
    _quiet,
    _to_nm,
    _window_transform,
)
from hsi.errors import DataError

if TYPE_CHECKING:  # pragma: no cover - typing only
    from rasterio.io import DatasetReader


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
