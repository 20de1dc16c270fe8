"""Target annotations from pixel-level target maps, and library signatures on a scene's grid.

Real target scenes ship a binary (or class-valued) map. Detection metrics need objects, so
each connected component (8-connectivity: diagonal neighbours belong to the same object,
as airplane pixels in the San Diego map do) becomes one annotation with its centre point,
box and area, in pixel coordinates (row, col), box ends exclusive.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

from hsi.data.cube import SpectralCube
from hsi.errors import DataError


@dataclass(frozen=True)
class TargetAnnotation:
    """One target object: class, centroid (row, col), box (row0, col0, row1, col1), area."""

    id: int
    class_id: int
    centroid: tuple[float, float]
    box: tuple[int, int, int, int]
    area: int

    def to_dict(self) -> dict:
        return asdict(self)


def annotate_targets(target_map: np.ndarray, connectivity: int = 8) -> list[TargetAnnotation]:
    """Connected components of each non-zero class in ``target_map`` (H×W ints) as objects.

    Ids are 1-based, in class order and then in raster order of each component's first
    pixel, so the same map always gives the same annotations.
    """
    return _components(target_map, connectivity)[0]


def component_map(target_map: np.ndarray, connectivity: int = 8) -> np.ndarray:
    """H×W ints: the id of the annotation each pixel belongs to (0 for background)."""
    return _components(target_map, connectivity)[1]


def _components(
    target_map: np.ndarray, connectivity: int
) -> tuple[list[TargetAnnotation], np.ndarray]:
    m = np.asarray(target_map)
    if m.ndim != 2:
        raise DataError(f"a target map must be 2-D (height, width), got shape {m.shape}")
    if connectivity not in (4, 8):
        raise DataError(f"connectivity must be 4 or 8, got {connectivity}")
    structure = ndimage.generate_binary_structure(2, 1 if connectivity == 4 else 2)
    ids = np.zeros(m.shape, dtype=np.int64)
    annotations: list[TargetAnnotation] = []
    for class_id in (int(c) for c in np.unique(m) if c != 0):
        components, count = ndimage.label(m == class_id, structure=structure)
        for k, sl in enumerate(ndimage.find_objects(components), start=1):
            own = components[sl] == k
            rows, cols = np.nonzero(own)
            ann_id = len(annotations) + 1
            ids[sl][own] = ann_id
            annotations.append(
                TargetAnnotation(
                    id=ann_id,
                    class_id=class_id,
                    centroid=(float(rows.mean() + sl[0].start), float(cols.mean() + sl[1].start)),
                    box=(sl[0].start, sl[1].start, sl[0].stop, sl[1].stop),
                    area=int(own.sum()),
                )
            )
    return annotations, ids


def match_signature(
    signature: np.ndarray,
    cube: SpectralCube,
    wavelengths: np.ndarray | None = None,
) -> np.ndarray:
    """A library spectrum on the scene's bands: as is, or linearly resampled by wavelength.

    Resampling needs wavelengths on both sides and a library that covers the scene's range
    (no extrapolation); otherwise a band-count mismatch is an error, never a silent crop.
    """
    sig = np.asarray(signature, dtype=np.float64).reshape(-1)
    bands = cube.data.shape[0]
    same_grid = wavelengths is None or cube.wavelengths is None
    if wavelengths is not None:
        wl = np.asarray(wavelengths, dtype=np.float64).reshape(-1)
        if wl.shape != sig.shape:
            raise DataError(f"the signature has {len(sig)} values but {len(wl)} wavelengths")
        if cube.wavelengths is not None and not (
            len(wl) == bands and np.allclose(wl, cube.wavelengths, atol=1e-6)
        ):
            scene = cube.wavelengths
            if not np.all(np.diff(wl) > 0):
                raise DataError("the signature's wavelengths must increase strictly")
            if scene.min() < wl[0] - 1e-6 or scene.max() > wl[-1] + 1e-6:
                raise DataError(
                    f"the signature covers {wl[0]:.1f}-{wl[-1]:.1f} nm but the scene "
                    f"{scene.min():.1f}-{scene.max():.1f} nm; it cannot be extrapolated"
                )
            return np.interp(scene, wl, sig)
        same_grid = True
    if same_grid and len(sig) != bands:
        raise DataError(
            f"the signature has {len(sig)} bands and the scene {bands}; give both "
            "wavelength grids to resample it"
        )
    return sig
