"""The dataset registry: finds, checks and loads the files that the dataset cards name.

A card (``datasets/<name>.yaml``, parsed by :mod:`hsi.data.cards`) names a scene's files and
their checksums. The registry finds those files under a data root, checks them against the
card and returns a :class:`LabeledScene` whose labels are ``0 = unlabelled`` and ``1..N``
contiguous, whatever ids the file used. It also verifies and downloads them (the ``hsi
datasets`` command is :mod:`hsi.data.datasets_cli`).

A restoration card loads as :class:`RestorationScenes`, which reads its cubes lazily (a
collection can be tens of GB) and raises a clear :class:`DataError` when asked for labels.
A detection card is not loaded here: :func:`load_dataset` refuses it with a
:class:`DataError` naming ``DetectionDataModule(dataset=...)``, which converts the benchmark's
folder (its ``format``) once into hsi's detection folders, cached under :func:`cache_root`.

Data root: the ``root`` argument, else the ``HSI_DATA`` environment variable, else a per-user
cache folder (``$XDG_CACHE_HOME/hsi`` or ``~/.cache/hsi``). A dataset's files are looked for in
``<root>/<card folder>/``, then ``<root>/<dataset name>/``, then ``<root>/`` itself.

Nothing here touches the network except :func:`download_dataset`.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

import numpy as np

from hsi.data.cards import (
    PIXELS_LAYOUT,
    DatasetCard,
    DetectionSplit,
    FileRef,
    FileSpec,
    FormSpec,
    cards_dir,
    get_card,
    list_datasets,
)
from hsi.data.cube import SpectralCube
from hsi.errors import ConfigError, DataError

__all__ = [
    # re-exported from hsi.data.cards: the registry is where users look for them
    "DatasetCard",
    "DetectionSplit",
    "FileRef",
    "FileSpec",
    "FormSpec",
    "cards_dir",
    "get_card",
    "list_datasets",
    # the registry's own
    "FileCheck",
    "LabeledScene",
    "ResolvedForm",
    "RestorationScenes",
    "cache_root",
    "download_dataset",
    "file_sha256",
    "load_dataset",
    "load_scene",
    "locate_files",
    "resolve_root",
    "verify_dataset",
]

DATA_ENV = "HSI_DATA"
_CHUNK = 1 << 20
CACHE_ENV = "HSI_CACHE"


# --------------------------------------------------------------------------------------------
# Locating files
# --------------------------------------------------------------------------------------------


def resolve_root(root: str | os.PathLike[str] | None = None) -> Path:
    """The data root: ``root``, else ``$HSI_DATA``, else ``$XDG_CACHE_HOME/hsi``
    (``~/.cache/hsi`` when ``XDG_CACHE_HOME`` is unset)."""
    if root is not None and str(root) != "":
        return Path(root).expanduser().resolve()
    return _env_dir(DATA_ENV) or _user_cache_dir()


def _env_dir(variable: str) -> Path | None:
    value = os.environ.get(variable, "").strip()
    return Path(value).expanduser().resolve() if value else None


def _user_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/hsi``, else ``~/.cache/hsi``."""
    cache = os.environ.get("XDG_CACHE_HOME", "").strip()
    base = Path(cache).expanduser() if cache else Path.home() / ".cache"
    return (base / "hsi").resolve()


def cache_root() -> Path:
    """Where hsi keeps what it derives from data (e.g. a detection benchmark converted to
    hsi's folders): ``$HSI_CACHE``, else ``$XDG_CACHE_HOME/hsi``, else ``~/.cache/hsi``.

    Kept apart from the data root so that a read-only or shared data folder is never
    written to."""
    return _env_dir(CACHE_ENV) or _user_cache_dir()


def _search_dirs(card: DatasetCard, root: Path) -> list[Path]:
    dirs = [root / card.folder]
    if card.name != card.folder:
        dirs.append(root / card.name)
    dirs.append(root)
    return dirs


def _find_file(card: DatasetCard, root: Path, fname: str) -> Path | None:
    for d in _search_dirs(card, root):
        p = d / fname
        if p.is_file():
            return p
    return None


