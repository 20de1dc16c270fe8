"""Restoration weights in the pretrained collection: export and load round trip, routing of
``hsi predict --ckpt <name>`` to the restoration path, and the seeded evaluation that the
index and the model cards quote."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import rasterio
import torch
import yaml

from hsi import pretrained
from hsi.cli import main
from hsi.data.restoration.scaling import Scaling
from hsi.data.writers import write_geotiff
from hsi.errors import DataError
from hsi.pretrained.cli import main as pretrained_main
from hsi.pretrained.restoration import default_cases, evaluate_restoration, flat_metrics
from hsi.tasks.checkpointing import checkpoint_task
from hsi.tasks.restoration import RestorationTask

BANDS, HEIGHT, WIDTH = 6, 24, 20


def _cube() -> np.ndarray:
    """A smooth raw cube in sensor-like units (bands, rows, cols)."""
    rows, cols = np.meshgrid(np.arange(HEIGHT), np.arange(WIDTH), indexing="ij")
    bands = [1000 + 400 * np.sin(rows / 5 + b) + 300 * np.cos(cols / 4 - b) for b in range(BANDS)]
    return np.stack(bands).astype(np.float32)


@pytest.fixture(scope="module")
def blind(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """An HSDT-S (band windows of 4, ``flex``) as a blind-Gaussian run would leave it."""
    root = tmp_path_factory.mktemp("restoration_weights")
    torch.manual_seed(0)
    task = RestorationTask(model="hsdt_s", model_kwargs={"flex": True}, in_bands=4, scale=1)
    task.scaling = Scaling.fit("minmax", [_cube()]).state_dict()
    task.degradation = {"name": "blind_gaussian", "sigmas": [10.0, 30.0, 50.0]}
    task.data_description = {
        "dataset": "toy_scene",
        "sources": ["/somewhere/local/toy.mat"],
        "holdout": "regions",
        "regions": {
            "train": [{"scene": 0, "rows": [0, 24], "cols": [0, 8]}],
            "test": [{"scene": 0, "rows": [0, 24], "cols": [8, 20]}],
        },
    }
    ckpt = task.export_checkpoint(root / "blind.ckpt")
    path = pretrained.export_weights(ckpt, root / "blind.pt", dtype="float32", tag="toy_blind")
    return {"root": root, "task": task.eval(), "ckpt": ckpt, "path": path}


@pytest.fixture
def toy_scene(monkeypatch: pytest.MonkeyPatch) -> None:
    """``load_dataset`` gives the toy cube, as the registry gives a registered scene."""
    scene = SimpleNamespace(cube=SimpleNamespace(data=_cube()))
    monkeypatch.setattr("hsi.data.registry.load_dataset", lambda name, root=None: scene)


def test_export_and_load_keep_what_restoration_needs(blind: dict) -> None:
    weights = pretrained.load_weights(blind["path"])
    assert weights.task == "restoration" and weights.preprocessing is None
    assert weights.model == "hsdt_s" and weights.model_kwargs == {"flex": True, "in_bands": 4}
    assert weights.restoration["kind"] == "denoising"
    assert weights.restoration["degradation"]["name"] == "blind_gaussian"
    assert "sources" not in weights.data  # the exporting machine's paths are dropped
    rebuilt = weights.to_task().eval()
    assert isinstance(rebuilt, RestorationTask) and rebuilt.get_scaling().bands == BANDS
    x = torch.rand(1, BANDS, 12, 8)  # another band count than trained: flex takes it
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.restore(x), blind["task"].restore(x), rtol=0, atol=0)


def test_weight_files_and_names_route_to_their_task(
    blind: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    assert checkpoint_task(blind["path"]) == "restoration"
    with pytest.raises(DataError, match="restoration weights, not classification ones"):
        pretrained.pretrained_task(blind["path"], "classification")
    collection = tmp_path / "collection"
    argv = ["export", "--ckpt", str(blind["ckpt"]), "--tag", "toy_blind", "--dtype", "float32"]
    assert pretrained_main([*argv, "--out", str(collection), "--no-evaluate"]) == 0
    row = yaml.safe_load((collection / "index.yaml").read_text())["weights"][0]
    assert row["task"] == "restoration" and row["protocol"] == "held-out regions"
    assert row["leaky"] is False  # the test strip shares no pixel with the training strip
    monkeypatch.setenv("HSI_CHECKPOINTS", str(collection))
    assert checkpoint_task("toy_blind") == "restoration"
    assert checkpoint_task("hsdt_s/toy_blind") == "restoration"

    # `hsi predict --ckpt <name>` denoises a GeoTIFF with the shipped weights
    scene = write_geotiff(tmp_path / "noisy.tif", _cube(), crs="EPSG:32633")
    out = tmp_path / "restored.tif"
    code = main(["predict", "--ckpt", "toy_blind", "--input", str(scene), "--output", str(out)])
    assert code == 0, capsys.readouterr().err
    with rasterio.open(out) as src:
        assert src.count == BANDS and src.shape == (HEIGHT, WIDTH)
        assert np.isfinite(src.read()).all()
        tags = src.tags()  # what made it, as a class map says it
    sha = pretrained.sha256_of(collection / "hsdt_s_toy_blind.pt")
    assert tags["hsi_checkpoint"] == f"hsdt_s/toy_blind (hsdt_s_toy_blind.pt, sha256 {sha})"
    assert tags["hsi_model"] == "hsdt_s" and tags["hsi_restoration"] == "denoising x1"
    assert json.loads(tags["hsi_trained_degradation"])["name"] == "blind_gaussian"
    assert tags["hsi_scaling"].startswith("the checkpoint's") and tags["hsi_input"] == str(scene)


def test_evaluation_is_seeded_and_uses_the_held_out_region(blind: dict, toy_scene) -> None:
    weights = pretrained.load_weights(blind["path"])
    # a blind model is measured at the usual sigmas it was trained on
    assert [c["sigma"] for c in default_cases(weights.restoration["degradation"])] == [30, 50]
    assert default_cases({"name": "gaussian", "sigma": 70.0}) == [
        {"name": "gaussian", "sigma": 70.0}
    ]
    first = evaluate_restoration(weights)
    assert first["region"] == "test region rows 0-24, cols 8-20"
    assert first["shape"] == [BANDS, HEIGHT, 12] and list(first["cases"]) == [
        "gaussian30",
        "gaussian50",
    ]
    noisy = first["cases"]["gaussian30"]["reference"]["MPSNR"]
    assert 18.0 < noisy < 21.0  # sigma 30 of 255 is 18.6 dB before clipping to [0, 1]
    assert flat_metrics(evaluate_restoration(weights)) == flat_metrics(first)  # repeats
    assert flat_metrics(evaluate_restoration(weights, seed=1)) != flat_metrics(first)
    whole = evaluate_restoration(weights, dataset="another_scene")
    assert whole["shape"] == [BANDS, HEIGHT, WIDTH] and whole["region"].startswith("whole")


def test_evaluation_refuses_a_scene_with_gaps(blind: dict, monkeypatch) -> None:
    gappy = _cube()
    gappy[:, 3, 4] = np.nan
    scene = SimpleNamespace(cube=SimpleNamespace(data=gappy, nodata_mask=None))
    monkeypatch.setattr("hsi.data.registry.load_dataset", lambda name, root=None: scene)
    with pytest.raises(DataError, match="no-data or non-finite pixels"):
        evaluate_restoration(pretrained.load_weights(blind["path"]), dataset="gappy")


def test_export_records_the_measured_metrics(blind: dict, tmp_path: Path, toy_scene) -> None:
    argv = ["export", "--ckpt", str(blind["ckpt"]), "--tag", "toy_blind", "--dtype", "float32"]
    assert pretrained_main([*argv, "--out", str(tmp_path)]) == 0
    row = yaml.safe_load((tmp_path / "index.yaml").read_text())["weights"][0]
    measured = evaluate_restoration(pretrained.load_weights(tmp_path / row["file"]))
    assert row["metrics"] == flat_metrics(measured)
    assert row["metrics_input"] == flat_metrics(measured, "reference")
    assert row["metrics_fp32"] == row["metrics"]  # float32 export of a float32 model
    assert row["test_shape"] == [BANDS, HEIGHT, 12]
    entry = pretrained.load_index(tmp_path)[0]
    assert entry.extra["task"] == "restoration" and entry.metrics == row["metrics"]


@pytest.mark.realdata
@pytest.mark.parametrize("tag", ["salinas_a_gaussian50", "salinas_a_blind"])
def test_shipped_denoisers_reproduce_their_index_metrics(
    tag: str, shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HSI_CHECKPOINTS", raising=False)
    weights = pretrained.load_weights(f"hsdt_s/{tag}")
    result = evaluate_restoration(weights, root=shared_data)
    assert result["shape"] == weights.entry.extra["test_shape"] == [204, 83, 17]
    assert flat_metrics(result) == weights.entry.metrics
    assert flat_metrics(result, "reference") == weights.entry.extra["metrics_input"]
    # denoising gains at least 15 dB over the noisy input at every measured sigma
    for case, scores in result["cases"].items():
        assert scores["restored"]["MPSNR"] > scores["reference"]["MPSNR"] + 15, case


def test_create_model_with_a_shipped_denoiser(monkeypatch: pytest.MonkeyPatch) -> None:
    import hsi

    monkeypatch.delenv("HSI_CHECKPOINTS", raising=False)
    model = hsi.create_model("hsdt_s", pretrained="salinas_a_gaussian50").eval()
    # the paper's HSDT-S: 134,350 learnable parameters at 31 bands
    assert sum(p.numel() for p in model.parameters()) == 134_350
    cfg = model.pretrained_cfg
    assert cfg["task"] == "restoration" and cfg["restoration"]["degradation"]["sigma"] == 50
    with torch.no_grad():  # flex: Indian Pines' 200 bands as well as Salinas-A's 204
        out = model(torch.rand(1, 200, 16, 16))
    assert out.shape == (1, 200, 16, 16) and torch.isfinite(out).all()


def test_predict_help_shows_scene_prediction_and_the_restoration_options(capsys) -> None:
    """``hsi predict --help`` is scene prediction's help (not Lightning's), and a shipped
    denoiser's name leads to the restoration options."""
    assert main(["predict", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--input SCENE" in out and "--output MAP.tif" in out
    assert "hsi predict --ckpt CKPT --input SCENE --help" in out and "--ckpt_path" not in out
    assert main(["predict", "--ckpt", "salinas_a_blind", "--input", "x.tif", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--scaling {checkpoint,scene}" in out and "salinas_a_blind" in out


def test_predict_without_input_names_the_missing_option(capsys) -> None:
    """A forgotten --input is scene prediction's usage error, not LightningCLI asking for a
    model and data module."""
    assert main(["predict", "--ckpt", "indian_pines", "--output", "map.tif"]) == 2
    err = capsys.readouterr().err
    assert "--input" in err and "predict.data" not in err
    assert main(["predict", "--ckpt", "salinas_a_blind"]) == 2
    err = capsys.readouterr().err
    assert "--input" in err and "predict.data" not in err
