"""Point-object detection data: a folder of ``.npy`` images with COCO-style annotations.

The folder is what :mod:`hsi.detection.simulator` writes (and what a real scene converted
to patches can be written as)::

    images/00000.npy          float32 (bands, height, width)
    annotations.json          {"images": [{id, file_name, height, width, bands}],
                               "annotations": [{id, image_id, category_id (1..K),
                                                bbox [x, y, w, h] pixels (x = column),
                                                point [x, y], area, abundance}],
                               "categories": [{id, name}], "wavelengths": [...] | null}

Everything is checked when the folder is read (boxes inside their image, known classes,
one band count, files present, the same image size within the folder), so a bad dataset
fails with one :class:`DataError` naming the file and the problem, before any training.

Normalisation is a per-band z-score with statistics of the *training images only*; the
statistics travel with the model's checkpoint. (SpecDETR's reference code divides the
SPOD radiances by a fixed 3000 instead; a z-score fitted on training data does the same
job for any sensor's scale without a hand-picked constant.)

A registered detection benchmark (a ``kind: detection`` dataset card, e.g. ``spod``) is used
by name: :func:`prepare_detection_dataset` converts its published folder once into one such
folder per split, kept under the cache (:func:`hsi.data.registry.cache_root`), and
``DetectionDataModule(dataset="spod", root=<data root>)`` then trains on the converted
``train`` split and tests on ``test``, exactly as with ``root=``/``test_root=`` folders.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from hsi.errors import ConfigError, DataError

if TYPE_CHECKING:
    from hsi.data.registry import DatasetCard, DetectionSplit

log = logging.getLogger(__name__)
TOL = 1e-6  # boxes may touch the image border up to float round-off


@dataclass
class DetectionFolder:
    """A checked detection folder: image paths, per-image objects, class names."""

    root: Path
    files: list[Path]
    image_ids: list[int]
    objects: list[dict[str, np.ndarray]]  # per image: labels (0-based), boxes xywh, points, areas
    class_names: list[str]
    bands: int
    size: tuple[int, int]  # (height, width)
    wavelengths: list[float] | None

    def __len__(self) -> int:
        return len(self.files)


def read_detection_folder(root: str | Path) -> DetectionFolder:
    """Read and check ``root/annotations.json`` (see the module docstring)."""
    root = Path(root)
    ann_path = root / "annotations.json"
    if not ann_path.is_file():
        raise DataError(f"{root}: no annotations.json; is this a detection dataset folder?")
    try:
        coco = json.loads(ann_path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{ann_path}: not valid JSON ({exc})") from None
    for key in ("images", "annotations", "categories"):
        if not isinstance(coco.get(key), list):
            raise DataError(f"{ann_path}: missing the {key!r} list")
    if not coco["images"]:
        raise DataError(f"{ann_path}: the images list is empty")
    if not coco["categories"]:
        raise DataError(f"{ann_path}: the categories list is empty")
    cats = sorted(coco["categories"], key=lambda c: c["id"])
    cat_index = {int(c["id"]): k for k, c in enumerate(cats)}
    class_names = [str(c.get("name", c["id"])) for c in cats]

    bands_seen = {int(im.get("bands", -1)) for im in coco["images"]}
    sizes = {(int(im["height"]), int(im["width"])) for im in coco["images"]}
    if len(bands_seen) != 1:
        raise DataError(f"{ann_path}: images have different band counts {sorted(bands_seen)}")
    if len(sizes) != 1:
        raise DataError(
            f"{ann_path}: images have different sizes {sorted(sizes)}; batches need one size "
            "(crop or tile the images to a common size)"
        )
    (bands,) = bands_seen
    (size,) = sizes
    by_image: dict[int, list[dict]] = {int(im["id"]): [] for im in coco["images"]}
    for ann in coco["annotations"]:
        image_id = int(ann["image_id"])
        if image_id not in by_image:
            raise DataError(
                f"{ann_path}: annotation {ann.get('id')} names unknown image {image_id}"
            )
        by_image[image_id].append(ann)

    files, ids, objects = [], [], []
    h, w = size
    for im in coco["images"]:
        image_id = int(im["id"])
        path = root / im["file_name"]
        if not path.is_file():
            raise DataError(f"{path}: image file listed in annotations.json is missing")
        labels, boxes, points, areas = [], [], [], []
        for ann in by_image[image_id]:
            where = f"{ann_path}: annotation {ann.get('id')} (image {im['file_name']})"
            cid = int(ann["category_id"])
            if cid not in cat_index:
                raise DataError(f"{where}: category_id {cid} is not among the categories")
            x, y, bw, bh = (float(v) for v in ann["bbox"])
            if bw <= 0 or bh <= 0:
                raise DataError(f"{where}: bbox {ann['bbox']} has no area")
            if x < -TOL or y < -TOL or x + bw > w + TOL or y + bh > h + TOL:
                raise DataError(
                    f"{where}: bbox [x={x}, y={y}, w={bw}, h={bh}] lies outside the "
                    f"{w}×{h} (width×height) image"
                )
            px, py = (float(v) for v in ann.get("point", (x + bw / 2, y + bh / 2)))
            labels.append(cat_index[cid])
            boxes.append((x, y, bw, bh))
            points.append((px, py))
            areas.append(float(ann.get("area", bw * bh)))
        files.append(path)
        ids.append(image_id)
        objects.append(
            {
                "labels": np.asarray(labels, dtype=np.int64),
                "boxes": np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
                "points": np.asarray(points, dtype=np.float32).reshape(-1, 2),
                "areas": np.asarray(areas, dtype=np.float32),
            }
        )
    return DetectionFolder(
        root, files, ids, objects, class_names, bands, size, coco.get("wavelengths")
    )


# Part of the cache stamp: bump when a converter's output changes, so old caches are rebuilt.
CONVERSION_VERSION = 1


def _listing_digest(folder: Path) -> str:
    """sha256 of the ``.npy`` files' names, sizes and modification times in ``folder``: a
    cheap way to notice replaced or added images without reading hundreds of megabytes."""
    h = hashlib.sha256()
    for p in sorted(folder.glob("*.npy")):
        st = p.stat()
        h.update(f"{p.name}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def prepare_detection_dataset(
    dataset: str,
    root: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> dict[str, Path]:
    """The hsi detection folder of every split of a registered detection benchmark.

    The card's folder is found under the data root (``root``, else ``$HSI_DATA``, ...; see
    :func:`hsi.data.registry.locate_files`) and each split is converted by the card's format
    (``spod``: :func:`hsi.detection.spod.convert_spod`) into ``<cache_dir>/<split>``, by
    default ``<cache_root>/detection/<name>/<hash of the source folder's path>``. A split is
    converted again only when its stamp (annotation file sha256, image listing, converter
    version) no longer matches, so a second run starts at once. The converted folders are
    checked against the card: another band count or other class names is a DataError (not
    the benchmark the card describes); another image size or count is only logged.

    Raises:
        ConfigError: unknown dataset, or a card that is not a detection benchmark.
        DataError: the benchmark's folder or one of its files is missing (the message names
            the expected path and the download page), or it differs from the card.
    """
    from hsi.data.registry import cache_root, file_sha256, get_card, locate_files

    card = get_card(dataset)
    if card.kind != "detection":
        raise ConfigError(
            f"{card.name} is a {card.kind} dataset, not a detection benchmark; give "
            "DetectionDataModule a detection card (`hsi datasets list` shows each card's kind) "
            "or root= a detection folder"
        )
    resolved = locate_files(card, root)
    form = card.form(resolved.form)
    first = Path(form.files[0])
    source = resolved.image.parents[len(first.parts) - 1]  # the folder holding the layout
    where = f"download it from {card.source_url or 'the source named in the card'}"
    for split in form.splits.values():
        for rel, what in ((split.annotations, "annotation file"), (split.images, "folder")):
            path = source / rel
            if not (path.is_file() if what == "annotation file" else path.is_dir()):
                raise DataError(
                    f"{card.name}: the {split.name} {what} {path} is missing from {source}; "
                    f"unpack the whole {card.folder} archive there ({where})"
                )
    if cache_dir is None:
        key = hashlib.sha256(str(source).encode()).hexdigest()[:16]
        base = cache_root() / "detection" / card.name / key
    else:
        base = Path(cache_dir).expanduser().resolve()
    out: dict[str, Path] = {}
    for split in form.splits.values():
        target = base / split.name
        stamp_path = base / f"{split.name}.source.json"
        stamp = {
            "dataset": card.name,
            "format": form.format,
            "source": str(source),
            "annotations_sha256": file_sha256(source / split.annotations),
            "images": _listing_digest(source / split.images),
            "version": CONVERSION_VERSION,
        }
        try:
            current = json.loads(stamp_path.read_text())
        except (OSError, ValueError):
            current = None
        if current != stamp or not (target / "annotations.json").is_file():
            log.info("converting %s %s from %s into %s", card.name, split.name, source, target)
            stamp_path.unlink(missing_ok=True)  # a conversion cut short leaves no valid stamp
            _converter(str(form.format))(source, split.name, target, overwrite=True)
            tmp = stamp_path.with_name(f".{stamp_path.name}.partial")
            tmp.write_text(json.dumps(stamp, indent=1))
            os.replace(tmp, stamp_path)
        _check_against_card(card, split, read_detection_folder(target), source)
        out[split.name] = target
    return out


def _converter(fmt: str) -> Callable[..., Any]:
    """The converter of a detection card's ``format`` (the card parser validates the names:
    ``hsi.data.cards.DETECTION_FORMATS``). Imported here, not at module level, because
    ``hsi.detection.spod`` imports this module."""
    if fmt == "spod":
        from hsi.detection.spod import convert_spod

        return convert_spod
    raise ConfigError(f"no converter for detection format {fmt!r}")


def _check_against_card(
    card: DatasetCard, split: DetectionSplit, folder: DetectionFolder, source: Path
) -> None:
    """Band count and class names must be the card's (else it is another benchmark); the
    image size and count are the published ones, and a difference is only reported."""
    if folder.bands != card.bands:
        raise DataError(
            f"{card.name}: {source} holds {folder.bands}-band images, the card says "
            f"{card.bands}; this is another release of the benchmark (use root= with its "
            "converted folders instead)"
        )
    if folder.class_names != card.class_names:
        raise DataError(
            f"{card.name}: {source} has the classes {folder.class_names}, the card says "
            f"{card.class_names}; this is another release of the benchmark"
        )
    if folder.size != (card.height, card.width):
        log.warning(
            "%s %s: images are %dx%d, the card records %dx%d",
            card.name,
            split.name,
            *folder.size,
            card.height,
            card.width,
        )
    if split.count is not None and len(folder) != split.count:
        log.warning(
            "%s %s: %d images, the authors publish %d",
            card.name,
            split.name,
            len(folder),
            split.count,
        )


def load_image(path: Path, bands: int, size: tuple[int, int]) -> np.ndarray:
    """One (bands, height, width) float32 image, checked against its annotation record."""
    try:
        a = np.load(path)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read the image ({exc})") from None
    if a.shape != (bands, *size):
        raise DataError(
            f"{path}: image shape {a.shape} differs from annotations.json "
            f"(bands={bands}, height={size[0]}, width={size[1]})"
        )
    if not np.isfinite(a).all():
        raise DataError(f"{path}: the image has NaN or infinite values")
    return a.astype(np.float32, copy=False)


class DetectionDataset(Dataset):
    """Normalised images and their targets, optionally flipped left-right (training)."""

    def __init__(
        self,
        folder: DetectionFolder,
        indices: list[int],
        mean: np.ndarray,
        std: np.ndarray,
        flip: bool = False,
        seed: int = 0,
    ) -> None:
        self.folder, self.indices = folder, indices
        self.mean = mean.astype(np.float32)[:, None, None]
        self.std = std.astype(np.float32)[:, None, None]
        self.flip = flip
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict[str, Any]:
        k = self.indices[i]
        f = self.folder
        image = (load_image(f.files[k], f.bands, f.size) - self.mean) / self.std
        obj = f.objects[k]
        boxes, points = obj["boxes"].copy(), obj["points"].copy()
        h, w = f.size
        if self.flip and self.rng.random() < 0.5:
            image = image[:, :, ::-1]
            boxes[:, 0] = w - boxes[:, 0] - boxes[:, 2]
            points[:, 0] = w - points[:, 0]
        cx = (boxes[:, 0] + boxes[:, 2] / 2) / w
        cy = (boxes[:, 1] + boxes[:, 3] / 2) / h
        norm = np.stack((cx, cy, boxes[:, 2] / w, boxes[:, 3] / h), axis=1)
        return {
            "image": torch.from_numpy(np.ascontiguousarray(image)),
            "target": {
                "labels": torch.from_numpy(obj["labels"]),
                "boxes": torch.from_numpy(norm.astype(np.float32)).reshape(-1, 4),
                "points": torch.from_numpy(points),
                "areas": torch.from_numpy(obj["areas"]),
                "image_id": f.image_ids[k],
            },
        }


def collate(batch: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "image": torch.stack([b["image"] for b in batch]),
        "targets": [b["target"] for b in batch],
    }


class DetectionDataModule(L.LightningDataModule):
    """Train/val (and test) loaders over a detection folder, or a registered benchmark.

    Args:
        root: the training folder (see the module docstring), e.g. what
            ``hsi simulate ... --out sim/ip_train`` wrote. With ``dataset``: the data root
            holding the card's folder (``None``: ``$HSI_DATA``, else the per-user default).
        test_root: a separate test folder (e.g. ``sim/ip_test``, simulated on a disjoint
            part of the scene). Without one, the test set is the validation images. Not
            given with ``dataset``: the card's ``test`` split is the test set.
        val: fraction of ``root``'s images held out for validation (seeded).
        seed: seeds the split and the flips.
        batch_size, num_workers: loader settings (SpecDETR's config: batch 4).
        flip: random left-right flips of training images (the reference pipeline's
            ``RandomFlip(prob=0.5)``).
        dataset: a ``kind: detection`` registry card (e.g. ``"spod"``): its folder under the
            data root is converted once (see :func:`prepare_detection_dataset`) and its
            ``train``/``test`` splits are used as ``root``/``test_root``.
        cache_dir: where the converted splits go (default: under the cache, see
            :func:`prepare_detection_dataset`).
    """

    def __init__(
        self,
        root: str | None = None,
        test_root: str | None = None,
        val: float = 0.2,
        seed: int = 0,
        batch_size: int = 4,
        num_workers: int = 0,
        flip: bool = True,
        dataset: str | None = None,
        cache_dir: str | None = None,
    ) -> None:
        super().__init__()
        if not 0.0 <= val < 1.0:
            raise ConfigError(f"val must be a fraction in [0, 1), got {val}")
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        self.dataset, self.cache_dir = dataset, cache_dir
        self.data_root: str | None = None
        if dataset is not None:
            from hsi.data.registry import get_card

            card = get_card(dataset)  # an unknown name fails here, not at the first batch
            if card.kind != "detection":
                raise ConfigError(
                    f"dataset {card.name!r} is a {card.kind} dataset; DetectionDataModule "
                    "takes a detection card (`hsi datasets list` shows each card's kind)"
                )
            if test_root is not None:
                raise ConfigError(
                    f"give test_root or dataset, not both: the {card.name} card's test split "
                    "is the test set"
                )
            self.dataset = card.name
            # root is the data root here; root/test_root become the converted splits.
            self.data_root, root = root, None
        elif root is None:
            raise ConfigError(
                "give root (a detection folder) or dataset (a detection card, e.g. 'spod')"
            )
        self.root, self.test_root = root, test_root
        self.val, self.seed = val, seed
        self.batch_size, self.num_workers, self.flip = batch_size, num_workers, flip
        self.folder: DetectionFolder | None = None
        self.test_folder: DetectionFolder | None = None
        self.train_idx: list[int] = []
        self.val_idx: list[int] = []
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None

    # ---- facts the task reads ---------------------------------------------------------
    @property
    def in_bands(self) -> int:
        return self._folder().bands

    @property
    def num_classes(self) -> int:
        return len(self._folder().class_names)

    @property
    def class_names(self) -> list[str]:
        return self._folder().class_names

    @property
    def image_size(self) -> tuple[int, int]:
        return self._folder().size

    @property
    def normalization(self) -> dict[str, list[float]]:
        if self.mean is None:
            self.setup("fit")
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    def _resolve(self) -> None:
        """With ``dataset``: convert the card's splits (once) and point root/test_root at
        them; without, nothing to do."""
        if self.dataset is None or self.root is not None:
            return
        splits = prepare_detection_dataset(self.dataset, self.data_root, self.cache_dir)
        self.root = str(splits["train"])
        self.test_root = str(splits["test"]) if "test" in splits else None

    def prepare_data(self) -> None:
        # Lightning calls this once per node before setup: convert before any rank reads.
        self._resolve()

    def _folder(self) -> DetectionFolder:
        if self.folder is None:
            self._resolve()
            self.folder = read_detection_folder(self.root)
        return self.folder

    # ---- split and normalisation ------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        folder = self._folder()
        if self.mean is None:
            n = len(folder)
            order = np.random.default_rng(self.seed).permutation(n)
            n_val = int(round(self.val * n)) if self.val > 0 else 0
            if self.val > 0 and n_val == 0 and n >= 2:
                n_val = 1
            if n - n_val < 1:
                raise DataError(
                    f"{folder.root}: {n} images leave none for training at val={self.val}"
                )
            self.val_idx = sorted(order[:n_val].tolist())
            self.train_idx = sorted(order[n_val:].tolist())
            self.mean, self.std = self._fit_normalization(self.train_idx)
        if self.test_root is not None and self.test_folder is None:
            test = read_detection_folder(self.test_root)
            if test.bands != folder.bands:
                raise DataError(
                    f"{test.root} has {test.bands}-band images but {folder.root} {folder.bands}"
                )
            if test.class_names != folder.class_names:
                raise DataError(
                    f"{test.root} has classes {test.class_names} but {folder.root} "
                    f"{folder.class_names}; simulate both with the same library"
                )
            self.test_folder = test

    def _fit_normalization(self, indices: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """Per-band mean and std over every pixel of the training images (float64 sums)."""
        f = self._folder()
        total = np.zeros(f.bands)
        total_sq = np.zeros(f.bands)
        count = 0
        for k in indices:
            a = load_image(f.files[k], f.bands, f.size).reshape(f.bands, -1).astype(np.float64)
            total += a.sum(1)
            total_sq += (a * a).sum(1)
            count += a.shape[1]
        mean = total / count
        std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
        std = np.where(std > 1e-12, std, 1.0)  # a constant band stays constant (0 after centring)
        return mean, std

    # ---- loaders ----------------------------------------------------------------------
    def _loader(self, folder: DetectionFolder, idx: list[int], train: bool) -> DataLoader:
        ds = DetectionDataset(
            folder, idx, self.mean, self.std, flip=train and self.flip, seed=self.seed
        )
        return DataLoader(
            ds,
            batch_size=self.batch_size,
            shuffle=train,
            num_workers=self.num_workers,
            collate_fn=collate,
            generator=torch.Generator().manual_seed(self.seed) if train else None,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self._folder(), self.train_idx, train=True)

    def val_dataloader(self) -> DataLoader | list:
        if not self.val_idx:
            return []
        return self._loader(self._folder(), self.val_idx, train=False)

    def test_dataloader(self) -> DataLoader:
        if self.test_folder is not None:
            return self._loader(self.test_folder, list(range(len(self.test_folder))), False)
        if not self.val_idx:
            raise ConfigError("no test set: give test_root or a val fraction > 0")
        log.warning("no test_root: testing on the validation images of %s", self.root)
        return self._loader(self._folder(), self.val_idx, train=False)

    def describe(self) -> dict[str, Any]:
        f = self._folder()
        return {
            "dataset": self.dataset,
            "root": str(f.root),
            "test_root": self.test_root,
            "test_is_validation": self.test_root is None,
            "images": len(f),
            "train_images": len(self.train_idx),
            "val_images": len(self.val_idx),
            "bands": f.bands,
            "image_size": list(f.size),
            "class_names": f.class_names,
            "wavelengths": f.wavelengths,
            "normalization": "per-band z-score fitted on the training images",
        }
