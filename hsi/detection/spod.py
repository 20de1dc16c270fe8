"""Convert the SPOD benchmark (SpecDETR's ``SPOD_30b_8c``) to hsi's detection folder format.

SPOD is the simulated hyperspectral point-object benchmark of Li et al., "SpecDETR: A
transformer-based hyperspectral point object detection network", ISPRS J. P&RS 2025
(arXiv:2405.10148). It is not redistributed here. Users who downloaded ``SPOD_30b_8c.zip``
(links in github.com/ZhaoxuLi123/SpecDETR, README "Dataset Preparation"; the registry card
``datasets/spod.yaml``, ``hsi datasets info spod``) unzip it into their data root, so that
``<root>/SPOD_30b_8c/annotations/train.json`` exists, and train with
``DetectionDataModule(dataset="spod", root="<root>")`` (``root`` defaults to ``$HSI_DATA``):
both splits are converted once into the cache (``$HSI_CACHE``, else
``$XDG_CACHE_HOME/hsi`` or ``~/.cache/hsi``) and reused while the files are unchanged
(``configs/specdetr/spod.yaml`` is the authors' SPOD setting). To convert by hand instead::

    hsi spod-convert --root /data/SPOD_30b_8c --split train --out data/spod_train
    hsi spod-convert --root /data/SPOD_30b_8c --split test  --out data/spod_test

and train with ``DetectionDataModule(root="data/spod_train", test_root="data/spod_test")``.

The on-disk format read here, as the authors publish it (github.com/ZhaoxuLi123/HODToolbox,
``README.md`` "Datasets" and ``SPOD_dataset_covert.py``; github.com/ZhaoxuLi123/SpecDETR,
``configs/_base_/datasets/hsi_detection.py`` and ``mmdet/datasets/hsi/HSI.py``)::

    SPOD_30b_8c/
      annotations/train.json   COCO: images [{id, file_name, height, width}],
      annotations/test.json          annotations [{id, image_id, category_id, bbox [x, y, w, h],
                                     segmentation, area}], categories [{supercategory, id, name}]
      train/100007.npy ...     (height, width, bands) radiance, 30 bands (100 train images)
      test/200001.npy ...      same (500 test images)
      color/, mask_gt/, target.mat   (previews, per-class test masks, target library: unused)

- Images are stored **height × width × bands** (SpecDETR's loader keeps ``img.shape[:2]`` as
  the image size and mmdet's ``PackDetInputs`` transposes to channels-first); hsi stores
  bands × height × width float32, so the converter transposes.
- Boxes are whole-pixel boxes ``[x1, y1, w, h]`` (x = column) around every pixel a target
  touches (``utils/maskV2.py`` of HODToolbox), so a sub-pixel single-pixel target has a
  1 × 1 box; ``area`` is ``w * h``. The true sub-pixel position is not stored, so the point
  written here is the box centre.
- The 8 categories C1..C8 are named CB, MP, FG, NP, LO, K_N, P_O, V_Y_W in the JSON
  (HODToolbox README). They are renumbered 1..K in id order with their names kept, which is
  the label order SpecDETR's dataset class gives them too.
- Per-pixel abundances exist only in the 150-band release's ``mask/*.mat``; the 30-band
  JSON has none, so ``abundance`` is null unless an annotation carries one.
- SpecDETR divides radiances by a fixed 3000 (``normalized_basis``); hsi's data module
  fits a per-band z-score on the training images instead, so raw radiances are kept.
- Like SpecDETR's dataset class, annotations flagged ``ignore`` are dropped.

Everything is checked before anything is written, and the output is assembled in a
temporary folder that is renamed at the end, so a failed conversion leaves no partial dataset.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hsi.data.writers import atomic_directory
from hsi.detection.datamodule import TOL, read_detection_folder
from hsi.errors import ConfigError, DataError

SPLITS = ("train", "test")
#: Category names of SPOD_30b_8c's JSON for the paper's classes C1..C8 (HODToolbox README).
SPOD_CLASSES = ("CB", "MP", "FG", "NP", "LO", "K_N", "P_O", "V_Y_W")
SPOD_BANDS = 30  # SPOD_30b_8c: 150 simulated bands averaged down to 30 (SPOD_dataset_covert.py)
SPOD_SCALE = 3000.0  # SpecDETR's normalized_basis (documented only; hsi z-scores instead)


@dataclass
class SpodSummary:
    """What a conversion wrote (printed by the CLI)."""

    split: str
    images: int
    objects: int
    ignored: int
    bands: int
    size: tuple[int, int]  # (height, width)
    class_names: list[str]
    out: Path

    def __str__(self) -> str:
        return (
            f"SPOD {self.split}: {self.images} images ({self.bands} bands, "
            f"{self.size[0]}x{self.size[1]}), {self.objects} objects"
            + (f" ({self.ignored} ignored)" if self.ignored else "")
            + f", classes {', '.join(self.class_names)} -> {self.out}"
        )


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise DataError(
            f"{path}: SPOD annotation file is missing (expected annotations/<split>.json)"
        )
    try:
        coco = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(coco, dict):
        raise DataError(f"{path}: expected a COCO object with images/annotations/categories")
    for key in ("images", "annotations", "categories"):
        if not isinstance(coco.get(key), list):
            raise DataError(f"{path}: missing the {key!r} list")
    if not coco["images"]:
        raise DataError(f"{path}: the images list is empty")
    if not coco["categories"]:
        raise DataError(f"{path}: the categories list is empty")
    return coco


def _categories(coco: dict[str, Any], where: Path) -> tuple[dict[int, int], list[dict]]:
    """Map the file's category ids to 1..K (id order) and the new category records."""
    try:
        ids = [int(c["id"]) for c in coco["categories"]]
    except (KeyError, TypeError, ValueError):
        raise DataError(f"{where}: every category needs an integer 'id'") from None
    if len(set(ids)) != len(ids):
        raise DataError(f"{where}: duplicate category ids {sorted(ids)}")
    cats = sorted(coco["categories"], key=lambda c: int(c["id"]))
    remap = {int(c["id"]): k + 1 for k, c in enumerate(cats)}
    records = [{"id": k + 1, "name": str(c.get("name", c["id"]))} for k, c in enumerate(cats)]
    return remap, records


