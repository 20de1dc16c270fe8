"""Dataset cards: one YAML file per benchmark scene, parsed into :class:`DatasetCard`.

A card (``datasets/<name>.yaml``, shipped as ``hsi._datasets``) says what a scene is (sensor,
shape, classes), which files hold it (one or more *forms*, e.g. the GIC ``.mat`` pair or an
``.npy`` pair), where those files come from and their checksums. ``datasets/README.md`` gives
the schema. This module only reads and checks cards; :mod:`hsi.data.registry` finds, checks
and loads the files they name.

Cards have a ``kind``: ``classification`` (the default: a scene with per-pixel labels),
``restoration`` (clean cubes for denoising / super-resolution, no labels: one scene, or a
collection of scenes named by a file glob or list, e.g. ICVL's 201 ``.mat`` files) or
``detection`` (a point-object benchmark such as SpecDETR's SPOD: many small images with
object boxes in COCO annotation files, split into train and test, no per-pixel labels).
"""

from __future__ import annotations

import difflib
import importlib.resources
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from hsi.errors import ConfigError

__all__ = [
    "DETECTION_FORMATS",
    "KINDS",
    "PIXELS_LAYOUT",
    "DatasetCard",
    "DetectionSplit",
    "FileRef",
    "FileSpec",
    "FormSpec",
    "cards_dir",
    "get_card",
    "list_datasets",
]

KINDS = ("classification", "restoration", "detection")
# Detection benchmark layouts hsi converts (hsi.detection; by hand: `hsi <format>-convert`),
# each with the split names its converter knows. ``spod``: SpecDETR's SPOD_30b_8c,
# annotations/<split>.json + <split>/*.npy (hsi.detection.spod).
DETECTION_FORMATS: dict[str, tuple[str, ...]] = {"spod": ("train", "test")}
# Layout of a ``bands x pixels`` matrix (unmixing releases such as Jasper Ridge's ``Y``); the
# card gives ``pixels_shape: [rows, cols]`` and the pixels run down the columns (MATLAB order).
PIXELS_LAYOUT = "pixels"


@dataclass(frozen=True)
class FileRef:
    """The image or labels of a form: its file (the first tile of a tiled one), the variable
    inside it (.mat), the axis layout, and for a tiled scene every tile in the card's order.

    On a restoration card ``files`` lists separate scenes (not tiles), ``glob`` names a
    collection whose members are not listed one by one (``file`` then holds the pattern, for
    messages), and ``pixels_shape`` gives ``(rows, cols)`` of a ``layout: pixels`` matrix.

    On a detection card ``files`` lists the splits' annotation files: they are what must be
    found for the benchmark to count as present (the images are the files they name)."""

    file: str
    variable: str | None = None
    layout: str | None = None
    files: tuple[str, ...] = ()
    glob: str | None = None
    pixels_shape: tuple[int, int] | None = None

    @property
    def names(self) -> tuple[str, ...]:
        """Every file this reference needs by name (one, all tiles, or none for a glob)."""
        if self.glob is not None:
            return ()
        return self.files or (self.file,)

    @property
    def tiled(self) -> bool:
        """True when the card names a list of files (GeoTIFF tiles, or restoration scenes)."""
        return bool(self.files)


@dataclass(frozen=True)
class DetectionSplit:
    """One split of a detection benchmark as its authors lay it out: the COCO annotation file
    and the folder of images (both relative to the card's folder), and the number of images
    the authors publish (``None`` when unknown; a different count is reported, not refused)."""

    name: str
    annotations: str
    images: str
    count: int | None = None


@dataclass(frozen=True)
class FormSpec:
    """An alternative set of files holding the same scene (e.g. ``mat`` or ``npy``).

    A detection card's form has a ``format`` (the converter that reads it) and ``splits``;
    its ``image`` lists the splits' annotation files (see :class:`FileRef`)."""

    name: str
    image: FileRef
    labels: FileRef | None  # None on restoration and detection cards
    format: str | None = None  # detection cards: a key of DETECTION_FORMATS
    splits: Mapping[str, DetectionSplit] = field(default_factory=dict)

    @property
    def files(self) -> tuple[str, ...]:
        return (*self.image.names, *(self.labels.names if self.labels else ()))


@dataclass(frozen=True)
class FileSpec:
    """What is known about one file: checksums (``None`` when unknown), size and source URL."""

    name: str
    sha256: str | None = None
    md5: str | None = None
    size: int | None = None
    url: str | None = None

    @property
    def checksum(self) -> tuple[str, str] | None:
        """``(algorithm, hex digest)`` to verify against: sha256 when known, else md5."""
        if self.sha256:
            return ("sha256", self.sha256.lower())
        if self.md5:
            return ("md5", self.md5.lower())
        return None


