"""HIR-Diff and DDS2M as training-free registry models: shapes, seeds and sizes, `hsi test`
through RestorationTask, `hsi predict --model` on a GeoTIFF (georeference, units, SR grid),
and the errors for what they cannot do (train, bad kwargs, a prior of another k)."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import rasterio
import torch
import yaml

from hsi.cli import main
from hsi.data.cube import SpectralCube
from hsi.data.readers import read_cube
from hsi.data.writers import write_geotiff
from hsi.diffusion.prior import DiffusionPriorTask
from hsi.diffusion.unet import SmallUNet
from hsi.errors import ConfigError, DataError
from hsi.image_quality import mpsnr
from hsi.inference.restoration import restore_scene
from hsi.models.registry import create_model
from hsi.tasks import RestorationTask

torch.set_num_threads(1)

BANDS = 8
TINY_UNET = {"base_channels": 8, "channel_mults": [1, 2], "num_res_blocks": 1}


def _clean(height: int = 24, width: int = 24, seed: int = 0) -> np.ndarray:
    """A rank-3 (bands, H, W) cube on [0, 1]: smooth and edged maps times random spectra.

    The edge runs along the rows and the texture repeats along the columns, so a left
    training strip spans the value range of the right held-out strips (scaling fits it)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
    maps = np.stack(
        [np.sin(3 * yy) ** 2, (yy > 0.5) * 0.8 + 0.1, 0.5 + 0.4 * np.cos(9 * xx + 2 * yy)]
    )
    spectra = rng.uniform(0.1, 1.0, (BANDS, 3))
    cube = (spectra / spectra.sum(1, keepdims=True) @ maps.reshape(3, -1)).reshape(
        BANDS, height, width
    )
    return ((cube - cube.min()) / (cube.max() - cube.min())).astype(np.float32)


