"""Detection data module, DetectionTask end to end, point AP, and bad-input errors."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

from hsi.benchmarks.records import load_report
from hsi.detection.datamodule import DetectionDataModule, read_detection_folder
from hsi.detection.metrics import point_average_precision, point_recall_by_size
from hsi.errors import ConfigError, DataError
from hsi.tasks import DetectionTask

BANDS, SIZE = 6, 16
TINY = dict(
    embed_dim=16, num_heads=2, ffn_dim=32, encoder_layers=1, decoder_layers=2, num_queries=12
)


def write_folder(root: Path, n_images: int = 4, seed: int = 0, bands: int = BANDS) -> Path:
    """A tiny simulator-format folder: bright square targets of two classes."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    images, annotations = [], []
    spectra = {1: np.linspace(2.0, 4.0, bands), 2: np.linspace(4.0, 2.0, bands)}
    for i in range(n_images):
        a = rng.normal(1.0, 0.05, size=(bands, SIZE, SIZE)).astype(np.float32)
        for k, (cid, (x, y, s)) in enumerate(((1, (3, 4, 2)), (2, (10, 9, 1)))):
            a[:, y : y + s, x : x + s] = spectra[cid][:, None, None]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i,
                    "category_id": cid,
                    "bbox": [float(x), float(y), float(s), float(s)],
                    "point": [x + s / 2, y + s / 2],
                    "area": float(s * s),
                    "abundance": 1.0,
                }
            )
            del k
        name = f"images/{i:05d}.npy"
        np.save(root / name, a)
        images.append({"id": i, "file_name": name, "height": SIZE, "width": SIZE, "bands": bands})
    coco = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": 1, "name": "steel"}, {"id": 2, "name": "paint"}],
        "wavelengths": None,
    }
    (root / "annotations.json").write_text(json.dumps(coco))
    return root


def _edit(root: Path, fn) -> None:
    path = root / "annotations.json"
    coco = json.loads(path.read_text())
    fn(coco)
    path.write_text(json.dumps(coco))


def test_data_module_splits_and_normalises_on_training_images(tmp_path) -> None:
    root = write_folder(tmp_path / "d", n_images=5)
    dm = DetectionDataModule(str(root), val=0.4, batch_size=2, flip=False)
    dm.setup("fit")
    assert (dm.in_bands, dm.num_classes, dm.class_names) == (6, 2, ["steel", "paint"])
    assert len(dm.train_idx) == 3 and len(dm.val_idx) == 2
    assert not set(dm.train_idx) & set(dm.val_idx)
    train = np.stack([np.load(root / f"images/{i:05d}.npy") for i in dm.train_idx])
    np.testing.assert_allclose(dm.mean, train.mean(axis=(0, 2, 3)), rtol=1e-5)
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (2, 6, 16, 16)
    t = batch["targets"][0]
    # bbox [3, 4, 2, 2] → normalised centre (4/16, 5/16), size 2/16
    assert torch.allclose(t["boxes"][0], torch.tensor([0.25, 0.3125, 0.125, 0.125]))
    assert t["labels"].tolist() == [0, 1]


def test_flip_moves_boxes_with_the_image(tmp_path) -> None:
    root = write_folder(tmp_path / "d", n_images=1)
    dm = DetectionDataModule(str(root), val=0.0, flip=True, seed=0)
    dm.setup("fit")
    ds = dm.train_dataloader().dataset
    for _ in range(6):  # some draws flip, some do not; boxes must follow the pixels
        item = ds[0]
        img, box = item["image"], item["target"]["boxes"][0]
        col = int(box[0] * SIZE)  # left column of the 2×2 target
        assert img[0, 4, col - 1 : col + 1].mean() > img[0, 4].median() + 1


def test_fit_one_epoch_test_and_checkpoint_round_trip(tmp_path) -> None:
    train = write_folder(tmp_path / "train", n_images=4)
    test = write_folder(tmp_path / "test", n_images=2, seed=1)
    dm = DetectionDataModule(str(train), test_root=str(test), val=0.25, batch_size=2)
    task = DetectionTask(model_kwargs=TINY, lr=1e-3, report_dir=str(tmp_path / "report"))
    trainer = L.Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(task, datamodule=dm)
    result = trainer.test(task, datamodule=dm, verbose=False)[0]
    for key in ("test/mAP50_95", "test/mAP25", "test/mAP50", "test/mAP75", "test/point_AP"):
        assert 0.0 <= result[key] <= 1.0
    report = json.loads((tmp_path / "report" / "detection_report.json").read_text())
    assert report["data"]["test_root"] == str(test) and report["metrics"]["mAP50"] >= 0
    assert set(report["metrics"]["point_recall_by_area"]) == {"<1", "1-4", ">=4", "all"}
    # seconds per training epoch, measured by the task (the figure issue reports quote)
    assert len(report["train_epoch_seconds"]) == 1 and report["train_epoch_seconds"][0] > 0
    assert len(report["train_epoch_cpu_seconds"]) == 1 and report["train_epoch_cpu_seconds"][0] > 0
    record = load_report(tmp_path / "report" / "detection_report.json")  # as hsi benchmark
    assert (record.task, record.protocol, record.leaky) == (
        "detection",
        "held-out test images",
        False,
    )
    assert record.metrics["mAP50"] == report["metrics"]["mAP50"] and record.epochs == 1

    ckpt = tmp_path / "m.ckpt"
    trainer.save_checkpoint(ckpt)
    loaded = DetectionTask.load_from_checkpoint(ckpt)
    assert loaded.hparams.class_names == ["steel", "paint"]
    assert loaded.hparams.in_bands == 6 and loaded.hparams.model_kwargs == TINY
    assert loaded.normalization == dm.normalization
    image = np.load(test / "images/00000.npy")
    a, b = task.detect(image), loaded.detect(image)
    assert torch.allclose(a["scores"], b["scores"]) and torch.equal(a["labels"], b["labels"])
    with pytest.raises(ConfigError, match=r"\(6, height, width\)"):
        loaded.detect(image[:5])


