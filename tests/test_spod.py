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


# ------------------------------------------------------------------ the `spod` registry card


@pytest.fixture
def data_env(monkeypatch, tmp_path: Path) -> Path:
    """No user data root or cache: the data root is ``tmp/data``, the cache ``tmp/xdg/hsi``."""
    monkeypatch.delenv("HSI_DATA", raising=False)
    monkeypatch.delenv("HSI_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "data"


def _items(dm: DetectionDataModule) -> list[dict]:
    """Every item of the train, val and test loaders (no flips), in order."""
    loaders = [dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader()]
    return [ds[i] for ds in (ld.dataset for ld in loaders if ld) for i in range(len(ds))]


def test_card_matches_the_converter_facts() -> None:
    from hsi.data.registry import get_card, list_datasets

    card = get_card("SPOD_30b_8c")
    assert card.name == "spod" and "spod" in list_datasets()
    assert card.kind == "detection" and not card.has_labels
    assert card.bands == SPOD_BANDS and card.cube_shape == (SPOD_BANDS, 128, 128)
    assert tuple(card.class_names) == SPOD_CLASSES
    assert card.folder == "SPOD_30b_8c"
    form = card.form()
    assert form.format == "spod"
    assert {s: (v.annotations, v.images, v.count) for s, v in form.splits.items()} == {
        "train": ("annotations/train.json", "train", 100),
        "test": ("annotations/test.json", "test", 500),
    }
    # the README's two download links; no checksum is invented for files we never had
    assert "sharepoint.com" in card.source_url and "pan.baidu.com" in card.source_url
    assert all(spec.checksum is None and spec.url is None for spec in card.files.values())
    assert not card.downloadable and "Li" in card.citation and "2025" in card.citation


def test_datasets_info_and_list(data_env: Path, capsys) -> None:
    from hsi.data.datasets_cli import datasets_main

    assert datasets_main(["info", "spod", "--root", str(data_env)]) == 0
    out = capsys.readouterr().out
    assert "kind:        detection" in out and "shape:       128x128x30" in out
    assert "object classes (8): CB, MP, FG, NP, LO, K_N, P_O, V_Y_W" in out
    assert "split train: 100 images, annotations/train.json + train/" in out
    assert "split test: 500 images, annotations/test.json + test/" in out
    assert f"folder:      {data_env.resolve() / 'SPOD_30b_8c'}" in out

    def row() -> list[str]:
        assert datasets_main(["list", "--root", str(data_env)]) == 0
        lines = capsys.readouterr().out.splitlines()
        return next(ln.split() for ln in lines if ln.startswith("spod "))

    assert row() == ["spod", "detection", "128x128x30", "8", "no", "-"]
    make_spod(data_env / "SPOD_30b_8c")
    assert row() == ["spod", "detection", "128x128x30", "8", "yes", "spod"]
    # no checksums known: present annotation files are reported unverified, not failed
    assert datasets_main(["verify", "spod", "--root", str(data_env)]) == 0
    assert capsys.readouterr().out.count(" unverified ") == 2
    # nothing is ever downloaded: the links and the folder to unpack into are named
    assert datasets_main(["download", "spod", "--root", str(data_env)]) == 2
    err = capsys.readouterr().err
    assert "no per-file URLs" in err and "pan.baidu.com" in err
    assert str(data_env.resolve() / "SPOD_30b_8c" / "annotations" / "train.json") in err


def test_load_dataset_refuses_a_detection_card(data_env: Path) -> None:
    from hsi.data.datamodule import HyperspectralPatchDataModule
    from hsi.data.registry import load_dataset

    make_spod(data_env / "SPOD_30b_8c")
    with pytest.raises(DataError) as err:
        load_dataset("spod", root=data_env)
    msg = str(err.value)
    assert "spod is a detection dataset (kind: detection)" in msg
    assert 'DetectionDataModule(dataset="spod", root=<data root>)' in msg
    assert "hsi spod-convert" in msg and "\n" not in msg
    # a classification data module given the card fails with the same message
    with pytest.raises(DataError, match="is a detection dataset"):
        _ = HyperspectralPatchDataModule(dataset="spod", root=str(data_env)).class_names


def test_datamodule_by_name_converts_once_like_by_hand(
    data_env: Path, tmp_path: Path, monkeypatch, caplog
) -> None:
    from hsi.detection import spod

    source = data_env / "SPOD_30b_8c"
    make_spod(source)
    settings = {"val": 0.5, "seed": 3, "batch_size": 2, "flip": False}

    calls: list[str] = []
    real_convert = spod.convert_spod

    def spy(root, split, out, overwrite=False):
        calls.append(split)
        return real_convert(root, split, out, overwrite=overwrite)

    monkeypatch.setattr(spod, "convert_spod", spy)
    with caplog.at_level("WARNING", logger="hsi.detection.datamodule"):
        dm = DetectionDataModule(dataset="spod", root=str(data_env), **settings)
        dm.setup("fit")
    assert calls == ["train", "test"]
    # published facts that differ from the tiny fake are reported, not refused
    assert "images are 12x16, the card records 128x128" in caplog.text
    assert "2 images, the authors publish 500" in caplog.text
    cache = (tmp_path / "xdg" / "hsi" / "detection" / "spod").resolve()
    assert Path(dm.root).parent.parent == cache and Path(dm.test_root).name == "test"
    assert dm.describe()["dataset"] == "spod" and not dm.describe()["test_is_validation"]

    # the same as converting by hand and giving the folders
    convert_spod(source, "train", tmp_path / "hand" / "train")
    convert_spod(source, "test", tmp_path / "hand" / "test")
    ref = DetectionDataModule(
        root=str(tmp_path / "hand" / "train"), test_root=str(tmp_path / "hand" / "test"), **settings
    )
    ref.setup("fit")
    assert (dm.in_bands, dm.class_names, dm.image_size) == (
        ref.in_bands,
        ref.class_names,
        ref.image_size,
    )
    assert (dm.train_idx, dm.val_idx) == (ref.train_idx, ref.val_idx)
    assert dm.normalization == ref.normalization
    got, want = _items(dm), _items(ref)
    assert len(got) == len(want) == 4
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a["image"], b["image"], rtol=0, atol=0)
        assert a["target"].keys() == b["target"].keys()
        for key in ("labels", "boxes", "points", "areas"):
            torch.testing.assert_close(a["target"][key], b["target"][key], rtol=0, atol=0)
        assert a["target"]["image_id"] == b["target"]["image_id"]

    # a second run (data root from $HSI_DATA this time) reuses the converted folders
    stamp = (Path(dm.root) / "annotations.json").stat().st_mtime_ns
    monkeypatch.setenv("HSI_DATA", str(data_env))
    again = DetectionDataModule(dataset="spod", **settings)
    again.setup("fit")
    assert calls == ["train", "test"] and again.root == dm.root
    assert (Path(dm.root) / "annotations.json").stat().st_mtime_ns == stamp
    assert again.normalization == dm.normalization

    # a changed annotation file is converted again, that split only
    _edit_json(source, "train", lambda c: c["annotations"][0].update(ignore=True))
    third = DetectionDataModule(dataset="spod", **settings)
    third.setup("fit")
    assert calls == ["train", "test", "train"]
    assert sum(len(o["labels"]) for o in third.folder.objects) == 3