def _noisy(clean: np.ndarray, sigma: float = 0.1, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (clean + sigma * rng.standard_normal(clean.shape)).astype(np.float32)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(mpsnr(torch.from_numpy(a)[None], torch.from_numpy(b)[None])[0])


# ---------------------------------------------------------------------------- the models


def test_shapes_for_denoising_and_super_resolution() -> None:
    x = torch.from_numpy(_noisy(_clean(16, 16)))[None]
    hir = create_model("hirdiff", in_bands=BANDS, steps=2, progress=False)
    dds = create_model("dds2m", in_bands=BANDS, rank=3, steps=4, progress=False)
    for model in (hir, dds):
        assert model.training_free and model.task is None
        out = model(x)
        assert out.shape == x.shape and out.dtype == x.dtype
        assert float(out.min()) >= 0 and float(out.max()) <= 1
    dds_sr = create_model("dds2m", in_bands=BANDS, scale=2, rank=3, steps=4, progress=False)
    assert dds_sr(x[..., :8, :8]).shape == (1, BANDS, 16, 16)
    assert dds_sr.min_tile == 4  # VS2M's 8 high-resolution pixels


def test_hirdiff_super_resolution_shape() -> None:
    x = torch.from_numpy(_clean(8, 8))[None]
    model = create_model("hirdiff", in_bands=BANDS, scale=2, steps=2, progress=False)
    assert model.min_tile == 2  # the U-Net's 4 high-resolution pixels
    out = model(x)
    assert out.shape == (1, BANDS, 16, 16)


def test_sizes_follow_the_papers_and_nothing_is_trainable() -> None:
    hir = create_model("hirdiff", in_bands=BANDS, progress=False)
    # the untrained prior is benchmarks/bench_hirdiff.py's: SmallUNet(3) seeded with 0,
    # 1,046,883 parameters (hsi's prior; the paper's SR3 U-Net is not reproduced)
    torch.manual_seed(0)
    reference = SmallUNet(3)
    assert sum(p.numel() for p in hir.parameters()) == 1_046_883
    for a, b in zip(hir.prior.state_dict().values(), reference.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert not any(p.requires_grad for p in hir.parameters())
    assert (hir.k, hir.steps, hir.guidance_weight, hir.tv_weight) == (3, 20, 4.0, 10 / 128)
    dds = create_model("dds2m", in_bands=BANDS, rank=3, progress=False)
    assert sum(p.numel() for p in dds.parameters()) == 0  # a fresh VS2M per image
    assert (dds.steps, dds.iters_per_step, dds.lr, dds.seed) == (2000, 1, 5e-4, 1234)


def test_same_seed_same_output() -> None:
    x = torch.from_numpy(_noisy(_clean(16, 16)))[None]

    def run(name: str, **kw) -> torch.Tensor:
        return create_model(name, in_bands=BANDS, progress=False, **kw)(x)

    first = run("hirdiff", steps=3, seed=3)
    assert torch.equal(first, run("hirdiff", steps=3, seed=3))
    assert not torch.equal(first, run("hirdiff", steps=3, seed=4))
    args = dict(rank=3, steps=4, iters_per_step=1)
    assert torch.equal(run("dds2m", seed=5, **args), run("dds2m", seed=5, **args))


def test_bad_arguments_are_refused_at_construction() -> None:
    with pytest.raises(ConfigError, match="steps .*positive integer, got 0"):
        create_model("hirdiff", in_bands=BANDS, steps=0)
    with pytest.raises(ConfigError, match="steps .*positive integer, got 0"):
        create_model("dds2m", in_bands=BANDS, rank=3, steps=0)
    with pytest.raises(ConfigError, match="k=9 reduced bands exceed"):
        create_model("hirdiff", in_bands=BANDS, k=9)
    with pytest.raises(ConfigError, match="rank 10 cannot exceed"):
        create_model("dds2m", in_bands=BANDS)
    with pytest.raises(ConfigError, match="exceed the schedule"):
        create_model("dds2m", in_bands=BANDS, rank=3, steps=5000)


def test_odd_sizes_are_refused_by_the_model_and_padded_by_the_task() -> None:
    x = torch.from_numpy(_noisy(_clean(10, 14)))[None]
    kwargs = {"steps": 2, "progress": False}
    with pytest.raises(DataError, match="multiples of 4"):
        create_model("hirdiff", in_bands=BANDS, **kwargs)(x)
    task = RestorationTask(model="hirdiff", model_kwargs=kwargs, in_bands=BANDS, scale=1)
    assert task.restore(x).shape == x.shape


def _prior_checkpoint(tmp_path: Path, k: int) -> Path:
    torch.manual_seed(0)
    task = DiffusionPriorTask(k=k, unet_kwargs=TINY_UNET)
    trainer = L.Trainer(max_steps=0, logger=False, enable_checkpointing=False)
    trainer.strategy.connect(task)
    path = tmp_path / f"prior_k{k}.ckpt"
    trainer.save_checkpoint(path)
    return path


def test_a_prior_checkpoint_is_loaded_and_must_match_k(tmp_path: Path) -> None:
    ckpt = _prior_checkpoint(tmp_path, k=4)
    with pytest.raises(ConfigError, match="k=4-band reduced images, but k=3"):
        create_model("hirdiff", in_bands=BANDS, prior=str(ckpt))
    model = create_model("hirdiff", in_bands=BANDS, prior=str(ckpt), k=4, steps=2, progress=False)
    assert model.alphas_cumprod is not None and len(model.alphas_cumprod) == 1000
    assert model.min_tile == 2  # two levels in the tiny prior
    x = torch.from_numpy(_noisy(_clean(8, 8)))[None]
    assert model(x).shape == x.shape


# ---------------------------------------------------------------------------- hsi test / fit


def _config(tmp_path: Path, model: str, kwargs: dict) -> Path:
    image = tmp_path / "cube.npy"
    np.save(image, np.transpose(200 + 300 * _clean(24, 40), (1, 2, 0)))  # (H, W, B), raw units
    config = {
        "seed_everything": 0,
        "trainer": {
            "logger": False,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "default_root_dir": str(tmp_path),
        },
        "model": {
            "class_path": "hsi.tasks.RestorationTask",
            "init_args": {"model": model, "model_kwargs": kwargs, "report_dir": str(tmp_path)},
        },
        "data": {
            "class_path": "hsi.data.restoration.RestorationDataModule",
            "init_args": {
                "dataset": None,
                "image": str(image),
                "degradation": "gaussian30",
                "crop_size": 16,
                "crops_per_epoch": 4,
                "batch_size": 4,
                "val_fraction": 0.3,
                "test_fraction": 0.3,
            },
        },
    }
    path = tmp_path / "input.yaml"  # not config.yaml: LightningCLI writes that one to the run
    path.write_text(yaml.safe_dump(config))
    return path


def test_hsi_test_writes_a_report_and_fit_is_refused(tmp_path: Path, capsys) -> None:
    config = _config(tmp_path, "hirdiff", {"steps": 10, "progress": False})
    assert main(["test", "--config", str(config)]) == 0
    report = json.loads((tmp_path / "restoration_report.json").read_text())
    assert report["task"] == "denoising" and report["test_images"] == 1
    assert report["model"]["model"] == "hirdiff" and report["data"]["degradation"]["sigma"] == 30
    for key in ("MPSNR", "MSSIM", "SAM", "ERGAS"):
        assert np.isfinite(report["metrics"][key])
    # on a smooth rank-3 cube the untrained prior's guidance beats the noisy input (given
    # enough steps: each step applies one guidance gradient; 3 steps do not)
    assert report["metrics"]["MPSNR"] > report["reference"]["metrics"]["MPSNR"] + 3
    capsys.readouterr()
    assert main(["fit", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "hirdiff is training-free (unsupervised)" in err and "hsi predict --model" in err


# ---------------------------------------------------------------------------- hsi predict


def _scene(tmp_path: Path, cube01: np.ndarray, name: str = "noisy.tif") -> Path:
    from affine import Affine

    raw = SpectralCube(
        200 + 300 * cube01,  # input units (e.g. radiance counts), not [0, 1]
        wavelengths=np.linspace(400, 1000, cube01.shape[0]),
        crs="EPSG:32633",
        transform=Affine(30.0, 0, 368000.0, 0, -30.0, 5808000.0),
    )
    return write_geotiff(tmp_path / name, raw)


def test_predict_with_a_model_restores_a_georeferenced_scene(tmp_path: Path) -> None:
    clean = _clean()
    scene = _scene(tmp_path, _noisy(clean))
    out = tmp_path / "restored.tif"
    kwargs = {"steps": 10, "seed": 0}
    summary = restore_scene(
        inputs=scene, output=out, model="hirdiff", model_kwargs=kwargs, tile=16, progress=False
    )
    assert summary["model"] == "hirdiff" and "checkpoint" not in summary
    assert summary["model_kwargs"]["steps"] == 10 and summary["tiles"] == 4
    got, noisy = read_cube(out), read_cube(scene)
    assert got.shape == noisy.shape and np.isfinite(got.data).all()
    np.testing.assert_allclose(got.wavelengths, noisy.wavelengths)
    with rasterio.open(scene) as a, rasterio.open(out) as b:
        assert b.crs == a.crs and b.transform == a.transform and b.count == a.count
        tags = b.tags()  # no checkpoint: the model and its arguments say what made it
    assert tags["hsi_model"] == "hirdiff" and "hsi_checkpoint" not in tags
    assert json.loads(tags["hsi_model_kwargs"])["steps"] == 10
    assert tags["hsi_scaling"].startswith("the scene's own min-max")
    # values come back in the input's units; compare on the clean cube's [0, 1] scale
    restored01 = (got.data - 200) / 300
    assert abs(float(np.median(got.data)) - float(np.median(200 + 300 * clean))) < 30
    assert _psnr(restored01, clean) > _psnr((noisy.data - 200) / 300, clean) + 3
    # DDS2M goes through the same tiles and writer (a tiny budget: shapes and units only)
    out2 = tmp_path / "dds2m.tif"
    kwargs = {"rank": 3, "steps": 4}
    restore_scene(inputs=scene, output=out2, model="dds2m", model_kwargs=kwargs, progress=False)
    got2 = read_cube(out2)
    assert got2.shape == noisy.shape and np.isfinite(got2.data).all()
    # in input units: the [0, 1] output maps back into the scene's own min..max (a 4-step
    # budget restores nothing, so only the range is checked)
    lo, hi = float(noisy.data.min()), float(noisy.data.max())
    assert lo - 1e-3 <= float(got2.data.min()) < float(got2.data.max()) <= hi + 1e-3
    assert lo > 50  # far from [0, 1]


def test_predict_model_super_resolution_via_the_cli(tmp_path: Path, capsys) -> None:
    scene = _scene(tmp_path, _clean(12, 12))
    out = tmp_path / "sr.tif"
    argv = ["predict", "--model", "hirdiff", "--input", str(scene), "--output", str(out)]
    kw = ["--model-kwargs", '{"steps": 2}', "--scale", "2", "--tile", "8", "--no-progress"]
    assert main(argv + kw) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["task"] == "super_resolution" and summary["output_size"] == [24, 24]
    assert read_cube(out).shape == (BANDS, 24, 24)
    with rasterio.open(scene) as a, rasterio.open(out) as b:
        assert b.transform.a == a.transform.a / 2 and b.transform.e == a.transform.e / 2
        assert (b.transform.c, b.transform.f) == (a.transform.c, a.transform.f)


def test_predict_refuses_what_a_model_cannot_do(tmp_path: Path, capsys) -> None:
    scene = _scene(tmp_path, _clean(12, 12))
    out = tmp_path / "out.tif"
    with pytest.raises(ConfigError, match="hsdt must be trained: pass --ckpt"):
        restore_scene(inputs=scene, output=out, model="hsdt", progress=False)
    with pytest.raises(ConfigError, match="exactly one of a checkpoint"):
        restore_scene(inputs=scene, output=out, progress=False)
    with pytest.raises(ConfigError, match="steps .*positive integer, got 0"):
        restore_scene(
            inputs=scene, output=out, model="hirdiff", model_kwargs={"steps": 0}, progress=False
        )
    with pytest.raises(ConfigError, match="must not set in_bands"):
        restore_scene(
            inputs=scene, output=out, model="dds2m", model_kwargs={"in_bands": 3}, progress=False
        )
    assert not out.exists()
    argv = ["predict", "--model", "hirdiff", "--input", str(scene), "--output", str(out)]
    for bad, message in (("{steps: 2}", "not valid JSON"), ("[2]", "must be a JSON object")):
        assert main([*argv, "--model-kwargs", bad]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: --model-kwargs") and message in err[0]
    assert not out.exists()