def test_band_mismatch_between_model_and_data_is_a_config_error(tmp_path) -> None:
    dm = DetectionDataModule(str(write_folder(tmp_path / "d")), batch_size=2)
    task = DetectionTask(model_kwargs=TINY, in_bands=5)
    trainer = L.Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        default_root_dir=tmp_path,
    )
    with pytest.raises(ConfigError, match="model.in_bands=5 but the data gives 6"):
        trainer.fit(task, datamodule=dm)


def test_point_average_precision_hand_computed() -> None:
    """Two images, one class, 3 targets, 5 detections in score order TP FP TP TP FP.

    Precision 1, 1/2, 2/3, 3/4, 3/5 at recall 1/3, 1/3, 2/3, 1, 1; the monotone envelope
    gives 1 on (0, 1/3] and 3/4 on (1/3, 1], so AP = 1/3 + 2/3 · 3/4 = 5/6.
    """
    targets = [
        {"points": [[5.0, 5.0], [20.0, 20.0]], "labels": [0, 0], "areas": [0.25, 2.0]},
        {"points": [[10.0, 10.0]], "labels": [0], "areas": [9.0]},
    ]
    preds = [
        {"points": [[5.3, 5.2], [12.0, 12.0], [20.5, 19.6]], "scores": [0.9, 0.8, 0.6],
         "labels": [0, 0, 0]},
        {"points": [[10.0, 10.4], [10.2, 10.0]], "scores": [0.7, 0.5], "labels": [0, 0]},
    ]  # fmt: skip
    result = point_average_precision(preds, targets, radius=1.0)
    assert result["AP"] == pytest.approx(5 / 6)
    # a tighter radius loses the (20.5, 19.6) hit (0.64 px away): TP FP TP FP FP
    assert point_average_precision(preds, targets, radius=0.6)["AP"] == pytest.approx(
        1 / 3 + 1 / 3 * 2 / 3
    )
    # the wrong class never hits; classes without targets are left out of the mean
    wrong = [{**p, "labels": [1] * len(p["labels"])} for p in preds]
    assert point_average_precision(wrong, targets, num_classes=2)["AP"] == 0.0
    recall = point_recall_by_size(preds, targets, score_threshold=0.65)
    assert recall == {"<1": 1.0, "1-4": 0.0, ">=4": 1.0, "all": pytest.approx(2 / 3)}


def _expect(tmp_path: Path, edit, match: str) -> None:
    root = write_folder(tmp_path / "bad", n_images=2)
    edit(root)
    with pytest.raises(DataError, match=match):
        DetectionDataModule(str(root)).setup("fit")


def test_bad_folders_are_clear_data_errors(tmp_path) -> None:
    def outside(root):
        _edit(root, lambda c: c["annotations"][0].update(bbox=[15.5, 3.0, 1.0, 1.0]))

    _expect(tmp_path / "a", outside, "lies outside the 16×16")

    def empty(root):
        _edit(root, lambda c: c.update(images=[], annotations=[]))

    _expect(tmp_path / "b", empty, "images list is empty")

    def mixed_bands(root):
        _edit(root, lambda c: c["images"][1].update(bands=5))

    _expect(tmp_path / "c", mixed_bands, "different band counts")

    def wrong_file(root):
        np.save(root / "images/00001.npy", np.zeros((5, SIZE, SIZE), np.float32))

    _expect(tmp_path / "d", wrong_file, r"image shape \(5, 16, 16\) differs")

    def unknown_class(root):
        _edit(root, lambda c: c["annotations"][0].update(category_id=7))

    _expect(tmp_path / "e", unknown_class, "category_id 7")
    with pytest.raises(DataError, match="no annotations.json"):
        read_detection_folder(tmp_path)
    train = write_folder(tmp_path / "f", n_images=2)
    other = write_folder(tmp_path / "g", n_images=1, bands=5)
    with pytest.raises(DataError, match="5-band images"):
        DetectionDataModule(str(train), test_root=str(other)).setup("test")
