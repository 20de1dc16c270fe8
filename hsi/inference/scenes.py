"""Scenes read window by window: one raster file, or GeoTIFF tiles of one scene read as a
mosaic without merging them in memory, each giving float pixels and a validity mask."""

from __future__ import annotations

import os
import warnings
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hsi.data.cube import SpectralCube
from hsi.data.readers import check_tiles_compatible, read_cube, read_envi_header
from hsi.errors import ConfigError, DataError

PathLike = str | os.PathLike[str]

Window = tuple[int, int, int, int]  # (r0, r1, c0, c1): rows r0..r1-1, columns c0..c1-1


def _windows(height: int, width: int, tile: int) -> list[Window]:
    return [
        (r0, min(height, r0 + tile), c0, min(width, c0 + tile))
        for r0 in range(0, height, tile)
        for c0 in range(0, width, tile)
    ]


class _Scene(ABC):
    """A scene read window by window: size, georeference, wavelengths and ``read``."""

    source: str
    height: int
    width: int
    bands: int
    crs: Any
    transform: Any
    wavelengths: np.ndarray | None
    dtype: np.dtype

    @abstractmethod
    def read(self, r0: int, r1: int, c0: int, c1: int) -> tuple[np.ndarray, np.ndarray]:
        """Float32 ``(bands, r1 - r0, c1 - c0)`` pixels and their validity mask."""


def _float_and_valid(cube: SpectralCube) -> tuple[np.ndarray, np.ndarray]:
    """Float32 pixels (as training used them) and validity; NaN/inf pixels are no-data.

    Training refuses non-finite valid pixels (``check_finite``); at inference a pixel with
    a NaN in some band cannot be classified, so it is written as no-data instead.
    """
    data = np.asarray(cube.data, dtype=np.float32)
    valid = cube.valid_mask.copy()
    if np.issubdtype(cube.data.dtype, np.floating):
        valid &= np.isfinite(data).all(axis=0)
    return data, valid


class _FileScene(_Scene):
    """One GeoTIFF/VRT/ENVI file read through :func:`read_cube` windows.

    ``.mat``/``.npy`` files cannot be read in windows cheaply (and the community scenes
    stored that way are small), so they are read whole once.
    """

    def __init__(self, path: PathLike) -> None:
        self.path = Path(os.fspath(path)).expanduser()
        suffix = self.path.suffix.lower()
        self._whole: tuple[np.ndarray, np.ndarray] | None = None
        if suffix in (".mat", ".npy"):
            probe = read_cube(self.path)
            self._whole = _float_and_valid(probe)
            self.height, self.width = probe.height, probe.width
        else:
            # a one-pixel read checks the file opens and gives bands, georef, wavelengths
            probe = read_cube(self.path, window=((0, 1), (0, 1)))
            self.height, self.width = self._size()
        self.source = str(self.path)
        self.bands = probe.bands
        self.crs = probe.crs
        self.transform = probe.transform  # the (0, 0) window's transform is the scene's
        self.wavelengths = probe.wavelengths
        self.dtype = probe.data.dtype

    def _envi_header(self) -> Path | None:
        p = self.path
        if p.suffix.lower() == ".hdr":
            return p
        for cand in (p.with_suffix(".hdr"), Path(str(p) + ".hdr")):
            if cand != p and cand.is_file():
                return cand
        return None

    def _size(self) -> tuple[int, int]:
        hdr = self._envi_header()
        if hdr is not None:
            header = read_envi_header(hdr)
            try:
                return int(float(header["lines"])), int(float(header["samples"]))
            except (KeyError, ValueError) as exc:
                raise DataError(
                    f"{hdr}: ENVI header lacks valid 'lines'/'samples'; fix the header"
                ) from exc
        import rasterio
        from rasterio.errors import NotGeoreferencedWarning, RasterioError

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                with rasterio.open(self.path) as src:
                    return int(src.height), int(src.width)
        except RasterioError as exc:  # read_cube opened it a moment ago; unlikely
            raise DataError(f"{self.path}: cannot open as a raster ({exc})") from exc

    def read(self, r0: int, r1: int, c0: int, c1: int) -> tuple[np.ndarray, np.ndarray]:
        if self._whole is not None:
            data, valid = self._whole
            return np.ascontiguousarray(data[:, r0:r1, c0:c1]), valid[r0:r1, c0:c1]
        return _float_and_valid(read_cube(self.path, window=((r0, r1), (c0, c1))))