@dataclass(frozen=True, eq=False)
class DatasetCard:
    """A parsed dataset card. See ``datasets/README.md`` for the schema."""

    name: str
    title: str
    sensor: str
    folder: str
    shape: Mapping[str, int]
    spatial_resolution_m: float | None
    wavelength_range_nm: tuple[float, float] | None
    wavelengths_nm: tuple[float, ...] | None
    ignore_label: int
    classes: tuple[str, ...] | Mapping[int, str]
    class_counts: tuple[int, ...] | None
    forms: tuple[FormSpec, ...]
    files: Mapping[str, FileSpec]
    source_url: str | None = None
    licence: str | None = None
    citation: str | None = None
    notes: str | None = None
    aliases: tuple[str, ...] = ()
    path: Path | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)
    kind: str = "classification"
    # Restoration collections: the papers' fixed held-out scene lists, split name -> file names.
    test_scenes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def __hash__(self) -> int:
        return hash(self.name)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DatasetCard) and other.name == self.name and other.raw == self.raw

    # -- shape ---------------------------------------------------------------------------
    @property
    def height(self) -> int:
        return int(self.shape["height"])

    @property
    def width(self) -> int:
        return int(self.shape["width"])

    @property
    def bands(self) -> int:
        return int(self.shape["bands"])

    @property
    def cube_shape(self) -> tuple[int, int, int]:
        """``(bands, height, width)``, the order of :class:`SpectralCube`."""
        return (self.bands, self.height, self.width)

    # -- classes -------------------------------------------------------------------------
    @property
    def label_values(self) -> list[int]:
        """The label id each class has in the original file, in contiguous-class order."""
        if isinstance(self.classes, Mapping):
            return sorted(int(k) for k in self.classes)
        return list(range(1, len(self.classes) + 1))

    @property
    def class_names(self) -> list[str]:
        """Class names in contiguous order (class ``i`` of the loaded labels is ``[i - 1]``)."""
        if isinstance(self.classes, Mapping):
            return [str(self.classes[v]) for v in self.label_values]
        return [str(c) for c in self.classes]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def label_map(self) -> dict[int, int]:
        """File label id -> contiguous class id (1..N); the ignore label maps to 0."""
        mapping = {v: i + 1 for i, v in enumerate(self.label_values)}
        mapping[self.ignore_label] = 0
        return mapping

    # -- files ---------------------------------------------------------------------------
    def form(self, name: str | None = None) -> FormSpec:
        """The named form (the first one when ``name`` is None)."""
        if name is None:
            return self.forms[0]
        for f in self.forms:
            if f.name == name:
                return f
        known = ", ".join(f.name for f in self.forms)
        raise ConfigError(f"{self.name} has no form {name!r}; its forms are: {known}")

    @property
    def form_names(self) -> list[str]:
        return [f.name for f in self.forms]

    @property
    def downloadable(self) -> bool:
        """True when every file of the first form is named and has a URL."""
        first = self.forms[0]
        return first.image.glob is None and all(self.files[f].url for f in first.files)

    @property
    def has_labels(self) -> bool:
        """False for restoration cards (clean cubes only) and detection cards (object boxes,
        no per-pixel labels)."""
        return self.kind == "classification"


def cards_dir() -> Path:
    """The folder holding the ``*.yaml`` dataset cards."""
    try:
        path = Path(str(importlib.resources.files("hsi._datasets")))
        if path.is_dir() and any(path.glob("*.yaml")):
            return path
    except (ModuleNotFoundError, TypeError):
        pass
    # Running from a source checkout that was not installed: datasets/ beside hsi/.
    fallback = Path(__file__).resolve().parents[2] / "datasets"
    if fallback.is_dir():
        return fallback
    raise ConfigError(
        "dataset cards not found (hsi._datasets is missing); reinstall hsi "
        "(pip install -e .) so the datasets/ folder is packaged"
    )


def _norm(name: str) -> str:
    return re.sub(r"[\s\-.]+", "_", name.strip().lower())