@dataclass(frozen=True)
class ResolvedForm:
    """The files of one complete form found on disk (``image``/``labels``: the file, or the
    first tile of a tiled form; ``image_files``/``labels_files``: every file, in order)."""

    dataset: str
    form: str
    image: Path
    labels: Path | None  # None for a restoration card
    root: Path
    image_files: tuple[Path, ...] = ()
    labels_files: tuple[Path, ...] = ()

    @property
    def name(self) -> str:
        return self.form

    @property
    def image_path(self) -> Path:
        return self.image

    @property
    def labels_path(self) -> Path | None:
        return self.labels


def _ref_txt(ref: FileRef, kind: str = "tiles") -> str:
    if ref.glob is not None:
        return f"the files matching {ref.glob}"
    if not ref.tiled:
        return ref.file
    return f"{ref.file} ... {ref.files[-1]} ({len(ref.files)} {kind})"


def _form_txt(form: FormSpec) -> str:
    if form.splits:
        return ", ".join(f"{s.annotations} + {s.images}/" for s in form.splits.values())
    if form.labels is None:
        return _ref_txt(form.image, "scenes")
    return f"{_ref_txt(form.image)} + {_ref_txt(form.labels)}"


def _glob_files(card: DatasetCard, root: Path, pattern: str) -> list[Path]:
    """Files matching a collection's glob, from the first of ``<root>/<folder>`` and
    ``<root>/<name>`` that has any; never the bare root, where a pattern such as ``*.mat``
    would pick up other datasets' files."""
    for d in _search_dirs(card, root)[:-1]:
        found = sorted(p for p in d.glob(pattern) if p.is_file())
        if found:
            return found
    return []


def _missing_message(card: DatasetCard, root: Path, forms: Sequence[FormSpec]) -> str:
    folder = root / card.folder
    options = " or ".join(f"{_form_txt(f)} (form {f.name!r})" for f in forms)
    found = [f for form in forms for f in form.files if _find_file(card, root, f)]
    if any(f.image.glob for f in forms):
        folder_txt = f"{folder} (a collection is looked for in {folder} or {root / card.name})"
    else:
        folder_txt = str(folder)
    found = list(dict.fromkeys(found))
    if len(found) > 6:
        found = [*found[:5], f"... ({len(found)} files in all)"]
    found_txt = f" (found only {', '.join(found)})" if found else ""
    if card.downloadable:
        fetch = f"run `hsi datasets download {card.name}`"
    else:
        fetch = f"download them from {card.source_url or 'the source named in the card'}"
    if card.kind == "detection":
        return (
            f"{card.name}: {card.folder}/ not found under {root}{found_txt}: expected {folder} "
            f"holding {_form_txt(forms[0])}. Download it from "
            f"{card.source_url or 'the source named in the card'} and unpack it into {root}, "
            f"or point root= / ${DATA_ENV} at the folder that holds {card.folder}/."
        )
    return (
        f"{card.name}: files not found under {root}{found_txt}. Put {options} in {folder_txt} "
        f"(or point --root / ${DATA_ENV} at the folder that holds {card.folder}/), "
        f"or {fetch}."
    )


def locate_files(
    name: str | DatasetCard,
    root: str | os.PathLike[str] | None = None,
    form: str | None = None,
) -> ResolvedForm:
    """Find the first complete form of a dataset under the data root (or the named ``form``).

    Raises:
        DataError: no form is complete; the message names every form's files and the folder.
        ConfigError: unknown dataset or form name.
    """
    card = get_card(name)
    base = resolve_root(root)
    forms = [card.form(form)] if form is not None else list(card.forms)
    for f in forms:
        if f.image.glob is not None:
            images: list[Path | None] = list(_glob_files(card, base, f.image.glob))
        else:
            images = [_find_file(card, base, n) for n in f.image.names]
        labels = [_find_file(card, base, n) for n in (f.labels.names if f.labels else ())]
        if images and all(p is not None for p in images) and all(p is not None for p in labels):
            return ResolvedForm(
                card.name,
                f.name,
                images[0],  # type: ignore[arg-type]
                labels[0] if labels else None,
                base,
                tuple(images),  # type: ignore[arg-type]
                tuple(labels),  # type: ignore[arg-type]
            )
    raise DataError(_missing_message(card, base, forms))


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(eq=False)
class LabeledScene:
    """A cube with its per-pixel labels (``0`` = unlabelled, classes ``1..N`` contiguous)."""

    cube: SpectralCube
    labels: np.ndarray
    class_names: list[str]
    card: DatasetCard | None
    name: str
    form: str | None
    image_path: Path | None
    labels_path: Path | None
    image_files: tuple[Path, ...] = ()
    labels_files: tuple[Path, ...] = ()

    @cached_property
    def fingerprint(self) -> str:
        """sha256 of the image file (cached); for an image of several tiles, the sha256 of
        the tiles' hex sha256s concatenated in the card's order. Split files store it so a
        split made for one cube cannot be applied to another."""
        if len(self.image_files) > 1:
            joined = "".join(file_sha256(p) for p in self.image_files)
            return hashlib.sha256(joined.encode("ascii")).hexdigest()
        if self.image_path is None:
            h = hashlib.sha256(np.ascontiguousarray(self.cube.data).tobytes())
            return h.hexdigest()
        return file_sha256(self.image_path)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def class_counts(self) -> list[int]:
        """Labelled pixels per class 1..N."""
        counts = np.bincount(self.labels.ravel(), minlength=self.num_classes + 1)
        return [int(c) for c in counts[1 : self.num_classes + 1]]

    @property
    def labeled_mask(self) -> np.ndarray:
        return self.labels > 0

    def __repr__(self) -> str:
        return (
            f"LabeledScene(name={self.name!r}, form={self.form!r}, cube={self.cube!r}, "
            f"classes={self.num_classes}, labelled={int((self.labels > 0).sum())})"
        )