def test_datamodule_by_name_errors(data_env: Path) -> None:
    with pytest.raises(DataError) as err:
        DetectionDataModule(dataset="spod", root=str(data_env)).setup("fit")
    msg = str(err.value)
    expected = data_env.resolve() / "SPOD_30b_8c"
    assert f"expected {expected} holding annotations/train.json + train/" in msg
    assert "sharepoint.com" in msg and "\n" not in msg

    make_spod(data_env / "SPOD_30b_8c")
    for f in (data_env / "SPOD_30b_8c" / "test").iterdir():
        f.unlink()
    (data_env / "SPOD_30b_8c" / "test").rmdir()
    with pytest.raises(DataError, match=re.escape(f"test folder {expected / 'test'} is missing")):
        DetectionDataModule(dataset="spod", root=str(data_env)).setup("fit")

    with pytest.raises(ConfigError, match="give test_root or dataset, not both"):
        DetectionDataModule(dataset="spod", test_root="x")
    with pytest.raises(ConfigError, match="indian_pines' is a classification dataset"):
        DetectionDataModule(dataset="indian_pines")
    with pytest.raises(ConfigError, match="give root"):
        DetectionDataModule()


def test_another_release_is_refused(data_env: Path) -> None:
    make_spod(data_env / "SPOD_30b_8c", bands=SPOD_BANDS - 1)
    dm = DetectionDataModule(dataset="spod", root=str(data_env))
    with pytest.raises(DataError, match="holds 29-band images, the card says 30"):
        _ = dm.in_bands