def _squash(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _card_error(path: Path, msg: str) -> ConfigError:
    return ConfigError(f"dataset card {path.name}: {msg}; fix the card (see datasets/README.md)")


def _file_ref(
    path: Path, form: str, role: str, value: Any, kind: str = "classification"
) -> FileRef:
    if isinstance(value, str):
        value = {"file": value}
    restoration = kind == "restoration"
    keys = ("file", "files", "glob") if restoration else ("file", "files")
    if not isinstance(value, Mapping) or sum(bool(value.get(k)) for k in keys) != 1:
        want = "a 'file', a 'files' list or a 'glob'"
        if not restoration:
            want = "either a 'file' or a 'files' list"
        raise _card_error(path, f"form {form!r} {role} needs {want}")
    layout = value.get("layout")
    variable = None if value.get("variable") is None else str(value["variable"])
    layout = None if layout is None else str(layout).lower()
    pixels = value.get("pixels_shape")
    if (layout == PIXELS_LAYOUT) != (pixels is not None):
        raise _card_error(
            path,
            f"form {form!r} {role}: 'layout: pixels' and 'pixels_shape: [rows, cols]' go together",
        )
    pixels_shape = None
    if pixels is not None:
        if not restoration:
            raise _card_error(path, f"form {form!r} {role}: layout pixels is for restoration cards")
        if (
            not isinstance(pixels, list)
            or len(pixels) != 2
            or not all(isinstance(n, int) and n > 0 for n in pixels)
        ):
            raise _card_error(path, f"form {form!r} {role}: pixels_shape must be [rows, cols]")
        pixels_shape = (int(pixels[0]), int(pixels[1]))
    if value.get("glob"):
        pattern = str(value["glob"])
        return FileRef(file=pattern, variable=variable, layout=layout, glob=pattern)
    if value.get("file"):
        return FileRef(
            file=str(value["file"]), variable=variable, layout=layout, pixels_shape=pixels_shape
        )
    tiles = value["files"]
    if not isinstance(tiles, list) or not all(isinstance(t, str) and t for t in tiles):
        raise _card_error(path, f"form {form!r} {role} 'files' must be a list of file names")
    if len(set(tiles)) != len(tiles):
        raise _card_error(path, f"form {form!r} {role} 'files' names a file twice")
    if variable is not None and not restoration:
        raise _card_error(path, f"form {form!r} {role}: 'variable' applies to one .mat file")
    # On a restoration card the files are separate scenes, each holding the same variable.
    return FileRef(
        file=tiles[0],
        variable=variable,
        layout=layout,
        files=tuple(tiles),
        pixels_shape=pixels_shape,
    )


def _parse_card(path: Path) -> DatasetCard:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise _card_error(path, f"not valid YAML ({exc})") from None
    if not isinstance(raw, Mapping):
        raise _card_error(path, "expected a mapping at the top level")
    kind = str(raw.get("kind", "classification")).lower()
    if kind not in KINDS:
        raise _card_error(path, f"kind {kind!r} is not one of {', '.join(KINDS)}")
    required = ["name", "title", "sensor", "folder", "shape", "forms", "files"]
    if kind == "classification":
        required.insert(5, "classes")
    elif kind == "detection":
        # Object classes, but no per-pixel labels; the annotation files need no checksums.
        required[required.index("files")] = "classes"
        labelled = [k for k in ("class_counts", "ignore_label") if k in raw]
        if labelled:
            raise _card_error(
                path,
                f"a detection card has object classes but no per-pixel labels, so no "
                f"{', '.join(labelled)}",
            )
    else:
        labelled = [k for k in ("classes", "class_counts", "ignore_label") if k in raw]
        if labelled:
            raise _card_error(
                path, f"a restoration card has no labels, so no {', '.join(labelled)}"
            )
    missing = [k for k in required if k not in raw]
    if missing:
        raise _card_error(path, f"missing keys {missing}")
    name = str(raw["name"])
    if name != path.stem:
        raise _card_error(path, f"name {name!r} differs from the file name {path.stem!r}")

    shape = raw["shape"]
    if not isinstance(shape, Mapping) or any(
        not isinstance(shape.get(k), int) or shape.get(k) <= 0 for k in ("height", "width", "bands")
    ):
        raise _card_error(path, "shape needs positive integers height, width, bands")

    ignore = int(raw.get("ignore_label", 0))
    classes_raw = raw.get("classes")
    if kind == "restoration":
        classes = ()
    elif kind == "detection":
        # The converters renumber the file's category ids 1..K in id order, keeping names.
        if not isinstance(classes_raw, list) or not classes_raw:
            raise _card_error(
                path, "classes of a detection card must be a non-empty list of category names"
            )
        classes = tuple(str(c) for c in classes_raw)
    elif isinstance(classes_raw, Mapping):
        try:
            classes: tuple[str, ...] | Mapping[int, str] = {
                int(k): str(v) for k, v in classes_raw.items()
            }
        except (TypeError, ValueError):
            raise _card_error(path, "classes mapping keys must be integer label values") from None
        if ignore in classes:
            raise _card_error(path, f"classes use the ignore label {ignore}")
    elif isinstance(classes_raw, list) and classes_raw:
        classes = tuple(str(c) for c in classes_raw)
        if ignore in range(1, len(classes) + 1):
            raise _card_error(
                path, f"ignore_label {ignore} collides with class ids 1..{len(classes)}"
            )
    else:
        raise _card_error(path, "classes must be a non-empty list or a {label value: name} mapping")

    counts = raw.get("class_counts")
    if counts is not None:
        if not isinstance(counts, list) or len(counts) != len(classes):
            raise _card_error(path, f"class_counts needs {len(classes)} entries, one per class")
        counts = tuple(int(c) for c in counts)

    files: dict[str, FileSpec] = {}
    raw_files = raw.get("files")
    if raw_files is None and kind != "classification":
        raw_files = {}
    if not isinstance(raw_files, Mapping):
        raise _card_error(path, "files must map file names to {sha256, md5, size, url}")
    for fname, spec in raw_files.items():
        spec = spec or {}
        files[str(fname)] = FileSpec(
            name=str(fname),
            sha256=spec.get("sha256"),
            md5=spec.get("md5"),
            size=None if spec.get("size") is None else int(spec["size"]),
            url=spec.get("url"),
        )

    forms: list[FormSpec] = []
    if not isinstance(raw["forms"], list) or not raw["forms"]:
        raise _card_error(path, "forms must be a non-empty list")
    for i, fr in enumerate(raw["forms"]):
        if not isinstance(fr, Mapping):
            raise _card_error(path, f"form {i + 1} must be a mapping")
        fname = str(fr.get("name") or f"form{i + 1}")
        if kind == "detection":
            form = _detection_form(path, fname, fr)
            for f in form.files:  # no checksums known: listed so `verify` reports the files
                files.setdefault(f, FileSpec(name=f))
            forms.append(form)
            continue
        if kind == "restoration" and fr.get("labels") is not None:
            raise _card_error(path, f"form {fname!r}: a restoration card has no labels")
        form = FormSpec(
            name=fname,
            image=_file_ref(path, fname, "image", fr.get("image"), kind),
            labels=(
                None
                if kind == "restoration"
                else _file_ref(path, fname, "labels", fr.get("labels"))
            ),
        )
        for f in form.files:
            if f not in files:
                raise _card_error(path, f"form {fname!r} names {f}, which is not under files")
        forms.append(form)
    if len({f.name for f in forms}) != len(forms):
        raise _card_error(path, "form names must be unique")

    wl = raw.get("wavelengths_nm")
    if wl is not None:
        if not isinstance(wl, list) or len(wl) != shape["bands"]:
            raise _card_error(path, f"wavelengths_nm needs {shape['bands']} values (or null)")
        wl = tuple(float(x) for x in wl)
    wr = raw.get("wavelength_range_nm")
    res = raw.get("spatial_resolution_m")
    test_scenes = _parse_test_scenes(path, raw.get("test_scenes"), kind)

    return DatasetCard(
        name=name,
        title=str(raw["title"]),
        sensor=str(raw["sensor"]),
        folder=str(raw["folder"]),
        shape={k: int(shape[k]) for k in ("height", "width", "bands")},
        spatial_resolution_m=None if res is None else float(res),
        wavelength_range_nm=None if wr is None else (float(wr[0]), float(wr[1])),
        wavelengths_nm=wl,
        ignore_label=ignore,
        classes=classes,
        class_counts=counts,
        forms=tuple(forms),
        files=files,
        source_url=_source_url(path, raw.get("source_url")),
        licence=raw.get("licence"),
        citation=raw.get("citation"),
        notes=raw.get("notes"),
        aliases=tuple(str(a) for a in raw.get("aliases") or ()),
        path=path,
        raw=dict(raw),
        kind=kind,
        test_scenes=test_scenes,
    )


def _source_url(path: Path, value: Any) -> str | None:
    """``source_url``: one address, or a list of mirrors (e.g. SPOD's Baidu Drive and OneDrive
    links), kept as one string so that messages can name them all."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list) and value and all(isinstance(v, str) and v for v in value):
        return " or ".join(value)
    raise _card_error(path, "source_url must be an address or a list of addresses")


def _detection_form(path: Path, name: str, value: Mapping[str, Any]) -> FormSpec:
    """A detection card's form: ``format`` and ``splits: {split: {annotations, images,
    count}}``. The paths must be the ones the format's converter reads, so the card cannot
    promise a layout that conversion would not find."""
    extra = [k for k in ("image", "labels") if k in value]
    if extra:
        raise _card_error(
            path, f"form {name!r}: a detection form has 'format' and 'splits', not {extra}"
        )
    fmt = str(value.get("format") or "").lower()
    if fmt not in DETECTION_FORMATS:
        raise _card_error(
            path,
            f"form {name!r}: format {fmt!r} is not one of {', '.join(DETECTION_FORMATS)} "
            "(the benchmark layouts hsi converts)",
        )
    raw = value.get("splits")
    if not isinstance(raw, Mapping) or "train" not in raw:
        raise _card_error(
            path,
            f"form {name!r} needs splits with at least 'train': "
            "{annotations: <file>, images: <folder>, count: <images>}",
        )
    splits: dict[str, DetectionSplit] = {}
    for split, spec in raw.items():
        split = str(split)
        where = f"form {name!r} split {split!r}"
        if split not in DETECTION_FORMATS[fmt]:
            known = ", ".join(DETECTION_FORMATS[fmt])
            raise _card_error(path, f"{where}: the {fmt} format has the splits {known}")
        if not isinstance(spec, Mapping) or not all(
            isinstance(spec.get(k), str) and spec.get(k) for k in ("annotations", "images")
        ):
            raise _card_error(path, f"{where} needs 'annotations' (a file) and 'images' (a folder)")
        count = spec.get("count")
        if count is not None and (not isinstance(count, int) or count < 1):
            raise _card_error(path, f"{where}: count must be a positive number of images")
        images = spec["images"].rstrip("/")
        if fmt == "spod" and (spec["annotations"], images) != (f"annotations/{split}.json", split):
            raise _card_error(
                path,
                f"{where}: the spod format keeps annotations/{split}.json and {split}/ "
                "(SpecDETR's layout, what hsi.detection.spod reads)",
            )
        splits[split] = DetectionSplit(split, spec["annotations"], images, count)
    annotations = tuple(s.annotations for s in splits.values())
    return FormSpec(
        name=name,
        image=FileRef(file=annotations[0], files=annotations),
        labels=None,
        format=fmt,
        splits=splits,
    )


def _parse_test_scenes(path: Path, value: Any, kind: str) -> dict[str, tuple[str, ...]]:
    """``test_scenes``: a list of file names (split ``test``) or ``{split: [file names]}``."""
    if value is None:
        return {}
    if kind != "restoration":
        raise _card_error(path, "test_scenes belong on restoration cards")
    splits = {"test": value} if isinstance(value, list) else value
    if not isinstance(splits, Mapping) or not splits:
        raise _card_error(path, "test_scenes must be a list of files or {split: [files]}")
    out: dict[str, tuple[str, ...]] = {}
    for split, names in splits.items():
        if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
            raise _card_error(path, f"test_scenes {split!r} must be a list of file names")
        if len(set(names)) != len(names):
            raise _card_error(path, f"test_scenes {split!r} names a file twice")
        out[str(split)] = tuple(names)
    return out


@lru_cache(maxsize=1)
def _all_cards() -> dict[str, DatasetCard]:
    cards = {}
    for p in sorted(cards_dir().glob("*.yaml")):
        card = _parse_card(p)
        cards[card.name] = card
    return cards


def list_datasets() -> list[str]:
    """Names of all registered datasets, sorted."""
    return sorted(_all_cards())


def get_card(name: str | DatasetCard) -> DatasetCard:
    """The card of a dataset. Case, ``-``/``_``/space and registered aliases are accepted."""
    if isinstance(name, DatasetCard):
        return name
    cards = _all_cards()
    key = _norm(str(name))
    if key in cards:
        return cards[key]
    squashed = _squash(str(name))
    for card in cards.values():
        if squashed == _squash(card.name) or any(squashed == _squash(a) for a in card.aliases):
            return card
    candidates = {c.name: c.name for c in cards.values()}
    for c in cards.values():
        for a in c.aliases:
            candidates[_norm(a)] = c.name
    close = difflib.get_close_matches(key, list(candidates), n=1, cutoff=0.5)
    hint = f" (did you mean {candidates[close[0]]}?)" if close else ""
    raise ConfigError(f"unknown dataset {name!r}{hint}; known datasets: {', '.join(sorted(cards))}")
