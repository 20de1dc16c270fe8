"""A SPOD-style point-target simulator on real hyperspectral backgrounds.

SpecDETR's SPOD benchmark (Li et al. 2024) implants targets of several materials, many
smaller than a pixel, into real scenes. This simulator does the same on any cube the user
has (the registry's scenes; Indian Pines here):

- **Backgrounds** are square crops of the real cube drawn inside a ``region`` of it, so a
  training set and a test set drawn from disjoint regions never share a background pixel.
- **Targets** are squares of side ``s`` pixels (``s`` may be < 1: sub-pixel) at continuous
  positions. Each pixel takes the linear mixture ``(1 - a·f)·background + a·f·target``,
  with ``f`` the fraction of the pixel the square covers and ``a`` the target's abundance
  (its purity), the linear mixing model of the target-detection literature
  (Manolakis & Shaw, IEEE SPM 2002).
- **Sensor noise**: zero-mean Gaussian per band at a signal-to-noise ratio in dB of the
  band's mean background signal, added after mixing.

Spectra come from a library — a mapping ``name -> spectrum`` on the scene's bands; build it
with :func:`library_from_labels` (class-mean spectra of labelled pixels, possibly of another
scene) or :func:`read_spectral_library` (a CSV with wavelengths, resampled to the scene).

The output is a folder: ``images/<id>.npy`` (float32, bands × H × W), ``annotations.json``
(COCO style, pixels, x = column: ``bbox`` [x, y, w, h], ``point`` [x, y] the footprint's
centre, fractional for sub-pixel targets, ``footprint`` [x, y, side, side] the exact square,
``area`` its area in pixels, ``abundance``, ``size``) and ``simulation.json`` (the settings,
the seed and the statistics).

**Boxes** follow SPOD by default (``boxes="pixel"``): the box of a target is the bounding box
of the pixels its footprint touches, on the pixel grid, as the authors' generator
(HODToolbox ``MaskGenerator``) and their test annotations (``cv2.boundingRect`` of target
masks) do. A target of 0.25 px inside one pixel is a 1×1 box; one that straddles a pixel
corner is 2×2. Where inside a pixel a sub-pixel target lies is not observable in the data, so
a box finer than the grid would ask the detector (and its IoU matching, and box mAP) for
something no pixel carries. ``boxes="exact"`` keeps the footprint square as the box.

The dataset is written to a temporary folder and renamed at the end, so no partial dataset is
ever left behind.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from hsi.data.cube import SpectralCube
from hsi.data.writers import atomic_directory
from hsi.detection.targets import match_signature
from hsi.errors import ConfigError, DataError

BOX_CONVENTIONS = ("pixel", "exact")


def pixel_box(x: float, y: float, side: float, height: int, width: int) -> list[float]:
    """SPOD's box of a ``side``-pixel square with top-left corner (x, y): the [x, y, w, h]
    bounding box of the pixels it covers (those :func:`implant` mixes), on the pixel grid."""
    x0, y0 = math.floor(x), math.floor(y)
    x1, y1 = min(math.ceil(x + side), width), min(math.ceil(y + side), height)
    return [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]


@dataclass(frozen=True)
class SimulationSpec:
    """What to simulate. Sizes are target side lengths in pixels (area = size²)."""

    n_images: int = 100
    image_size: int = 32
    targets_per_image: tuple[int, int] = (1, 6)
    sizes: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 3.0)
    abundance: tuple[float, float] = (0.5, 1.0)
    snr_db: float | None = 30.0
    min_separation: float = 3.0
    region: tuple[int, int, int, int] | None = None  # row0, row1, col0, col1 of the cube
    seed: int = 0
    boxes: str = "pixel"  # "pixel": SPOD's pixel-grid boxes; "exact": the footprint square

    def check(self, cube_shape: tuple[int, int]) -> tuple[int, int, int, int]:
        """Validate against a cube's (height, width); returns the region to crop from."""
        height, width = cube_shape
        r0, r1, c0, c1 = self.region or (0, height, 0, width)
        if not (0 <= r0 < r1 <= height and 0 <= c0 < c1 <= width):
            raise ConfigError(f"region {self.region} is outside the {height}×{width} cube")
        if self.image_size > min(r1 - r0, c1 - c0):
            raise ConfigError(
                f"image_size {self.image_size} does not fit the {r1 - r0}×{c1 - c0} region"
            )
        lo, hi = self.targets_per_image
        if self.n_images < 1 or not 0 <= lo <= hi:
            raise ConfigError("n_images must be >= 1 and targets_per_image a (min, max) pair")
        if not self.sizes or min(self.sizes) <= 0 or max(self.sizes) >= self.image_size:
            raise ConfigError(f"target sizes {self.sizes} must lie in (0, image_size)")
        a0, a1 = self.abundance
        if not 0 < a0 <= a1 <= 1:
            raise ConfigError(f"abundance range {self.abundance} must lie in (0, 1]")
        if self.boxes not in BOX_CONVENTIONS:
            raise ConfigError(
                f"boxes={self.boxes!r}: use one of {', '.join(BOX_CONVENTIONS)} (pixel: SPOD's "
                "boxes on the pixel grid; exact: the target's footprint square)"
            )
        return r0, r1, c0, c1