def _no_labels(name: str) -> DataError:
    return DataError(
        f"{name} is a restoration dataset (kind: restoration): clean cubes with no labels or "
        "classes. Use it for denoising / super-resolution (RestorationDataModule(dataset=...)), "
        "or pick a classification dataset (`hsi datasets list` shows each card's kind)"
    )


def _not_a_scene(card: DatasetCard) -> DataError:
    return DataError(
        f"{card.name} is a detection dataset (kind: detection): many small images with object "
        "boxes in COCO annotation files, not one labelled scene. Train on it with "
        f'DetectionDataModule(dataset="{card.name}", root=<data root>), which converts '
        f"{card.folder}/ once into hsi's detection folders, or convert a split yourself with "
        f"`hsi {card.form().format}-convert`"
    )


@dataclass(eq=False)
class RestorationScenes:
    """The clean cube(s) of a restoration card, read lazily (one scene, or a collection).

    ``paths`` are the scene files in sorted (glob) or card order; :meth:`load` reads one and
    checks its band count (and, for a single scene, its height and width) against the card.
    Asking for ``labels``/``class_names`` raises a :class:`DataError`: there are none.
    """

    card: DatasetCard
    name: str
    form: str
    paths: tuple[Path, ...]
    ref: FileRef

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def scene_names(self) -> list[str]:
        """File names of the scenes (what ``test_scenes`` lists)."""
        return [p.name for p in self.paths]

    def _index(self, scene: int | str) -> int:
        if isinstance(scene, int):
            if not -len(self.paths) <= scene < len(self.paths):
                raise DataError(f"{self.name}: scene {scene} out of range (0..{len(self) - 1})")
            return scene % len(self.paths)
        names = self.scene_names
        for key in (scene, f"{scene}.mat"):
            if key in names:
                return names.index(key)
        raise DataError(
            f"{self.name}: no scene {scene!r} among the {len(self)} found "
            f"(e.g. {', '.join(names[:3])})"
        )

    def load(
        self,
        scene: int | str = 0,
        window: tuple[tuple[int, int], tuple[int, int]] | None = None,
        bands: Sequence[int] | None = None,
    ) -> SpectralCube:
        """One scene's cube, as ``(bands, height, width)``.

        ``window`` ``((row0, row1), (col0, col1))`` and ``bands`` are passed to the reader,
        so a v7.3 (HDF5) or GeoTIFF scene reads only that part: the ICVL test protocol scores
        the central 512 × 512 of 1392 × 1300 scenes, and ``bands=[0]`` gives a scene's size
        for one band's read. A partial read is checked for its band count only.
        """
        path = self.paths[self._index(scene)]
        partial = window is not None or bands is not None
        if self.ref.layout == PIXELS_LAYOUT:
            assert self.ref.pixels_shape is not None
            cube = _readers().read_pixels_matrix(
                path,
                self.ref.variable,
                shape=self.ref.pixels_shape,
                shape_source=f"the {self.name} card's pixels_shape",
            )
            if window is not None:  # a bands x pixels matrix (no georeference): slice it
                (r0, r1), (c0, c1) = window
                mask = None if cube.nodata_mask is None else cube.nodata_mask[r0:r1, c0:c1]
                cube = replace(cube, data=cube.data[:, r0:r1, c0:c1], nodata_mask=mask)
            if bands is not None:
                cube = cube.select_bands(bands)
        else:
            cube = _readers().read_cube(
                path, self.ref.variable, layout=self.ref.layout, window=window, bands=bands
            )
        card = self.card
        if len(self.paths) == 1 and not partial:
            _check_cube(card, cube, path, card.form(self.form))
        elif bands is None and cube.bands != card.bands:
            raise DataError(
                f"{card.name}: card says {card.bands} bands, {path.name} has {cube.bands}; "
                f"this is not a scene of the {card.title} collection as published ({path})"
            )
        if cube.wavelengths is None and card.wavelengths_nm is not None:
            wavelengths = np.asarray(card.wavelengths_nm, dtype=np.float64)
            cube = replace(cube, wavelengths=wavelengths[list(bands or range(len(wavelengths)))])
        return cube

    def cubes(self) -> Iterator[SpectralCube]:
        """Every scene, one at a time."""
        for i in range(len(self.paths)):
            yield self.load(i)

    @property
    def cube(self) -> SpectralCube:
        """The scene of a single-scene card; a collection must say which scene it wants."""
        if len(self.paths) != 1:
            raise DataError(
                f"{self.name} is a collection of {len(self.paths)} scenes, not one cube; load "
                f"one with .load(<index or file name>), or give RestorationDataModule "
                f"image=<one scene file> (files under {self.paths[0].parent})"
            )
        return self.load(0)

    def split(self, name: str = "test") -> RestorationScenes:
        """The card's fixed held-out scenes (``test_scenes``), all of which must be present."""
        if name not in self.card.test_scenes:
            known = ", ".join(self.card.test_scenes) or "none"
            raise ConfigError(f"{self.name} has no test_scenes split {name!r} (known: {known})")
        by_name = {p.name: p for p in self.paths}
        wanted = self.card.test_scenes[name]
        missing = [n for n in wanted if n not in by_name]
        if missing:
            shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise DataError(
                f"{self.name}: {len(missing)} of the {len(wanted)} {name!r} test scenes are "
                f"missing ({shown}) from {self.paths[0].parent}; add them to compare with the "
                "papers' numbers"
            )
        return replace(self, paths=tuple(by_name[n] for n in wanted))

    @property
    def labels(self) -> np.ndarray:
        raise _no_labels(self.name)

    @property
    def class_names(self) -> list[str]:
        raise _no_labels(self.name)

    @property
    def num_classes(self) -> int:
        raise _no_labels(self.name)

    def __repr__(self) -> str:
        return f"RestorationScenes(name={self.name!r}, form={self.form!r}, scenes={len(self)})"


