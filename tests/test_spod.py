"""SPOD -> hsi detection folder conversion, on a tiny folder laid out as the authors document.

The fake folder follows HODToolbox's README ("Datasets") and SPOD_dataset_covert.py:
``annotations/{train,test}.json`` (COCO, whole-pixel [x, y, w, h] boxes, area = w*h,
a segmentation polygon, categories CB..V_Y_W) and ``{train,test}/<id>.npy`` stored
(height, width, bands) float64.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from hsi.detection.datamodule import DetectionDataModule
from hsi.detection.spod import SPOD_BANDS, SPOD_CLASSES, convert_spod, spod_main
from hsi.errors import ConfigError, DataError

H, W = 12, 16


pytestmark = pytest.mark.usefixtures("one_thread")


def _ann(ann_id: int, image_id: int, cat: int, box: list[float]) -> dict:
    x, y, w, h = box
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": cat,
        "bbox": box,
        "segmentation": [[x, y, x, y + h, x + w, y + h, x + w, y]],
        "area": w * h,
        "iscrowd": 0,
    }


# per split: image id -> (file stem, boxes [(category id, [x, y, w, h])])
LAYOUT = {
    "train": {
        1: ("100007", [(1, [3.0, 4.0, 1.0, 1.0]), (6, [8.0, 2.0, 3.0, 4.0])]),  # CB sub-pixel
        2: ("100012", [(8, [13.0, 9.0, 3.0, 3.0]), (2, [0.0, 0.0, 1.0, 1.0])]),  # at borders
    },
    "test": {
        3: ("200001", [(4, [5.0, 5.0, 2.0, 2.0])]),
        4: ("200002", [(5, [1.0, 7.0, 2.0, 3.0]), (7, [10.0, 1.0, 2.0, 2.0])]),
    },
}


def make_spod(root: Path, bands: int = SPOD_BANDS) -> dict[str, dict[str, np.ndarray]]:
    """Write a tiny SPOD_30b_8c-style folder; return the raw HWC arrays per split/file."""
    rng = np.random.default_rng(0)
    (root / "annotations").mkdir(parents=True)
    cats = [{"supercategory": "", "id": k + 1, "name": n} for k, n in enumerate(SPOD_CLASSES)]
    arrays: dict[str, dict[str, np.ndarray]] = {}
    ann_id = 1
    for split, images in LAYOUT.items():
        (root / split).mkdir()
        arrays[split] = {}
        coco = {"images": [], "annotations": [], "categories": cats}
        for image_id, (stem, boxes) in images.items():
            a = rng.uniform(500, 3000, size=(H, W, bands))  # float64 HWC, as SPOD stores them
            np.save(root / split / f"{stem}.npy", a)
            arrays[split][stem] = a
            coco["images"].append(
                {"file_name": f"{stem}.npy", "height": H, "width": W, "id": image_id}
            )
            for cat, box in boxes:
                coco["annotations"].append(_ann(ann_id, image_id, cat, box))
                ann_id += 1
        (root / "annotations" / f"{split}.json").write_text(json.dumps(coco))
    return arrays


def _edit_json(root: Path, split: str, edit) -> None:
    path = root / "annotations" / f"{split}.json"
    coco = json.loads(path.read_text())
    edit(coco)
    path.write_text(json.dumps(coco))


def _no_output(out: Path) -> None:
    assert not out.exists()
    if out.parent.exists():  # the converter creates the parent only once input checks pass
        assert not [p for p in out.parent.iterdir() if p.name.endswith(".partial")]


def test_round_trip_through_datamodule(tmp_path: Path) -> None:
    arrays = make_spod(tmp_path / "SPOD_30b_8c")
    train = convert_spod(tmp_path / "SPOD_30b_8c", "train", tmp_path / "out" / "train")
    test = convert_spod(tmp_path / "SPOD_30b_8c", "test", tmp_path / "out" / "test")
    assert (train.images, train.objects, test.images, test.objects) == (2, 4, 2, 3)
    assert train.bands == SPOD_BANDS and train.size == (H, W)

    dm = DetectionDataModule(
        root=str(tmp_path / "out" / "train"),
        test_root=str(tmp_path / "out" / "test"),
        val=0.0,
        batch_size=2,
        flip=False,
    )
    dm.setup("fit")
    assert dm.in_bands == SPOD_BANDS and dm.image_size == (H, W)
    assert dm.class_names == list(SPOD_CLASSES)
    for folder, split in ((dm.folder, "train"), (dm.test_folder, "test")):
        for k, image_id in enumerate(folder.image_ids):
            stem, boxes = LAYOUT[split][image_id]
            obj = folder.objects[k]
            want = np.array([b for _, b in boxes], dtype=np.float32)
            np.testing.assert_array_equal(obj["boxes"], want)
            np.testing.assert_allclose(obj["points"], want[:, :2] + want[:, 2:] / 2)
            np.testing.assert_array_equal(obj["labels"], [c - 1 for c, _ in boxes])
            np.testing.assert_array_equal(obj["areas"], want[:, 2] * want[:, 3])
            chw = np.load(folder.files[k])
            assert chw.dtype == np.float32 and chw.shape == (SPOD_BANDS, H, W)
            np.testing.assert_allclose(chw, arrays[split][stem].transpose(2, 0, 1), rtol=1e-6)

    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (2, SPOD_BANDS, H, W)
    # the 1x1 sub-pixel box of image 100007 normalised to (cx, cy, w, h)
    first = dm.folder.image_ids.index(1)
    item = dm.train_dataloader().dataset[first]
    torch.testing.assert_close(
        item["target"]["boxes"][0], torch.tensor([3.5 / W, 4.5 / H, 1 / W, 1 / H])
    )
    annotations = json.loads((tmp_path / "out" / "train" / "annotations.json").read_text())
    assert all(a["abundance"] is None for a in annotations["annotations"])
    assert len(next(iter(dm.test_dataloader()))["targets"]) == 2


def test_category_ids_are_renumbered_keeping_names(tmp_path: Path) -> None:
    root = tmp_path / "spod"
    make_spod(root)

    def shift(coco: dict) -> None:  # ids 11..18 in the file
        for c in coco["categories"]:
            c["id"] += 10
        for a in coco["annotations"]:
            a["category_id"] += 10

    _edit_json(root, "train", shift)
    convert_spod(root, "train", tmp_path / "out")
    coco = json.loads((tmp_path / "out" / "annotations.json").read_text())
    assert [c["id"] for c in coco["categories"]] == list(range(1, 9))
    assert [c["name"] for c in coco["categories"]] == list(SPOD_CLASSES)
    assert sorted(a["category_id"] for a in coco["annotations"]) == [1, 2, 6, 8]


def test_ignored_annotations_are_dropped(tmp_path: Path) -> None:
    root = tmp_path / "spod"
    make_spod(root)
    _edit_json(root, "train", lambda c: c["annotations"][0].update(ignore=True))
    summary = convert_spod(root, "train", tmp_path / "out")
    assert (summary.objects, summary.ignored) == (3, 1)


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (lambda r: (r / "annotations" / "train.json").unlink(), "annotation file is missing"),
        (lambda r: (r / "train" / "100012.npy").unlink(), "is missing"),
        (
            lambda r: _edit_json(
                r, "train", lambda c: c["annotations"][1].update(bbox=[14.0, 2.0, 3.0, 4.0])
            ),
            "lies outside",
        ),
        (
            lambda r: _edit_json(r, "train", lambda c: c["annotations"][0].update(category_id=9)),
            "category_id 9 is not among",
        ),
        (
            lambda r: _edit_json(r, "train", lambda c: c["annotations"][0].update(image_id=99)),
            "unknown image 99",
        ),
        (
            lambda r: np.save(r / "train" / "100012.npy", np.zeros((H, W, SPOD_BANDS - 1))),
            "bands, but",
        ),
        (
            lambda r: np.save(r / "train" / "100012.npy", np.zeros((SPOD_BANDS, H, W))),
            "is not (height=",
        ),
        (
            lambda r: _edit_json(r, "train", lambda c: c["images"][1].update(height=H + 1)),
            "different sizes",
        ),
    ],
)
def test_bad_input_is_a_clear_error_and_leaves_nothing(tmp_path, breakage, message) -> None:
    root = tmp_path / "spod"
    make_spod(root)
    breakage(root)
    out = tmp_path / "out" / "train"
    with pytest.raises(DataError, match=re.escape(message)):
        convert_spod(root, "train", out)
    _no_output(out)


def test_missing_folders_and_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="SPOD folder not found"):
        convert_spod(tmp_path / "nope", "train", tmp_path / "out")
    root = tmp_path / "spod"
    make_spod(root)
    (root / "test" / "200001.npy").unlink()
    (root / "test" / "200002.npy").unlink()
    (root / "test").rmdir()
    with pytest.raises(DataError, match="image folder for split 'test'"):
        convert_spod(root, "test", tmp_path / "out")
    with pytest.raises(ConfigError, match="split must be one of"):
        convert_spod(root, "val", tmp_path / "out")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("user data")
    with pytest.raises(ConfigError, match="not empty"):
        convert_spod(root, "train", tmp_path / "busy")
    assert (tmp_path / "busy" / "keep.txt").read_text() == "user data"
    convert_spod(root, "train", tmp_path / "busy", overwrite=True)
    assert not (tmp_path / "busy" / "keep.txt").exists()
    assert (tmp_path / "busy" / "annotations.json").is_file()


def test_failed_overwrite_keeps_the_old_output(tmp_path: Path) -> None:
    root = tmp_path / "spod"
    make_spod(root)
    out = tmp_path / "out"
    convert_spod(root, "train", out)
    before = (out / "annotations.json").read_text()
    (root / "train" / "100012.npy").unlink()
    with pytest.raises(DataError):
        convert_spod(root, "train", out, overwrite=True)
    assert (out / "annotations.json").read_text() == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]


def test_cli(tmp_path: Path, capsys) -> None:
    root = tmp_path / "spod"
    make_spod(root)
    assert spod_main(["--root", str(root), "--split", "test", "--out", str(tmp_path / "t")]) == 0
    printed = capsys.readouterr().out
    assert "SPOD test: 2 images (30 bands, 12x16), 3 objects" in printed
    assert "note:" not in printed
    assert (tmp_path / "t" / "images" / "200001.npy").is_file()