@dataclass
class SimulationStats:
    """Counts of what was implanted, for the printed summary and simulation.json."""

    images: int = 0
    targets: int = 0
    per_class: dict[str, int] = field(default_factory=dict)
    per_size: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        lines = [f"{self.images} images, {self.targets} targets"]
        lines += [f"  class {k}: {v}" for k, v in self.per_class.items()]
        lines += [f"  size {k} px: {v}" for k, v in self.per_size.items()]
        return "\n".join(lines)


def library_from_labels(
    cube: SpectralCube, labels: np.ndarray, class_names: list[str], classes: list[str]
) -> dict[str, np.ndarray]:
    """Class-mean spectra of the named classes (labels 1..N index ``class_names``)."""
    library = {}
    for name in classes:
        if name not in class_names:
            raise ConfigError(f"unknown class {name!r}; known: {', '.join(class_names)}")
        mask = labels == class_names.index(name) + 1
        if not mask.any():
            raise DataError(f"class {name!r} has no labelled pixels")
        library[name] = np.asarray(cube.data[:, mask], dtype=np.float64).mean(axis=1)
    return library


def read_spectral_library(path: str | os.PathLike, cube: SpectralCube) -> dict[str, np.ndarray]:
    """A CSV library (header ``wavelength_nm,<name>,...``; one row per wavelength) on the
    scene's bands, resampled by wavelength when both grids are known (see match_signature)."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"spectral library {p} not found")
    with p.open(newline="") as f:
        rows = list(csv.reader(f))
    if len(rows) < 2 or len(rows[0]) < 2:
        raise DataError(f"{p}: expected a header 'wavelength_nm,<name>,...' and data rows")
    try:
        values = np.array([[float(v) for v in row] for row in rows[1:]])
    except ValueError as exc:
        raise DataError(f"{p}: non-numeric value in the library ({exc})") from None
    wavelengths = values[:, 0]
    return {
        name: match_signature(values[:, k], cube, wavelengths)
        for k, name in enumerate(rows[0][1:], start=1)
    }


def _coverage(start: float, size: float, n: int) -> np.ndarray:
    """Overlap length of the interval [start, start+size) with each unit cell 0..n-1."""
    cells = np.arange(n)
    return np.clip(np.minimum(cells + 1, start + size) - np.maximum(cells, start), 0, None)


def implant(
    image: np.ndarray, spectrum: np.ndarray, x: float, y: float, size: float, abundance: float
) -> None:
    """Mix a size×size square target with top-left corner (x, y) into ``image`` in place."""
    bands, height, width = image.shape
    fraction = np.outer(_coverage(y, size, height), _coverage(x, size, width)) * abundance
    rows, cols = np.nonzero(fraction)
    f = fraction[rows, cols]
    image[:, rows, cols] = (1 - f) * image[:, rows, cols] + f * spectrum[:, None]


def simulate(
    background: SpectralCube,
    library: dict[str, np.ndarray],
    spec: SimulationSpec,
    out_dir: str | os.PathLike,
    overwrite: bool = False,
) -> SimulationStats:
    """Write a simulated point-target dataset to ``out_dir`` (see the module docstring)."""
    if not library:
        raise ConfigError("the spectral library is empty: give at least one target spectrum")
    bands = background.data.shape[0]
    for name, spectrum in library.items():
        if np.shape(spectrum) != (bands,):
            raise DataError(
                f"library spectrum {name!r} has shape {np.shape(spectrum)}, the scene {bands} "
                "bands; resample it with hsi.detection.match_signature"
            )
    background.check_finite()
    if not background.valid_mask.all():
        raise DataError(f"{background.source}: the background has no-data pixels")
    r0, r1, c0, c1 = spec.check(background.data.shape[1:])
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise ConfigError(f"{out} exists and is not empty; choose another folder")
    rng = np.random.default_rng(spec.seed)
    names = list(library)
    spectra = [np.asarray(library[n], dtype=np.float32) for n in names]
    categories = [{"id": k + 1, "name": n} for k, n in enumerate(names)]
    images, annotations = [], []
    stats = SimulationStats()
    counts_class: Counter[str] = Counter()
    counts_size: Counter[str] = Counter()
    size = spec.image_size
    with atomic_directory(out) as tmp:
        (tmp / "images").mkdir()
        for image_id in range(1, spec.n_images + 1):
            top = int(rng.integers(r0, r1 - size + 1))
            left = int(rng.integers(c0, c1 - size + 1))
            image = np.array(
                background.data[:, top : top + size, left : left + size], dtype=np.float32
            )
            clean_mean = image.reshape(bands, -1).mean(axis=1)
            centres: list[tuple[float, float]] = []
            for _ in range(
                int(rng.integers(spec.targets_per_image[0], spec.targets_per_image[1] + 1))
            ):
                side = float(rng.choice(spec.sizes))
                cls = int(rng.integers(len(names)))
                placed = _place(rng, side, size, centres, spec.min_separation)
                if placed is None:
                    continue
                x, y = placed
                abundance = float(rng.uniform(*spec.abundance))
                implant(image, spectra[cls], x, y, side, abundance)
                centres.append((x + side / 2, y + side / 2))
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        "image_id": image_id,
                        "category_id": cls + 1,
                        "bbox": (
                            pixel_box(x, y, side, size, size)
                            if spec.boxes == "pixel"
                            else [x, y, side, side]
                        ),
                        "point": [x + side / 2, y + side / 2],
                        "footprint": [x, y, side, side],
                        "area": side * side,
                        "size": side,
                        "abundance": abundance,
                        "iscrowd": 0,
                    }
                )
                counts_class[names[cls]] += 1
                counts_size[f"{side:g}"] += 1
            if spec.snr_db is not None:
                sigma = np.abs(clean_mean) / 10 ** (spec.snr_db / 20)
                image += (rng.standard_normal(image.shape) * sigma[:, None, None]).astype(
                    np.float32
                )
            file_name = f"images/{image_id:05d}.npy"
            np.save(tmp / file_name, image)
            images.append(
                {
                    "id": image_id,
                    "file_name": file_name,
                    "height": size,
                    "width": size,
                    "bands": bands,
                    "crop": [top, left],
                }
            )
        stats.images, stats.targets = len(images), len(annotations)
        stats.per_class = {n: counts_class[n] for n in names}
        stats.per_size = {f"{s:g}": counts_size[f"{s:g}"] for s in sorted(spec.sizes)}
        wavelengths = (
            background.wavelengths.tolist() if background.wavelengths is not None else None
        )
        coco = {
            "info": {"description": "hsi SPOD-style simulation", "source": background.source},
            "images": images,
            "annotations": annotations,
            "categories": categories,
            "wavelengths": wavelengths,
        }
        (tmp / "annotations.json").write_text(json.dumps(coco))
        record = {"spec": asdict(spec), "background": background.source, "stats": asdict(stats)}
        (tmp / "simulation.json").write_text(json.dumps(record, indent=2))
    return stats


def _place(
    rng: np.random.Generator,
    side: float,
    size: int,
    centres: list[tuple[float, float]],
    separation: float,
    tries: int = 50,
) -> tuple[float, float] | None:
    """A top-left corner keeping the target inside the image and apart from the others."""
    for _ in range(tries):
        x, y = rng.uniform(0, size - side, size=2)
        cx, cy = x + side / 2, y + side / 2
        if all((cx - a) ** 2 + (cy - b) ** 2 >= separation**2 for a, b in centres):
            return float(x), float(y)
    return None