def _readers():
    # Imported lazily so the registry (and `hsi datasets list`) work without the readers'
    # optional heavy dependencies being imported.
    from hsi.data import readers

    return readers


def _check_cube(card: DatasetCard, cube: SpectralCube, path: Path, form: FormSpec) -> None:
    bands, height, width = cube.shape
    if bands != card.bands:
        if bands > card.bands:
            why = (
                f"this looks like the uncorrected cube (noisy/water-absorption bands kept); "
                f"use {form.image.file} as published"
            )
        else:
            why = (
                "the file looks band-subset or reduced (e.g. PCA); "
                f"use the full {form.image.file} as published"
            )
        raise DataError(
            f"{card.name}: card says {card.bands} bands, {path.name} has {bands}: {why} ({path})"
        )
    if (height, width) != (card.height, card.width):
        if (height, width) == (card.width, card.height):
            why = (
                "height and width are swapped; the file is stored in another axis order "
                "than the card's layout, so fix the form's layout in the card or re-save the file"
            )
        else:
            why = f"this is not the {card.title} scene as published (cropped or another scene?)"
        raise DataError(
            f"{card.name}: card says {card.height}x{card.width} pixels, {path.name} has "
            f"{height}x{width}: {why} ({path})"
        )


def _check_labels_shape(labels: np.ndarray, cube: SpectralCube, path: Path, what: str) -> None:
    if labels.ndim != 2:
        raise DataError(f"{what}: labels in {path.name} have shape {labels.shape}, expected (H, W)")
    if labels.shape != (cube.height, cube.width):
        hint = (
            "; they look transposed relative to the image"
            if labels.shape == (cube.width, cube.height)
            else ""
        )
        raise DataError(
            f"{what}: labels in {path.name} are {labels.shape[0]}x{labels.shape[1]} but the "
            f"image is {cube.height}x{cube.width}{hint}; use the ground truth that belongs to "
            f"this image"
        )