def _images(coco: dict[str, Any], where: Path) -> tuple[dict[int, dict], tuple[int, int]]:
    """Image records by id, checked for unique ids/names and one common size."""
    by_id: dict[int, dict] = {}
    names: set[str] = set()
    for im in coco["images"]:
        try:
            image_id, h, w = int(im["id"]), int(im["height"]), int(im["width"])
            name = Path(str(im["file_name"])).name
        except (KeyError, TypeError, ValueError):
            raise DataError(
                f"{where}: image record {im!r} needs id, file_name, height and width"
            ) from None
        if image_id in by_id:
            raise DataError(f"{where}: image id {image_id} appears twice")
        if name in names:
            raise DataError(f"{where}: image file {name} appears twice")
        if h < 1 or w < 1:
            raise DataError(f"{where}: image {name} has size {h}x{w}")
        names.add(name)
        by_id[image_id] = {"name": name, "height": h, "width": w}
    sizes = {(r["height"], r["width"]) for r in by_id.values()}
    if len(sizes) != 1:
        raise DataError(
            f"{where}: images have different sizes {sorted(sizes)}; hsi batches need one size"
        )
    (size,) = sizes
    return by_id, size


def _annotations(
    coco: dict[str, Any], where: Path, images: dict[int, dict], remap: dict[int, int]
) -> tuple[list[dict], int]:
    """Checked hsi annotation records (boxes inside their image, known ids) and #ignored."""
    out: list[dict] = []
    ignored = 0
    for ann in coco["annotations"]:
        label = f"{where}: annotation {ann.get('id')}"
        if ann.get("ignore", False):
            ignored += 1
            continue
        try:
            image_id, cid = int(ann["image_id"]), int(ann["category_id"])
            x, y, bw, bh = (float(v) for v in ann["bbox"])
        except (KeyError, TypeError, ValueError):
            raise DataError(f"{label}: needs image_id, category_id and bbox [x, y, w, h]") from None
        if image_id not in images:
            raise DataError(f"{label}: names unknown image {image_id}")
        im = images[image_id]
        label += f" (image {im['name']})"
        if cid not in remap:
            raise DataError(
                f"{label}: category_id {cid} is not among the categories {sorted(remap)}"
            )
        if not all(np.isfinite((x, y, bw, bh))) or bw <= 0 or bh <= 0:
            raise DataError(f"{label}: bbox {ann['bbox']} has no area")
        if x < -TOL or y < -TOL or x + bw > im["width"] + TOL or y + bh > im["height"] + TOL:
            raise DataError(
                f"{label}: bbox [x={x}, y={y}, w={bw}, h={bh}] lies outside the "
                f"{im['width']}x{im['height']} (width x height) image"
            )
        abundance = ann.get("abundance")
        out.append(
            {
                "id": len(out) + 1,
                "image_id": image_id,
                "category_id": remap[cid],
                "bbox": [x, y, bw, bh],
                "point": [x + bw / 2, y + bh / 2],
                "area": float(ann.get("area", bw * bh)),
                "abundance": None if abundance is None else float(abundance),
                "iscrowd": int(ann.get("iscrowd", 0)),
                "spod_id": ann.get("id"),
            }
        )
    return out, ignored


