"""The spectral cube: the one array type every reader returns and every model consumes.

Axis order is **bands × height × width** everywhere in hsi (the rasterio order), so a
cube's ``data[b]`` is one band image and ``data[:, r, c]`` one pixel spectrum.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from hsi.errors import DataError


@dataclass
class SpectralCube:
    """A hyperspectral image with the metadata needed to interpret and georeference it.

    Attributes:
        data: array of shape ``(bands, height, width)``.
        wavelengths: band centre wavelengths in nanometres, or ``None`` when unknown.
        band_names: one name per band (defaults to ``"band_1"``...).
        nodata_mask: boolean ``(height, width)`` array, ``True`` where a pixel has no data.
        crs: coordinate reference system (a ``rasterio.crs.CRS`` or WKT/EPSG string), or ``None``.
        transform: affine pixel-to-CRS transform (``affine.Affine``), or ``None``.
        nodata: the no-data value of the source file, if it had one.
        source: where the cube was read from (for error messages and reports).
    """

    data: np.ndarray
    wavelengths: np.ndarray | None = None
    band_names: list[str] | None = None
    nodata_mask: np.ndarray | None = None
    crs: Any = None
    transform: Any = None
    nodata: float | None = None
    source: str = "<memory>"
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.data.ndim != 3:
            raise DataError(
                f"{self.source}: a spectral cube needs 3 axes (bands, height, width), "
                f"got shape {self.data.shape}"
            )
        bands, height, width = self.data.shape
        if self.wavelengths is not None:
            self.wavelengths = np.asarray(self.wavelengths, dtype=np.float64)
            if self.wavelengths.shape != (bands,):
                raise DataError(
                    f"{self.source}: {len(self.wavelengths)} wavelengths for {bands} bands"
                )
        if self.band_names is None:
            self.band_names = [f"band_{i + 1}" for i in range(bands)]
        elif len(self.band_names) != bands:
            raise DataError(f"{self.source}: {len(self.band_names)} band names for {bands} bands")
        if self.nodata_mask is not None:
            self.nodata_mask = np.asarray(self.nodata_mask, dtype=bool)
            if self.nodata_mask.shape != (height, width):
                raise DataError(
                    f"{self.source}: no-data mask of shape {self.nodata_mask.shape} "
                    f"does not match the image ({height}, {width})"
                )

    @property
    def bands(self) -> int:
        return int(self.data.shape[0])

    @property
    def height(self) -> int:
        return int(self.data.shape[1])

    @property
    def width(self) -> int:
        return int(self.data.shape[2])

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.data.shape)  # type: ignore[return-value]

    @property
    def valid_mask(self) -> np.ndarray:
        """``True`` where the pixel holds data (the complement of ``nodata_mask``)."""
        if self.nodata_mask is None:
            return np.ones((self.height, self.width), dtype=bool)
        return ~self.nodata_mask

    def check_finite(self) -> None:
        """Raise if any valid pixel holds NaN or infinity (they poison PCA and training)."""
        if not np.issubdtype(self.data.dtype, np.floating):
            return
        bad = ~np.isfinite(self.data).all(axis=0) & self.valid_mask
        if bad.any():
            rows, cols = np.nonzero(bad)
            raise DataError(
                f"{self.source}: {int(bad.sum())} pixels hold NaN/inf values "
                f"(first at row {rows[0]}, col {cols[0]}); mark them as no-data "
                "(nodata_mask) or fill them before training"
            )

    def select_bands(self, indices: Sequence[int]) -> SpectralCube:
        """A new cube with only the given band indices (0-based), metadata kept in step."""
        idx = list(indices)
        return replace(
            self,
            data=self.data[idx],
            wavelengths=None if self.wavelengths is None else self.wavelengths[idx],
            band_names=[self.band_names[i] for i in idx] if self.band_names else None,
        )

    def __repr__(self) -> str:
        wl = (
            f"{self.wavelengths[0]:.0f}-{self.wavelengths[-1]:.0f} nm"
            if self.wavelengths is not None and self.bands
            else "wavelengths unknown"
        )
        geo = f", crs={self.crs}" if self.crs is not None else ""
        return (
            f"SpectralCube(bands={self.bands}, height={self.height}, width={self.width}, "
            f"dtype={self.data.dtype}, {wl}{geo}, source={self.source!r})"
        )