def _mosaic_labels(
    paths: Sequence[Path], cube: SpectralCube, what: str, fill: int = 0
) -> np.ndarray:
    """Label tiles placed on the image mosaic's grid by their georeference.

    Pixels outside every label tile are ``fill`` (the unlabelled value); where tiles overlap,
    the first tile that labels a pixel wins. Each tile must share the cube's CRS and pixel
    size, sit on its pixel grid and lie inside it.
    """
    import rasterio

    if cube.transform is None:
        raise DataError(f"{what}: the image mosaic has no georeference to place label tiles on")
    grid = cube.transform
    if grid.b or grid.d:
        raise DataError(f"{what}: the image mosaic is rotated; label tiles cannot be placed")
    readers = _readers()
    out = np.full((cube.height, cube.width), fill, dtype=np.int64)
    for p in paths:
        with rasterio.open(p) as src:
            crs, transform, (h, w) = src.crs, src.transform, src.shape
        if crs != cube.crs:
            raise DataError(
                f"{what}: label tile {p.name} is in {crs}, the image in {cube.crs}; "
                "use label tiles on the image's grid"
            )
        if (
            transform.b
            or transform.d
            or not np.allclose((transform.a, transform.e), (grid.a, grid.e))
        ):
            raise DataError(
                f"{what}: label tile {p.name} has pixel size {transform.a, transform.e}, the "
                f"image {grid.a, grid.e}; use label tiles on the image's grid"
            )
        col, row = (transform.c - grid.c) / grid.a, (transform.f - grid.f) / grid.e
        r0, c0 = round(row), round(col)
        if abs(row - r0) > 1e-6 or abs(col - c0) > 1e-6:
            raise DataError(
                f"{what}: label tile {p.name} is offset by a fraction of a pixel from the image "
                f"grid (row {row:.3f}, col {col:.3f}); use label tiles on the image's grid"
            )
        if r0 < 0 or c0 < 0 or r0 + h > cube.height or c0 + w > cube.width:
            raise DataError(
                f"{what}: label tile {p.name} (rows {r0}:{r0 + h}, cols {c0}:{c0 + w}) reaches "
                f"outside the {cube.height}x{cube.width} image mosaic; is an image tile missing?"
            )
        tile = np.asarray(readers.read_labels(p))
        window = out[r0 : r0 + h, c0 : c0 + w]
        free = window == fill
        window[free] = tile[free]
    return out


def _remap(labels: np.ndarray, mapping: Mapping[int, int]) -> np.ndarray:
    out = np.zeros(labels.shape, dtype=np.int64)
    for src, dst in mapping.items():
        if dst:
            out[labels == src] = dst
    return out


