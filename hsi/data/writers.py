"""Writers: cubes and maps out to GeoTIFF, atomically.

Every output goes through :func:`atomic_output`: it is written to a hidden ``.partial``
file in the target directory and renamed into place only when complete, so a crash, a
full disk or Ctrl-C never leaves a half-written file that a later run would take for a
result. GeoTIFFs are tiled and deflate-compressed, keep the CRS/transform, and carry
wavelengths in the places :func:`hsi.data.readers.read_cube` looks for them, so that
``write_geotiff`` -> ``read_cube`` round-trips data, georeference, no-data and band metadata.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from hsi.data.cube import SpectralCube
from hsi.data.readers._common import _cple_base
from hsi.errors import ConfigError, DataError

__all__ = ["atomic_output", "write_geotiff"]

_MAX_BLOCK = 256
_MIN_BLOCK = 16  # GTiff tiles must be multiples of 16


@contextmanager
def atomic_output(path: str | os.PathLike[str], overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` only on success.

    The temporary file is ``.<name>.<random>.partial`` in the same directory (so the final
    ``os.replace`` is atomic on one file system). On any exception, including
    KeyboardInterrupt, the temporary file is deleted and the exception re-raised. An
    existing ``path`` is refused unless ``overwrite`` is true. Missing parent directories
    are created.
    """
    final = Path(os.fspath(path)).expanduser()
    refuse_existing(final, overwrite)
    parent = final.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(
            f"cannot create output directory {parent} ({exc.strerror or exc}); "
            "choose a writable output location"
        ) from exc
    tmp = parent / f".{final.name}.{uuid.uuid4().hex[:8]}.partial"
    try:
        # Created here (with the umask's permissions) so an unwritable directory is
        # reported before any work is done.
        with open(tmp, "xb"):
            pass
    except OSError as exc:
        raise DataError(
            f"cannot write to directory {parent} ({exc.strerror or exc}); "
            "choose a writable output directory or fix its permissions"
        ) from exc
    try:
        yield tmp
        refuse_existing(final, overwrite)  # someone may have created it meanwhile
        os.replace(tmp, final)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    finally:
        # GDAL may leave sidecars next to the temporary file (e.g. .aux.xml).
        for sidecar in parent.glob(f"{tmp.name}.*"):
            _unlink_quietly(sidecar)


def refuse_existing(final: Path, overwrite: bool) -> None:
    if final.is_dir():
        raise DataError(f"{final} is a directory; pass a file path for the output")
    if final.exists() and not overwrite:
        raise DataError(
            f"{final} already exists; pass overwrite=True (--overwrite on the command line) "
            "to replace it, or choose another output path"
        )


def _unlink_quietly(p: Path) -> None:
    try:
        p.unlink()
    except FileNotFoundError:
        pass
    except OSError:  # pragma: no cover - nothing better to do while unwinding
        pass


def geotiff_block_size(n: int) -> int:
    """256, or the smallest power of two >= ``n`` (at least 16) for smaller images."""
    size = _MIN_BLOCK
    while size < n and size < _MAX_BLOCK:
        size *= 2
    return size


def _prepare_array(data: np.ndarray, dtype: Any, source: str) -> np.ndarray:
    """A bands × H × W array of a GTiff-compatible dtype, cast without silent wrap-around."""
    arr = np.asarray(data)
    if arr.ndim == 2:
        arr = arr[np.newaxis]
    elif arr.ndim != 3:
        raise DataError(
            f"{source}: GeoTIFFs take 2-D (height, width) or 3-D (bands, height, width) "
            f"arrays, got shape {arr.shape}"
        )
    if 0 in arr.shape:
        raise DataError(f"{source}: cannot write an empty array of shape {arr.shape}")
    if dtype is not None:
        target = np.dtype(dtype)
        if target.kind in "iu" and arr.dtype.kind in "biuf":
            _check_fits(arr, target, source)
        arr = arr.astype(target, copy=False)
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8)
    elif arr.dtype == np.float16:
        arr = arr.astype(np.float32)
    if arr.dtype.kind not in "iuf":
        raise DataError(
            f"{source}: cannot write {arr.dtype} data to GeoTIFF; pass real numbers "
            "(convert complex or object arrays first)"
        )
    return arr


