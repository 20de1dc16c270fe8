"""Clean cubes for restoration, from the dataset registry or a file, refused when they hold
NaN, inf or no-data pixels (training crops and the metrics need complete rectangles)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from hsi.data.cube import SpectralCube
from hsi.errors import ConfigError, DataError


def _resolve_path(path: str, root: str | None) -> Path:
    """``path`` as given, else relative to the data root (``root``, else ``$HSI_DATA``)."""
    p = Path(os.path.expanduser(path))
    if p.exists() or p.is_absolute():
        return p
    from hsi.data.registry import resolve_root

    candidate = resolve_root(root) / p
    return candidate if candidate.exists() else p


def load_clean_cube(
    *,
    dataset: str | None = None,
    image: str | None = None,
    root: str | None = None,
    variable: str | None = None,
    layout: str | None = None,
    pixels_shape: Sequence[int] | None = None,
    bands: Sequence[int] | None = None,
) -> SpectralCube:
    """A clean cube from the registry (``dataset``) or a file, checked for restoration use:
    finite values and no no-data pixels (crops need complete rectangles)."""
    if (dataset is None) == (image is None):
        raise ConfigError("give exactly one of dataset=<registry name> or image=<file>")
    if dataset is not None:
        from hsi.data.registry import load_dataset

        cube = load_dataset(dataset, root=root).cube
    else:
        path = _resolve_path(str(image), root)
        if not path.exists():
            raise DataError(f"{image}: file not found (also looked under the data root)")
        from hsi.data.readers import read_cube, read_pixels_matrix

        if pixels_shape is not None:
            cube = read_pixels_matrix(path, variable, shape=pixels_shape)
        else:
            cube = read_cube(path, variable, layout=layout)
    return _checked_clean(cube, bands)


def _checked_clean(cube: SpectralCube, bands: Sequence[int] | None) -> SpectralCube:
    """``cube`` with only ``bands`` (all when ``None``), refused when it holds NaN/inf or
    no-data pixels."""
    if bands is not None:
        bad = [b for b in bands if not 0 <= int(b) < cube.bands]
        if bad:
            raise ConfigError(f"bands {bad} do not exist in {cube.source} ({cube.bands} bands)")
        cube = cube.select_bands([int(b) for b in bands])
    cube.check_finite()
    if cube.nodata_mask is not None and cube.nodata_mask.any():
        raise DataError(
            f"{cube.source}: {int(cube.nodata_mask.sum())} no-data pixels; restoration trains "
            "on complete rectangles, so crop the scene to its valid part first"
        )
    return cube