def load_dataset(
    name: str | DatasetCard,
    root: str | os.PathLike[str] | None = None,
    form: str | None = None,
) -> LabeledScene | RestorationScenes:
    """Load a registered dataset, checked against its card.

    Classification cards give a :class:`LabeledScene`: labels come back as ``int64`` with
    ``0`` = unlabelled and classes ``1..N`` in the card's order, whatever ids the file used
    (e.g. Salinas-A's 1, 10..14 become 1..6). Restoration cards give
    :class:`RestorationScenes` (cubes read on demand; ``.cube`` for a single scene).
    Detection cards raise a :class:`DataError` (use ``DetectionDataModule(dataset=...)``).
    """
    card = get_card(name)
    if card.kind == "detection":
        raise _not_a_scene(card)
    resolved = locate_files(card, root, form)
    spec = card.form(resolved.form)
    if card.kind == "restoration":
        return RestorationScenes(
            card=card,
            name=card.name,
            form=resolved.form,
            paths=resolved.image_files or (resolved.image,),
            ref=spec.image,
        )
    readers = _readers()

    image_files = resolved.image_files or (resolved.image,)
    assert spec.labels is not None and resolved.labels is not None  # classification card
    labels_files = resolved.labels_files or (resolved.labels,)
    if spec.image.tiled:
        cube = readers.read_cube(list(image_files), layout=spec.image.layout)
    else:
        cube = readers.read_cube(resolved.image, spec.image.variable, layout=spec.image.layout)
    _check_cube(card, cube, resolved.image, spec)
    if cube.wavelengths is None and card.wavelengths_nm is not None:
        cube = replace(cube, wavelengths=np.asarray(card.wavelengths_nm, dtype=np.float64))

    if spec.labels.tiled:
        raw_labels = _mosaic_labels(labels_files, cube, card.name, card.ignore_label)
        if cube.nodata_mask is not None:
            raw_labels[cube.nodata_mask] = card.ignore_label  # no spectrum, no sample
    else:
        raw_labels = np.asarray(readers.read_labels(resolved.labels, spec.labels.variable))
    _check_labels_shape(raw_labels, cube, resolved.labels, card.name)

    values = np.unique(raw_labels)
    mapping = card.label_map
    unknown = [int(v) for v in values if int(v) not in mapping]
    if unknown:
        shown = ", ".join(str(v) for v in unknown[:10]) + (" ..." if len(unknown) > 10 else "")
        known = ", ".join(str(v) for v in card.label_values)
        raise DataError(
            f"{card.name}: {resolved.labels.name} holds label values {shown} that the card does "
            f"not define (classes use {known}, {card.ignore_label} = unlabelled); this is not "
            f"the published ground truth, or the card's classes are incomplete"
        )
    labels = _remap(raw_labels, mapping)

    return LabeledScene(
        cube=cube,
        labels=labels,
        class_names=card.class_names,
        card=card,
        name=card.name,
        form=resolved.form,
        image_path=resolved.image,
        labels_path=resolved.labels,
        image_files=tuple(image_files),
        labels_files=tuple(labels_files),
    )


def load_scene(
    image: str | os.PathLike[str],
    labels: str | os.PathLike[str],
    *,
    variable: str | None = None,
    labels_variable: str | None = None,
    class_names: Sequence[str] | None = None,
    layout: str | None = None,
) -> LabeledScene:
    """Load a user's image + label files that are not in the registry (name ``"custom"``).

    ``0`` in the labels means unlabelled. With ``class_names``, label ``k`` is
    ``class_names[k - 1]`` and values above ``len(class_names)`` are an error. Without them, the
    distinct non-zero values become classes ``1..N`` in increasing order (named ``class_<v>``).
    """
    image_path, labels_path = Path(image), Path(labels)
    for p in (image_path, labels_path):
        if not p.is_file():
            raise DataError(f"{p}: file not found; check the path")
    readers = _readers()
    cube = readers.read_cube(image_path, variable, layout=layout)
    raw = np.asarray(readers.read_labels(labels_path, labels_variable))
    _check_labels_shape(raw, cube, labels_path, "custom")

    values = [int(v) for v in np.unique(raw)]
    negative = [v for v in values if v < 0]
    if negative:
        raise DataError(
            f"{labels_path.name}: negative label values {negative[:5]}; use 0 for unlabelled "
            "pixels and 1..N for classes"
        )
    present = [v for v in values if v != 0]
    if class_names is not None:
        names = [str(c) for c in class_names]
        extra = [v for v in present if v > len(names)]
        if extra:
            raise DataError(
                f"{labels_path.name}: label values {extra[:10]} exceed the {len(names)} class "
                f"names given; give one name per class id 1..{max(present)}"
            )
        mapping = {v: v for v in range(1, len(names) + 1)}
    else:
        mapping = {v: i + 1 for i, v in enumerate(present)}
        names = [f"class_{v}" for v in present]
    mapping[0] = 0
    return LabeledScene(
        cube=cube,
        labels=_remap(raw, mapping),
        class_names=names,
        card=None,
        name="custom",
        form=None,
        image_path=image_path,
        labels_path=labels_path,
    )


# --------------------------------------------------------------------------------------------
# Verifying and downloading
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileCheck:
    """Result of checking one file: status is ``ok``, ``missing``, ``mismatch`` or
    ``unverified`` (present, but the card knows no checksum; ``actual`` is its sha256)."""

    file: str
    path: Path | None
    status: str
    expected: str | None
    actual: str | None
    algorithm: str | None = None