def _check_fits(arr: np.ndarray, target: np.dtype, source: str) -> None:
    info = np.iinfo(target)
    if arr.dtype.kind == "f":
        finite = np.isfinite(arr)
        if not finite.all():
            raise DataError(
                f"{source}: NaN/inf values cannot be written as {target}; fill them or "
                "keep a float dtype"
            )
    lo, hi = arr.min(), arr.max()
    if lo < info.min or hi > info.max:
        raise DataError(
            f"{source}: values {lo}..{hi} do not fit in {target} ({info.min}..{info.max}); "
            "pick a wider dtype or rescale the data"
        )


def _check_nodata(nodata: float | None, dtype: np.dtype) -> float | None:
    if nodata is None:
        return None
    nodata = float(nodata)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        if not np.isfinite(nodata) or nodata != int(nodata) or not info.min <= nodata <= info.max:
            raise ConfigError(
                f"nodata={nodata:g} cannot be stored in {dtype} data "
                f"(range {info.min}..{info.max}); pick a nodata value inside it or another dtype"
            )
    return nodata


def _as_transform(transform: Any) -> Any:
    if transform is None:
        return None
    from affine import Affine

    if isinstance(transform, Affine):
        return transform
    try:
        vals = [float(v) for v in transform]
    except TypeError as exc:
        raise ConfigError(f"transform={transform!r} is not an affine.Affine") from exc
    if len(vals) not in (6, 9):
        raise ConfigError(f"transform={transform!r} needs the 6 affine coefficients a..f")
    return Affine(*vals[:6])


def _as_crs(crs: Any) -> Any:
    if crs is None:
        return None
    from rasterio.crs import CRS
    from rasterio.errors import CRSError

    try:
        return CRS.from_user_input(crs)
    except CRSError as exc:
        raise ConfigError(
            f"crs={crs!r} is not a valid CRS ({exc}); pass e.g. 'EPSG:32633' or WKT"
        ) from exc


def _fmt(value: float) -> str:
    """Shortest text that reads back as the same float (418.24, not 418.2400000000001)."""
    return repr(float(value))


def write_wavelength_tags(dst: Any, wavelengths: Sequence[float]) -> None:
    """Band wavelengths (nm) where read_cube, GDAL and QGIS look for them: per-band
    ``wavelength`` tags, GDAL >= 3.10's ``IMAGERY`` band metadata, and the ENVI-domain list.
    For any open rasterio dataset being written (whole-file or tile-by-tile writers)."""
    for i, wl in enumerate(wavelengths, start=1):
        dst.update_tags(i, wavelength=_fmt(wl), wavelength_units="Nanometers")
        dst.update_tags(i, ns="IMAGERY", CENTRAL_WAVELENGTH_UM=_fmt(float(wl) / 1000))
    dst.update_tags(
        ns="ENVI",
        wavelength="{" + ", ".join(_fmt(w) for w in wavelengths) + "}",
        wavelength_units="Nanometers",
    )