class _MosaicScene(_Scene):
    """GeoTIFF tiles of one scene on one pixel grid, read window by window.

    Each window reads only the parts of the tiles it overlaps; where tiles overlap the
    first tile's valid pixels win (rasterio.merge's ``first`` rule), and gaps between
    tiles are no-data.
    """

    def __init__(self, paths: Sequence[PathLike]) -> None:
        self.tiles = [_FileScene(p) for p in paths]
        first = self.tiles[0]
        name = first.path.name
        for t in self.tiles:
            if t.transform is None:
                raise DataError(
                    f"{t.source}: has no georeference, so its place in the mosaic is unknown; "
                    "pass georeferenced GeoTIFF tiles (or one file)"
                )
            if t.transform.b != 0 or t.transform.d != 0:
                raise DataError(
                    f"{t.source}: rotated/sheared grid; warp the tiles north-up before mosaicking"
                )
        check_tiles_compatible(
            [(t.source, t.crs, t.bands, (t.transform.a, -t.transform.e)) for t in self.tiles]
        )
        from affine import Affine

        xres, yres = first.transform.a, first.transform.e  # yres < 0 for north-up
        left = min(t.transform.c for t in self.tiles)
        top = (
            max(t.transform.f for t in self.tiles)
            if yres < 0
            else min(t.transform.f for t in self.tiles)
        )
        self.offsets: list[tuple[int, int]] = []
        height = width = 0
        for t in self.tiles:
            col = (t.transform.c - left) / xres
            row = (t.transform.f - top) / yres
            if abs(col - round(col)) > 1e-3 or abs(row - round(row)) > 1e-3:
                raise DataError(
                    f"{t.source}: not aligned with {name}'s pixel grid (offset {row:.3f} rows, "
                    f"{col:.3f} cols); resample the tiles to one grid before mosaicking"
                )
            row, col = int(round(row)), int(round(col))
            self.offsets.append((row, col))
            height, width = max(height, row + t.height), max(width, col + t.width)
        self.source = f"{first.source} (+{len(self.tiles) - 1} tiles)"
        self.height, self.width = height, width
        self.bands = first.bands
        self.crs = first.crs
        self.transform = Affine(xres, 0.0, left, 0.0, yres, top)
        self.wavelengths = first.wavelengths
        self.dtype = first.dtype

    def read(self, r0: int, r1: int, c0: int, c1: int) -> tuple[np.ndarray, np.ndarray]:
        data = np.zeros((self.bands, r1 - r0, c1 - c0), dtype=np.float32)
        valid = np.zeros((r1 - r0, c1 - c0), dtype=bool)
        for tile, (ro, co) in zip(self.tiles, self.offsets, strict=True):
            tr0, tr1 = max(r0, ro), min(r1, ro + tile.height)
            tc0, tc1 = max(c0, co), min(c1, co + tile.width)
            if tr0 >= tr1 or tc0 >= tc1:
                continue
            part, ok = tile.read(tr0 - ro, tr1 - ro, tc0 - co, tc1 - co)
            rows, cols = slice(tr0 - r0, tr1 - r0), slice(tc0 - c0, tc1 - c0)
            fill = ok & ~valid[rows, cols]
            data[:, rows, cols][:, fill] = part[:, fill]
            valid[rows, cols] |= fill
        return data, valid


def _open_scene(inputs: PathLike | Sequence[PathLike]) -> _Scene:
    if isinstance(inputs, (list, tuple)):
        if not inputs:
            raise ConfigError("no input scene given; pass a file or a list of GeoTIFF tiles")
        if len(inputs) == 1:
            return _FileScene(inputs[0])
        return _MosaicScene(inputs)
    return _FileScene(inputs)  # type: ignore[arg-type]