def _digest(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _check_file(spec: FileSpec, path: Path | None) -> FileCheck:
    known = spec.checksum
    if path is None:
        return FileCheck(
            spec.name,
            None,
            "missing",
            known[1] if known else None,
            None,
            known[0] if known else None,
        )
    if known is None:
        return FileCheck(spec.name, path, "unverified", None, _digest(path, "sha256"), "sha256")
    algorithm, expected = known
    if spec.size is not None and path.stat().st_size != spec.size:
        return FileCheck(
            spec.name,
            path,
            "mismatch",
            f"{spec.size} bytes",
            f"{path.stat().st_size} bytes",
            "size",
        )
    actual = _digest(path, algorithm)
    status = "ok" if actual == expected else "mismatch"
    return FileCheck(spec.name, path, status, expected, actual, algorithm)


def verify_dataset(
    name: str | DatasetCard, root: str | os.PathLike[str] | None = None
) -> list[FileCheck]:
    """Check every file the card lists against its checksum (sha256 when known, else md5)."""
    card = get_card(name)
    base = resolve_root(root)
    return [_check_file(spec, _find_file(card, base, fname)) for fname, spec in card.files.items()]


# URLError covers DNS/refused/HTTP errors from urlopen; the rest can surface while reading.
_OFFLINE_ERRORS = (
    urllib.error.URLError,
    TimeoutError,
    ConnectionError,
    http.client.HTTPException,
    OSError,
)


def download_dataset(
    name: str | DatasetCard,
    root: str | os.PathLike[str] | None = None,
    timeout: float = 10,
) -> list[Path]:
    """Download the files of the dataset's first form into ``<root>/<folder>/``.

    Each file goes to ``<file>.partial``, is checked against the card's checksum, then renamed.
    Files already present and matching are kept. When the network is unreachable this fails
    at once with a :class:`DataError` naming the files and the folder to put them in by hand.
    """
    card = get_card(name)
    base = resolve_root(root)
    folder = base / card.folder
    form = card.forms[0]
    wanted = list(form.files)
    by_hand = (
        f"download {_form_txt(form)} from {card.source_url or 'the source in the card'} "
        f"and put them in {folder}"
    )
    if form.image.glob is not None:
        raise DataError(
            f"{card.name}: the provider hands the collection out by hand (no per-file URLs); "
            f"{by_hand}"
        )
    if card.kind == "detection":
        raise DataError(
            f"{card.name}: the benchmark is handed out as an archive (no per-file URLs), "
            f"which hsi does not fetch; download it from "
            f"{card.source_url or 'the source in the card'} "
            f"and unpack it into {base}, so that {folder / form.files[0]} exists"
        )
    no_url = [f for f in wanted if not card.files[f].url]
    if no_url:
        raise DataError(
            f"{card.name}: no download URL for {', '.join(no_url)} (the provider hands the "
            f"files out by hand); {by_hand}"
        )

    out: list[Path] = []
    for fname in wanted:
        spec = card.files[fname]
        existing = _find_file(card, base, fname)
        if existing is not None and _check_file(spec, existing).status in ("ok", "unverified"):
            out.append(existing)
            continue
        target = folder / fname
        target.parent.mkdir(parents=True, exist_ok=True)  # file names may hold sub-folders
        partial = folder / (fname + ".partial")
        sha, md5 = hashlib.sha256(), hashlib.md5()
        try:
            with (
                urllib.request.urlopen(spec.url, timeout=timeout) as resp,
                open(partial, "wb") as fh,
            ):
                for chunk in iter(lambda: resp.read(_CHUNK), b""):
                    fh.write(chunk)
                    sha.update(chunk)
                    md5.update(chunk)
        except _OFFLINE_ERRORS as exc:
            partial.unlink(missing_ok=True)
            reason = getattr(exc, "reason", None) or exc
            raise DataError(
                f"{card.name}: could not download {fname} from {spec.url} ({reason}); "
                f"{by_hand}, then run `hsi datasets verify {card.name}`"
            ) from None
        actual = {"sha256": sha.hexdigest(), "md5": md5.hexdigest()}
        known = spec.checksum
        if known is not None and actual[known[0]] != known[1]:
            partial.unlink(missing_ok=True)
            raise DataError(
                f"{card.name}: downloaded {fname} from {spec.url} but its {known[0]} is "
                f"{actual[known[0]]}, expected {known[1]} (the server sent another file); "
                f"{by_hand}"
            )
        os.replace(partial, target)
        out.append(target)
    return out