@contextmanager
def atomic_directory(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; it replaces ``path`` only on success.

    The folder counterpart of :func:`atomic_output` for multi-file outputs (a simulated
    dataset, a converted benchmark): on any exception the temporary folder is removed and
    an existing ``path`` is left untouched. Whether an existing ``path`` may be replaced
    is the caller's decision, made before calling.
    """
    final = Path(os.fspath(path)).expanduser()
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent))
    try:
        yield tmp
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_geotiff(
    path: str | os.PathLike[str],
    data: np.ndarray | SpectralCube,
    *,
    crs: Any = None,
    transform: Any = None,
    nodata: float | None = None,
    band_descriptions: Sequence[str] | None = None,
    colormap: Mapping[int, tuple[int, ...]] | None = None,
    tags: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    dtype: Any = None,
) -> Path:
    """Write a 2-D map or a bands × H × W cube to a tiled, compressed GeoTIFF, atomically.

    A :class:`SpectralCube` supplies crs, transform, nodata, band names and wavelengths
    (explicit arguments win). Wavelengths are written as per-band ``wavelength`` tags and
    as ENVI-domain ``wavelength``/``wavelength_units`` lists (the two places GDAL, QGIS,
    the EnMAP-Box and our reader look). A cube's no-data mask is kept: masked pixels are
    set to ``nodata`` when there is one, otherwise an internal GDAL mask is written.
    ``colormap`` (class -> (r, g, b[, a])) puts a colour table on band 1 and needs uint8 or
    uint16 data. Returns the final path.
    """
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioError

    final = Path(os.fspath(path)).expanduser()
    source = str(final)
    wavelengths = None
    mask = None
    extra_band_tags: dict[str, Sequence[Any]] = {}
    scales = offsets = None
    if isinstance(data, SpectralCube):
        cube = data
        crs = cube.crs if crs is None else crs
        transform = cube.transform if transform is None else transform
        nodata = cube.nodata if nodata is None else nodata
        band_descriptions = cube.band_names if band_descriptions is None else band_descriptions
        wavelengths = cube.wavelengths
        mask = cube.nodata_mask
        for key in ("fwhm", "bbl"):
            if key in cube.metadata and len(cube.metadata[key]) == cube.bands:
                extra_band_tags[key] = cube.metadata[key]
        if len(cube.metadata.get("scales", ())) == cube.bands:
            scales = [float(s) for s in cube.metadata["scales"]]
        if len(cube.metadata.get("offsets", ())) == cube.bands:
            offsets = [float(s) for s in cube.metadata["offsets"]]
        arr = _prepare_array(cube.data, dtype, source)
    else:
        arr = _prepare_array(data, dtype, source)
    count, height, width = arr.shape
    nodata = _check_nodata(nodata, arr.dtype)
    crs = _as_crs(crs)
    transform = _as_transform(transform)

    if band_descriptions is not None and len(band_descriptions) != count:
        raise ConfigError(
            f"{len(band_descriptions)} band descriptions for {count} bands; pass one per band"
        )
    if colormap is not None and arr.dtype not in (np.uint8, np.uint16):
        raise ConfigError(
            f"colour tables need uint8 or uint16 data, got {arr.dtype}; pass dtype='uint8'"
        )

    write_mask = None
    if mask is not None and mask.any():
        if nodata is not None:
            if not np.all(arr[:, mask] == nodata):
                arr = arr.copy()
                arr[:, mask] = nodata
        else:
            write_mask = np.where(mask, 0, 255).astype(np.uint8)

    profile: dict[str, Any] = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": count,
        "dtype": arr.dtype.name,
        "tiled": True,
        "blockxsize": geotiff_block_size(width),
        "blockysize": geotiff_block_size(height),
        "compress": "deflate",
        "predictor": 3 if arr.dtype.kind == "f" else 2,
        "interleave": "band",
        "BIGTIFF": "IF_SAFER",
    }
    if crs is not None:
        profile["crs"] = crs
    if transform is not None:
        profile["transform"] = transform
    if nodata is not None:
        profile["nodata"] = nodata

    with atomic_output(final, overwrite=overwrite) as tmp:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                with rasterio.open(tmp, "w", **profile) as dst:
                    dst.write(arr)
                    if band_descriptions is not None:
                        for i, name in enumerate(band_descriptions, start=1):
                            dst.set_band_description(i, str(name))
                    if wavelengths is not None:
                        write_wavelength_tags(dst, wavelengths)
                    for key, values in extra_band_tags.items():
                        for i, value in enumerate(values, start=1):
                            dst.update_tags(i, **{key: str(value)})
                    if scales is not None:
                        dst.scales = scales
                    if offsets is not None:
                        dst.offsets = offsets
                    if colormap is not None:
                        dst.write_colormap(1, {int(k): tuple(v) for k, v in colormap.items()})
                    if tags:
                        dst.update_tags(**{str(k): str(v) for k, v in tags.items()})
                    if write_mask is not None:
                        dst.write_mask(write_mask)
        except (RasterioError, _cple_base(), OSError) as exc:
            raise DataError(
                f"{final}: writing the GeoTIFF failed ({' '.join(str(exc).split())}); "
                "check free disk space and permissions"
            ) from exc
    return final
