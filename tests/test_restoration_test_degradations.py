"""One `hsi test` under several degradations (QRNN3D/HSDT report one complex-noise model on
each ICVL noise case 1-5): one test set per case over the same held-out images, each with its
own fixed noise, and one report entry per case with its own noisy-input reference row."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import test_restoration_collection as collection_tests
import test_restoration_task as task_tests  # also registers the _infra_* test models
import torch
from torch.utils.data import DataLoader

from hsi.benchmarks.records import load_reports
from hsi.errors import ConfigError
from hsi.image_quality import quality_report
from hsi.tasks import RestorationTask

# the fixtures and helpers of the single-degradation tests, shared
cube_file = task_tests.cube_file
tinyset = collection_tests.tinyset
_isolated_env = collection_tests._isolated_env  # autouse: no user data root or cache
_dm, _collection_dm, GAUSS = task_tests._dm, collection_tests._dm, collection_tests.GAUSS

CASES = ["case1", "case4"]  # non-i.i.d. Gaussian alone, and with impulse noise


def _trainer(tmp_path: Path) -> L.Trainer:
    return L.Trainer(
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )


def _mean_metrics(ds, restore=None) -> dict[str, float]:
    """Per-image metrics averaged over a test set, computed here from its items."""
    per_image = []
    for i in range(len(ds)):
        item = ds[i]
        x, y = item["input"][None], item["target"][None]
        pred = x if restore is None else restore(x)
        per_image.append({k: float(v) for k, v in quality_report(pred, y).items()})
    return {k: float(np.mean([m[k] for m in per_image])) for k in per_image[0]}


# ---------------------------------------------------------------------------- data module


def test_each_case_has_its_own_fixed_noise_over_the_same_images(cube_file) -> None:
    dm = _dm(cube_file, test_degradations=[*CASES, "gaussian30"])
    assert dm.test_degradation_names == [*CASES, "gaussian30"]
    assert dm.test_degradation_specs[0] == {"name": "case", "case": 1, "sigmas": [10, 30, 50, 70]}
    loaders = dm.test_dataloader()
    assert isinstance(loaders, list) and len(loaders) == 3
    sets = [loader.dataset for loader in loaders]
    assert all(s.boxes == dm.eval_dataset("test").boxes for s in sets)  # the same images
    items = [s[0] for s in sets]
    for a in items[1:]:
        torch.testing.assert_close(a["target"], items[0]["target"])
    assert not torch.equal(items[0]["input"], items[1]["input"])  # different noise per case
    # the same noise in every run, whatever the order or the rest of the list
    again = _dm(cube_file, test_degradations=[CASES[1], "gaussian50"]).test_datasets()[0][0]
    torch.testing.assert_close(again["input"], items[1]["input"])
    # listing the training degradation itself scores exactly the images a plain run scores
    plain = _dm(cube_file).eval_dataset("test")[0]
    torch.testing.assert_close(items[2]["input"], plain["input"])
    # case 1 on its own and case 1 as test_degradations: same kind of noise, other draws
    other = _dm(cube_file, degradation="case1").eval_dataset("test")[0]
    assert not torch.equal(other["input"], items[0]["input"])
    # training and validation keep the training degradation
    torch.testing.assert_close(
        dm.eval_dataset("val")[0]["input"], _dm(cube_file).eval_dataset("val")[0]["input"]
    )
    assert dm.describe()["test_degradations"]["case4"]["case"] == 4


def test_without_test_degradations_nothing_changes(cube_file) -> None:
    dm = _dm(cube_file)
    assert isinstance(dm.test_dataloader(), DataLoader)
    assert dm.test_degradation_names == [] and dm.test_datasets() == []
    assert "test_degradations" not in dm.describe()


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        (
            dict(test_degradations=["bicubic_x2"]),
            r"bicubic_x2 has scale 2 but degradation gaussian\(sigma=30.0\) has scale 1",
        ),
        (
            dict(degradation="bicubic_x2", test_degradations=["bicubic_x2", "case1"]),
            "case1 has scale 1 but degradation bicubic_down",
        ),
        (
            dict(test_degradations=["case1", "case9"]),
            r"test_degradations\[1\] 'case9': .*unknown degradation",
        ),
        (dict(test_degradations=[{"name": "case", "case": 7}]), "noise case must be 1-5"),
        (
            dict(test_degradations=["case5", "mixture"]),
            "lists case5 and mixture, the same degradation",
        ),
        (dict(test_degradations=[]), "non-empty list"),
        (dict(test_degradations="case1"), "non-empty list"),
    ],
)
def test_bad_test_degradations_are_refused(cube_file, kw, match) -> None:
    with pytest.raises(ConfigError, match=match):
        _dm(cube_file, **kw)


# ---------------------------------------------------------------------------- task + report


def test_one_test_reports_every_case_with_its_noisy_input(cube_file, tmp_path) -> None:
    dm = _dm(cube_file, test_degradations=CASES)
    out = tmp_path / "run"
    torch.manual_seed(0)
    task = RestorationTask(model="_infra_tiny_denoiser", report_dir=str(out))
    trainer = _trainer(tmp_path)
    trainer.test(task, datamodule=dm)
    report = json.loads((out / "restoration_report.json").read_text())
    assert "metrics" not in report  # never one number averaged over the cases
    assert [c["name"] for c in report["cases"]] == CASES
    assert [c["degradation"]["case"] for c in report["cases"]] == [1, 4]
    # hsi benchmark: one result per case, under HSDT's names of the ICVL cases
    records = load_reports(out / "restoration_report.json")
    assert [r.protocol for r in records] == ["complex_noniid", "complex_impulse"]
    assert [r.metrics["PSNR"] for r in records] == [c["metrics"]["MPSNR"] for c in report["cases"]]
    assert report["data"]["degradation"] == {"name": "gaussian", "sigma": 30.0}  # training
    task.eval()
    for case, ds in zip(report["cases"], dm.test_datasets(), strict=True):
        assert case["test_images"] == len(ds) == 1
        assert case["reference"]["what"] == "degraded input"
        noisy = _mean_metrics(ds)
        restored = _mean_metrics(ds, task.restore)
        for key in ("MPSNR", "MSSIM", "SAM", "ERGAS"):
            assert case["reference"]["metrics"][key] == pytest.approx(noisy[key], rel=1e-4)
            assert case["metrics"][key] == pytest.approx(restored[key], rel=1e-4)
            logged = trainer.callback_metrics[f"test/{case['name']}/{key}"]
            assert float(logged) == pytest.approx(restored[key], rel=1e-4)
            assert task.test_metrics[f"{case['name']}/{key}"] == pytest.approx(
                restored[key], rel=1e-4
            )
    psnr = [c["reference"]["metrics"]["MPSNR"] for c in report["cases"]]
    assert psnr[1] < psnr[0] - 1  # impulse noise on a third of the bands costs PSNR
    assert not [k for k in trainer.callback_metrics if "dataloader_idx" in k]
    assert not [k for k in trainer.callback_metrics if k.startswith("test/") and k.count("/") == 1]


# ---------------------------------------------------------------------------- collection


def test_collection_gives_one_loader_per_case_over_the_same_scenes(tmp_path, tinyset) -> None:
    dm = _collection_dm(tmp_path, test_degradations=["case1", "case3"], eval_center_crop=20)
    loaders = dm.test_dataloader()
    assert len(loaders) == 2
    sets = [loader.dataset for loader in loaders]
    assert [s.names for s in sets] == [GAUSS, GAUSS]
    for i in range(len(GAUSS)):
        a, b = sets[0][i], sets[1][i]
        torch.testing.assert_close(a["target"], b["target"])
        assert not torch.equal(a["input"], b["input"])
        # case 3 sets whole columns of some bands to 0 (dead lines); case 1 does not
        dead = (b["input"] == 0).all(dim=1).any()
        assert bool(dead) and not bool((a["input"] == 0).all(dim=1).any())
    out = tmp_path / "run"
    task = RestorationTask(model="_infra_tiny_denoiser", report_dir=str(out))
    _trainer(tmp_path).test(task, datamodule=dm)
    report = json.loads((out / "restoration_report.json").read_text())
    assert [(c["name"], c["test_images"]) for c in report["cases"]] == [
        ("case1", 2),
        ("case3", 2),
    ]
    assert report["data"]["scenes"]["test"] == GAUSS