def _load_hwc(path: Path, size: tuple[int, int]) -> np.ndarray:
    """One SPOD image (height, width, bands) -> float32 (bands, height, width), checked."""
    if not path.is_file():
        raise DataError(f"{path}: image file listed in the SPOD annotations is missing")
    try:
        a = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read the image ({exc})") from None
    if a.ndim != 3 or a.shape[:2] != size:
        raise DataError(
            f"{path}: image shape {a.shape} is not (height={size[0]}, width={size[1]}, bands) "
            "as SPOD stores images and as the annotation file says"
        )
    if not np.issubdtype(a.dtype, np.number) or not np.isfinite(a).all():
        raise DataError(f"{path}: the image is not numeric or has NaN/infinite values")
    return np.ascontiguousarray(a.transpose(2, 0, 1), dtype=np.float32)


def convert_spod(
    root: str | os.PathLike,
    split: str,
    out_dir: str | os.PathLike,
    overwrite: bool = False,
) -> SpodSummary:
    """Write ``root``'s SPOD ``split`` as an hsi detection folder at ``out_dir``.

    Args:
        root: the unzipped ``SPOD_30b_8c`` folder (holds ``annotations/`` and ``<split>/``).
        split: ``"train"`` or ``"test"``.
        out_dir: the folder to create (``images/*.npy`` + ``annotations.json``).
        overwrite: replace an existing non-empty ``out_dir`` (else a ConfigError).

    Raises:
        ConfigError: unknown split, or ``out_dir`` exists without ``overwrite``.
        DataError: a missing folder/file, a box outside its image, an unknown category id,
            an image whose shape or band count differs from the others or from the JSON.
    """
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {SPLITS}, got {split!r}")
    root, out = Path(root), Path(out_dir)
    if not root.is_dir():
        raise DataError(f"{root}: SPOD folder not found (unzip SPOD_30b_8c.zip and give its path)")
    image_dir = root / split
    if not image_dir.is_dir():
        raise DataError(f"{image_dir}: SPOD image folder for split {split!r} not found")
    if out.resolve() == root.resolve() or root.resolve() in out.resolve().parents:
        raise ConfigError(f"--out {out} must lie outside the SPOD folder {root}")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ConfigError(f"{out} exists and is not empty; choose another folder or overwrite")

    ann_path = root / "annotations" / f"{split}.json"
    coco = _read_json(ann_path)
    remap, categories = _categories(coco, ann_path)
    images, size = _images(coco, ann_path)
    annotations, ignored = _annotations(coco, ann_path, images, remap)

    with atomic_directory(out) as tmp:
        (tmp / "images").mkdir()
        bands: int | None = None
        first = ""
        records = []
        for image_id, im in images.items():
            path = image_dir / im["name"]
            chw = _load_hwc(path, size)
            if bands is None:
                bands, first = chw.shape[0], im["name"]
            elif chw.shape[0] != bands:
                raise DataError(
                    f"{path}: {chw.shape[0]} bands, but {first} has {bands}; "
                    "all SPOD images of a split must share one band count"
                )
            file_name = f"images/{Path(im['name']).stem}.npy"
            np.save(tmp / file_name, chw)
            records.append(
                {
                    "id": image_id,
                    "file_name": file_name,
                    "height": size[0],
                    "width": size[1],
                    "bands": bands,
                    "spod_file": f"{split}/{im['name']}",
                }
            )
        coco_out = {
            "info": {
                "description": f"SPOD {split} split converted by hsi.detection.spod",
                "source": str(root.resolve()),
                "boxes": "whole-pixel SPOD boxes; point = box centre",
                "radiance_scale": f"raw (SpecDETR divides by {SPOD_SCALE:g})",
            },
            "images": records,
            "annotations": annotations,
            "categories": categories,
            "wavelengths": None,
        }
        (tmp / "annotations.json").write_text(json.dumps(coco_out))
        folder = read_detection_folder(tmp)  # the reader's own checks, before publishing
    return SpodSummary(
        split,
        len(records),
        len(annotations),
        ignored,
        folder.bands,
        size,
        folder.class_names,
        out,
    )


def spod_main(argv: list[str]) -> int:
    """``hsi spod-convert --root SPOD_30b_8c --split train|test --out DIR [--overwrite]``."""
    parser = argparse.ArgumentParser(prog="hsi spod-convert", description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", required=True, help="the unzipped SPOD_30b_8c folder")
    parser.add_argument("--split", required=True, choices=SPLITS)
    parser.add_argument("--out", required=True, help="hsi detection folder to write")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    summary = convert_spod(args.root, args.split, args.out, overwrite=args.overwrite)
    print(f"wrote {summary}")
    if summary.bands != SPOD_BANDS or tuple(summary.class_names) != SPOD_CLASSES:
        print(
            f"note: SPOD_30b_8c has {SPOD_BANDS} bands and classes {', '.join(SPOD_CLASSES)}; "
            "this folder differs (another release?)"
        )
    return 0
