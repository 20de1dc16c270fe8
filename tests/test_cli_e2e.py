"""End to end through the `hsi` command line on a small generated scene."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.io as sio
import torch
from conftest import make_scene

from hsi.cli import main
from hsi.tasks import ClassificationTask


def _write_scene(tmp_path: Path) -> tuple[Path, Path]:
    cube, labels = make_scene(height=40, width=36, bands=24, classes=4)
    image, gt = tmp_path / "toy.mat", tmp_path / "toy_gt.mat"
    sio.savemat(image, {"toy": cube})
    sio.savemat(gt, {"toy_gt": labels})
    return image, gt


def _config(tmp_path: Path, image: Path, gt: Path, protocol: str = "disjoint") -> Path:
    cfg = tmp_path / "toy.yaml"
    cfg.write_text(
        f"""
seed_everything: 0
trainer:
  max_epochs: 3
  accelerator: cpu
  logger:
    class_path: lightning.pytorch.loggers.CSVLogger
    init_args: {{save_dir: {tmp_path / "runs"}, name: toy}}
  enable_progress_bar: false
model:
  class_path: hsi.tasks.ClassificationTask
  init_args: {{model: hybridsn, lr: 0.001}}
data:
  class_path: hsi.data.HyperspectralPatchDataModule
  init_args:
    dataset: null
    image: {image}
    labels: {gt}
    class_names: [a, b, c, d]
    protocol: {protocol}
    train: 0.3
    val: 0.1
    patch_size: 9
    block_size: 9
    pca_components: 16
    batch_size: 64
"""
    )
    return cfg


def test_fit_then_test_writes_report_and_map(tmp_path: Path) -> None:
    image, gt = _write_scene(tmp_path)
    cfg = _config(tmp_path, image, gt)
    assert main(["fit", "--config", str(cfg)]) == 0
    run = tmp_path / "runs" / "toy" / "version_0"
    report = json.loads((run / "test_report.json").read_text())
    assert report["protocol"] == "disjoint" and report["leaky"] is False
    assert report["split_file"] and Path(report["split_file"]).is_file()
    assert 0 <= report["metrics"]["OA"] <= 100
    assert report["epochs_run"] == 3 and report["checkpoint_epoch"] in (0, 1, 2)
    cm = np.array(report["confusion_matrix"])
    assert cm.shape == (4, 4) and cm.sum() == sum(c["test_pixels"] for c in report["per_class"])
    assert (run / "test_map.png").stat().st_size > 1000
    # the toy classes have distinct spectra: a few epochs separate them
    assert report["metrics"]["OA"] > 60

    # the checkpoint alone rebuilds the model and its preprocessing
    ckpt = next((run / "checkpoints").glob("best-*.ckpt"))
    # Lightning's default weights_only=True: the checkpoint holds only safe types
    task = ClassificationTask.load_from_checkpoint(ckpt)
    pre = task.get_preprocessor()
    assert pre is not None and pre.fit_on == "train" and pre.out_bands == 16
    assert task.hparams.in_bands == 16 and task.hparams.num_classes == 4
    out = task(torch.zeros(2, 16, 9, 9))
    assert out.shape == (2, 4)

    # `hsi test` from the checkpoint reproduces the same numbers
    out_dir = tmp_path / "retest"
    code = main(
        [
            "test",
            "--config",
            str(cfg),
            "--ckpt_path",
            str(ckpt),
            "--model.init_args.report_dir",
            str(out_dir),
        ]
    )
    assert code == 0
    again = json.loads((out_dir / "test_report.json").read_text())
    assert again["metrics"] == pytest.approx(report["metrics"])


def test_config_typo_is_a_clear_error(tmp_path: Path, capsys) -> None:
    image, gt = _write_scene(tmp_path)
    cfg = _config(tmp_path, image, gt)
    with pytest.raises(SystemExit) as exc:
        main(["fit", "--config", str(cfg), "--data.init_args.protocl", "random"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "takes no 'protocl': did you mean 'protocol'?" in err
    assert "usage:" not in err and len(err.splitlines()) < 20  # no option dump above it
    # a mistyped flag and a mistyped key in a config file: the closest names
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(cfg), "--trainer.max_epohcs", "3"])
    assert "did you mean trainer.max_epochs" in capsys.readouterr().err
    typo = tmp_path / "typo.yaml"
    typo.write_text("trainer:\n  max_epoch: 3\n")
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(cfg), "--config", str(typo)])
    assert "no option trainer.max_epoch: did you mean trainer.max_epochs" in capsys.readouterr().err


def test_a_missing_or_mistyped_config_says_which_configs_exist(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    """configs/ lives in the repository: a README command run from another folder, a
    mistyped file name and a forgotten --config each say what to pass instead."""
    repo = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(tmp_path)
    cases = [
        (["fit"], "pass --config CONFIG.yaml: configs/ in the hsi repository"),
        (
            ["fit", "--config", "configs/hybridsn/indian_pines_disjoint.yaml"],
            f"is in the hsi repository ({repo}): run hsi from there, or pass --config "
            f"{repo}/configs/hybridsn/indian_pines_disjoint.yaml",
        ),
        (
            ["test", "--config", "configs/hybridsn/indian_pines_disjont.yaml"],
            f"did you mean --config {repo}/configs/hybridsn/indian_pines_disjoint.yaml?",
        ),
        (
            ["fit", "--config", str(repo / "configs/hybridsn/indian_pine_paper.yaml")],
            f"did you mean --config {repo}/configs/hybridsn/indian_pines_paper.yaml?",
        ),
    ]
    for argv, hint in cases:
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert hint in err, (argv, err)
        assert len(err.splitlines()) < 6


def test_missing_file_is_a_one_line_error(tmp_path: Path, capsys) -> None:
    image, gt = _write_scene(tmp_path)
    cfg = _config(tmp_path, tmp_path / "nope.mat", gt)
    assert main(["fit", "--config", str(cfg)]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("error:") and "nope.mat" in last


def test_band_count_disagreeing_with_the_data_is_a_clear_error(tmp_path: Path, capsys) -> None:
    image, gt = _write_scene(tmp_path)
    cfg = _config(tmp_path, image, gt)
    code = main(["fit", "--config", str(cfg), "--model.init_args.in_bands", "30"])
    assert code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "in_bands=30" in last and "16" in last


def test_unknown_dataset_is_a_clear_error(tmp_path: Path, capsys) -> None:
    image, gt = _write_scene(tmp_path)
    cfg = _config(tmp_path, image, gt)
    code = main(["fit", "--config", str(cfg), "--data.init_args.dataset", "indian_pine"])
    assert code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "indian_pines" in last


def test_convert_mat_to_geotiff_and_help(tmp_path: Path, capsys) -> None:
    from hsi.data.readers import read_cube

    image, _ = _write_scene(tmp_path)
    out = tmp_path / "toy.tif"
    assert main(["convert", str(image), str(out)]) == 0
    assert np.array_equal(read_cube(out).data, read_cube(image).data)
    assert main(["convert", str(image), str(out)]) == 2  # refuses to overwrite
    assert "--overwrite" in capsys.readouterr().err
    assert main([]) == 0
    assert "hsi predict --ckpt" in capsys.readouterr().out
