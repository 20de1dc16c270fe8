"""Restoration end to end on tiny synthetic cubes: data module (leak-free, seeded), a 1-epoch
fit + test through RestorationTask, checkpoint rebuild, whole-scene `hsi predict` with tiles,
blending and georeference, baselines, and the bad-input errors."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import rasterio
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn

from hsi.benchmarks.records import load_report
from hsi.cli import main
from hsi.data.degradations import build_degradation
from hsi.data.readers import read_cube
from hsi.data.restoration import RestorationDataModule, Scaling, regions_overlap
from hsi.data.writers import write_geotiff
from hsi.errors import ConfigError, DataError
from hsi.image_quality import mpsnr
from hsi.inference.restoration import blend_weights, checkpoint_task, restore_scene, tile_starts
from hsi.models.registry import register_model
from hsi.restoration_baselines import (
    bicubic_upsample,
    gaussian_filter_denoise,
    median_filter_denoise,
)
from hsi.tasks import RestorationTask

# ---------------------------------------------------------------------------- test models


@register_model("_infra_tiny_denoiser")
class TinyDenoiser(nn.Module):
    """Two 3x3 convolutions with a residual connection (test only)."""

    task = "denoising"
    min_tile = 4

    def __init__(self, in_bands: int, width: int = 8) -> None:
        super().__init__()
        self.a = nn.Conv2d(in_bands, width, 3, padding=1)
        self.b = nn.Conv2d(width, in_bands, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.b(torch.relu(self.a(x)))


@register_model("_infra_pointwise")
class Pointwise(nn.Module):
    """A 1x1 convolution: no spatial context, so tiled restoration must equal the whole."""

    min_tile = 1

    def __init__(self, in_bands: int) -> None:
        super().__init__()
        self.mix = nn.Conv2d(in_bands, in_bands, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 0.1 * torch.tanh(self.mix(x))


@register_model("_infra_tiny_sr")
class TinySR(nn.Module):
    """Nearest upsampling + 1x1 convolution (context-free super-resolution, test only)."""

    task = "super_resolution"
    min_tile = 2

    def __init__(self, in_bands: int, scale: int) -> None:
        super().__init__()
        self.scale = scale
        self.mix = nn.Conv2d(in_bands, in_bands, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(x, scale_factor=self.scale, mode="nearest")
        return up + 0.1 * torch.tanh(self.mix(up))


@register_model("_infra_multiple_of_4")
class MultipleOf4(Pointwise):
    """Refuses sides that are not multiples of 4, like HSDT's two halvings (test only)."""

    min_tile = 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % 4 or x.shape[-2] % 4:
            raise ValueError(f"sides must be multiples of 4, got {tuple(x.shape[-2:])}")
        return super().forward(x)


# ---------------------------------------------------------------------------- data


def _smooth_cube(bands: int = 6, height: int = 40, width: int = 48) -> np.ndarray:
    """(H, W, B) smooth radiance-like cube in 200..400 (the .npy community layout)."""
    r, c = np.mgrid[0:height, 0:width]
    planes = [np.sin(r / 6 + b) + np.cos(c / 7 - b) for b in range(bands)]
    return (np.stack(planes, -1) * 50 + 300).astype(np.float32)


@pytest.fixture(scope="module")
def cube_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cube") / "cube.npy"
    np.save(path, _smooth_cube())
    return path


def _dm(cube_file: Path, **kw) -> RestorationDataModule:
    args = dict(
        dataset=None,
        image=str(cube_file),
        degradation="gaussian30",
        crop_size=16,
        crops_per_epoch=8,
        batch_size=4,
        val_fraction=0.25,
        test_fraction=0.3,
    )
    args.update(kw)
    return RestorationDataModule(**args)


@pytest.fixture(scope="module")
def trained(cube_file, tmp_path_factory):
    """One epoch of fit, then test of the validation-selected checkpoint."""
    out = tmp_path_factory.mktemp("run")
    dm = _dm(cube_file)
    task = RestorationTask(model="_infra_tiny_denoiser", lr=1e-2, report_dir=str(out))
    ckpt = ModelCheckpoint(dirpath=out, monitor="val/MPSNR", mode="max", filename="best")
    trainer = L.Trainer(
        max_epochs=1,
        logger=False,
        callbacks=[ckpt],
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=out,
    )
    trainer.fit(task, datamodule=dm)
    trainer.test(task, datamodule=dm, ckpt_path="best")
    return {"dm": dm, "task": task, "ckpt": Path(ckpt.best_model_path), "out": out}


# ---------------------------------------------------------------------------- data module


def test_training_crops_never_touch_held_out_pixels(cube_file) -> None:
    dm = _dm(cube_file, crops_per_epoch=50)
    dm.setup()
    train, val, test = (dm.regions[p][0] for p in ("train", "val", "test"))
    assert not regions_overlap(train, val) and not regions_overlap(train, test)
    assert not regions_overlap(val, test)
    ds = dm.train_dataset()
    for key in range(3 * len(ds)):  # three epochs of crops
        k, r, c = ds.crop_box(key)
        assert k == 0
        assert train.r0 <= r and r + 16 <= train.r1
        assert train.c0 <= c and c + 16 <= train.c1
    evaluated = {b for p in ("val", "test") for b in dm.eval_dataset(p).boxes}
    assert evaluated == {val, test}


def test_noise_is_seeded_per_epoch_and_fixed_for_evaluation(cube_file) -> None:
    dm = _dm(cube_file)
    ds = dm.train_dataset()
    a, b = ds[3], ds[3]
    torch.testing.assert_close(a["input"], b["input"])
    later = ds[3 + len(ds)]  # item 3 of the next epoch: new crop/noise
    assert not torch.equal(a["input"], later["input"])
    sampler = dm.train_dataloader().sampler  # Lightning calls set_epoch on it every epoch
    sampler.set_epoch(1)
    assert sorted(sampler) == list(range(len(ds), 2 * len(ds)))
    v1, v2 = dm.eval_dataset("test")[0], _dm(cube_file).eval_dataset("test")[0]
    torch.testing.assert_close(v1["input"], v2["input"])  # same noise in every run
    noise = (v1["input"] - v1["target"]).std().item()
    assert abs(noise - 30 / 255) < 0.1 * 30 / 255


def test_scaling_is_fitted_on_the_training_strip_only(tmp_path) -> None:
    cube = _smooth_cube()
    cube[:, 40:] += 1000  # the held-out right edge is much brighter
    path = tmp_path / "bright.npy"
    np.save(path, cube)
    dm = _dm(path)
    dm.setup()
    train = dm.regions["train"][0]
    assert dm.scaling.hi[0] == pytest.approx(float(cube[:, : train.c1].max()))
    assert dm.cubes[0][:, :, 40:].max() > 1.5  # held-out values are not clipped to [0, 1]
    band = Scaling.fit("minmax_band", [np.transpose(cube[:, :20], (2, 0, 1))])
    assert len(set(band.hi)) > 1


def test_band_windows_cut_training_crops_only(cube_file) -> None:
    dm = _dm(cube_file, band_window=4)
    assert dm.in_bands == 4  # what the model is built for
    ds = dm.train_dataset()
    cube = dm.cubes[0]
    for key in range(6):
        item = ds[key]
        assert item["target"].shape == (4, 16, 16)
        _, r, c = ds.crop_box(key)
        crop = cube[:, r : r + 16, c : c + 16]
        # The target is some window of 4 contiguous bands of the crop (up to flips/rotations).
        sums = [float(crop[b0 : b0 + 4].sum()) for b0 in range(cube.shape[0] - 3)]
        assert min(abs(s - float(item["target"].sum())) for s in sums) < 1e-2
    assert dm.eval_dataset("val")[0]["target"].shape[0] == 6  # evaluation keeps every band
    with pytest.raises(ConfigError, match="band_window must be >= 1"):
        _dm(cube_file, band_window=0)
    with pytest.raises(ConfigError, match="exceeds the cube's 6 bands"):
        _ = _dm(cube_file, band_window=9).in_bands


def test_super_resolution_data_shapes(cube_file) -> None:
    dm = _dm(cube_file, degradation="bicubic_x2", crop_size=16)
    assert dm.task_kind == "super_resolution" and dm.scale == 2
    item = dm.train_dataset()[0]
    assert item["input"].shape == (6, 8, 8) and item["target"].shape == (6, 16, 16)
    test = dm.eval_dataset("test")[0]
    assert test["target"].shape[1] == 2 * test["input"].shape[1]


def test_bad_data_is_refused_clearly(tmp_path, cube_file) -> None:
    cube = _smooth_cube()
    nan = cube.copy()
    nan[3, 4, 2] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    with pytest.raises(DataError, match="NaN"):
        _dm(tmp_path / "nan.npy").setup()
    const = cube.copy()
    const[:, :, 2] = 7.0
    np.save(tmp_path / "const.npy", const)
    with pytest.raises(DataError, match="bands 2 .*constant.*data.bands"):
        _dm(tmp_path / "const.npy").setup()
    _dm(tmp_path / "const.npy", bands=[0, 1, 3, 4, 5]).setup()  # the fix the message names
    with pytest.raises(ConfigError, match="crop_size 64 does not fit"):
        _dm(cube_file, crop_size=64).train_dataset()
    with pytest.raises(ConfigError, match="at least 11 pixels"):
        _dm(cube_file, val_fraction=0.1).setup()
    with pytest.raises(ConfigError, match="multiple of the scale"):
        _dm(cube_file, degradation="bicubic_x4", crop_size=18)
    with pytest.raises(ConfigError, match="exactly one of"):
        RestorationDataModule(dataset="indian_pines", image=str(cube_file))


# ---------------------------------------------------------------------------- task


def test_fit_and_test_write_a_report(trained) -> None:
    report = json.loads((trained["out"] / "restoration_report.json").read_text())
    assert report["task"] == "denoising" and report["test_images"] == 1
    for key in ("MPSNR", "MSSIM", "SAM", "ERGAS"):
        assert np.isfinite(report["metrics"][key])
        assert np.isfinite(report["reference"]["metrics"][key])
    assert report["reference"]["what"] == "degraded input"
    # the reference row is the noisy input itself: sigma 30 gives about 20*log10(255/30) dB
    # on the [0, 1] scale (a little more where the clean test strip exceeds the train range)
    assert abs(report["reference"]["metrics"]["MPSNR"] - 20 * np.log10(255 / 30)) < 1.5
    assert report["data"]["degradation"] == {"name": "gaussian", "sigma": 30.0}
    assert report["model"]["hparams"]["in_bands"] == 6
    # hsi benchmark reads it as one result under the papers' protocol name
    assert report["hsi_version"] and "git" in report
    record = load_report(trained["out"] / "restoration_report.json")
    assert (record.task, record.protocol, record.leaky) == ("restoration", "gaussian30", False)
    assert record.metrics["PSNR"] == report["metrics"]["MPSNR"]
    assert record.reference["PSNR"] == report["reference"]["metrics"]["MPSNR"]


def test_checkpoint_alone_rebuilds_model_and_pipeline(trained) -> None:
    path = trained["ckpt"]
    assert checkpoint_task(path) == "restoration"
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert raw["hsi"]["restoration"] == "denoising"
    assert raw["hsi"]["degradation"] == {"name": "gaussian", "sigma": 30.0}
    task = RestorationTask.load_from_checkpoint(path, map_location="cpu")
    assert task.hparams.model == "_infra_tiny_denoiser" and task.hparams.scale == 1
    assert task.get_scaling() == trained["dm"].scaling
    x = torch.rand(1, 6, 12, 12)
    best = trained["task"]  # tested with the best checkpoint's weights loaded
    torch.testing.assert_close(task.eval()(x), best.eval()(x))


def test_task_refuses_mismatched_model_and_sizes(cube_file) -> None:
    with pytest.raises(ConfigError, match="super_resolution model"):
        RestorationTask(model="_infra_tiny_sr", in_bands=6, scale=1)
    task = RestorationTask(model="_infra_tiny_denoiser", in_bands=6, scale=1)
    task.net.min_tile = 32
    with pytest.raises(ConfigError, match="min_tile"):
        task._check_sizes(_dm(cube_file))


def test_evaluation_pads_to_the_models_multiple(cube_file) -> None:
    task = RestorationTask(model="_infra_multiple_of_4", in_bands=6, scale=1).eval()
    x = torch.rand(1, 6, 10, 14)
    out = task.restore(x)
    assert out.shape == x.shape
    # a context-free model gives the same pixels as on an unpadded multiple-of-4 input
    torch.testing.assert_close(out[..., :8, :12], task(x[..., :8, :12]))
    with pytest.raises(ConfigError, match="not a multiple of 4"):
        task._check_sizes(_dm(cube_file, crop_size=18))


# ---------------------------------------------------------------------------- predict


def _export(tmp_path: Path, model: str, scale: int, cube_bhw: np.ndarray) -> Path:
    kwargs = {"scale": scale}
    task = RestorationTask(model=model, in_bands=cube_bhw.shape[0], **kwargs)
    torch.manual_seed(0)
    for p in task.net.parameters():
        nn.init.normal_(p, std=0.3)
    task.scaling = Scaling.fit("minmax", [cube_bhw]).state_dict()
    task.degradation = {"name": "gaussian", "sigma": 30.0}
    return task.export_checkpoint(tmp_path / f"{model}.ckpt")


def _scene(tmp_path: Path, cube_bhw: np.ndarray, name: str = "scene.tif") -> Path:
    from affine import Affine

    return write_geotiff(
        tmp_path / name,
        cube_bhw,
        crs="EPSG:32633",
        transform=Affine(30.0, 0, 368000.0, 0, -30.0, 5808000.0),
        band_descriptions=[f"b{i}" for i in range(cube_bhw.shape[0])],
    )


def _whole(ckpt: Path, cube_bhw: np.ndarray) -> np.ndarray:
    task = RestorationTask.load_from_checkpoint(ckpt, map_location="cpu").eval()
    scaling = task.get_scaling()
    with torch.no_grad():
        out = task(torch.from_numpy(scaling.apply(cube_bhw))[None])[0].numpy()
    return scaling.invert(out)


def test_tiling_helpers() -> None:
    assert tile_starts(40, 16, 4) == [0, 12, 24]
    assert tile_starts(10, 16, 4) == [0]
    w = blend_weights(16, 4)
    assert w.min() > 0 and w[4:12].min() == 1 and np.allclose(w, w[::-1])


def test_predict_tiles_blend_to_the_whole_scene_result_with_georeference(tmp_path) -> None:
    cube = np.transpose(_smooth_cube(), (2, 0, 1)).copy()
    ckpt = _export(tmp_path, "_infra_pointwise", 1, cube)
    scene = _scene(tmp_path, cube)
    out = tmp_path / "restored.tif"
    summary = restore_scene(ckpt, scene, out, tile=16, overlap=4, progress=False)
    assert summary["tiles"] == 3 * 4
    got = read_cube(out)
    np.testing.assert_allclose(got.data, _whole(ckpt, cube), rtol=1e-5, atol=1e-3)
    with rasterio.open(scene) as a, rasterio.open(out) as b:
        assert b.crs == a.crs and b.transform == a.transform


def test_predict_super_resolution_scales_the_grid(tmp_path) -> None:
    cube = np.transpose(_smooth_cube(4, 20, 24), (2, 0, 1)).copy()
    ckpt = _export(tmp_path, "_infra_tiny_sr", 2, cube)
    scene = _scene(tmp_path, cube)
    out = tmp_path / "sr.tif"
    restore_scene(ckpt, scene, out, tile=8, overlap=2, progress=False)
    got = read_cube(out)
    assert got.shape == (4, 40, 48)
    np.testing.assert_allclose(got.data, _whole(ckpt, cube), rtol=1e-5, atol=1e-3)
    with rasterio.open(scene) as a, rasterio.open(out) as b:
        assert b.transform.a == a.transform.a / 2 and b.transform.e == a.transform.e / 2
        assert (b.transform.c, b.transform.f) == (a.transform.c, a.transform.f)
    with pytest.raises(ConfigError, match="trained for x2"):
        restore_scene(ckpt, scene, tmp_path / "x4.tif", scale=4, progress=False)
    with pytest.raises(ConfigError, match="min_tile"):
        restore_scene(ckpt, scene, tmp_path / "t1.tif", tile=1, overlap=0, progress=False)


def test_hsi_predict_routes_restoration_checkpoints(trained, tmp_path, capsys) -> None:
    cube = np.transpose(_smooth_cube(), (2, 0, 1)).copy()
    scene = _scene(tmp_path, cube)
    out = tmp_path / "cli.tif"
    argv = ["predict", "--ckpt", str(trained["ckpt"]), "--input", str(scene)]
    code = main([*argv, "--output", str(out), "--tile", "16", "--no-progress"])
    assert code == 0 and out.is_file()
    assert json.loads(capsys.readouterr().out)["task"] == "denoising"
    assert main([*argv, "--output", str(out), "--scale", "4"]) == 2
    assert "trained for x1" in capsys.readouterr().err


def _only_inputs_left(folder: Path, *inputs: Path) -> bool:
    return sorted(folder.iterdir()) == sorted(inputs)


def test_predict_refuses_bad_scenes_before_writing(tmp_path) -> None:
    cube = np.transpose(_smooth_cube(), (2, 0, 1)).copy()
    ckpt = _export(tmp_path, "_infra_pointwise", 1, cube)
    scenes = tmp_path / "scenes"
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    bad = cube.copy()
    bad[2, 5, 7] = np.nan  # NaN in one band: damage, not a no-data pixel
    const = cube.copy()
    const[3] = 1.0
    cases = {
        "nan.tif": (bad, "NaN/inf in some bands"),
        "units.tif": (cube * 1000, "not scaled as the model expects"),
        "const.tif": (const, "bands 3 .*constant"),
        "bands.tif": (cube[:4], "has 4 bands"),
    }
    for name, (data, message) in cases.items():
        with pytest.raises(DataError, match=message):
            restore_scene(ckpt, _scene(scenes, data, name), out_dir / name, progress=False)
    assert list(out_dir.iterdir()) == []


def test_predict_leaves_no_partial_file_when_interrupted(tmp_path, monkeypatch) -> None:
    cube = np.transpose(_smooth_cube(), (2, 0, 1)).copy()
    ckpt = _export(tmp_path, "_infra_pointwise", 1, cube)
    scene = _scene(tmp_path, cube)
    calls = {"n": 0}
    original = RestorationTask.forward

    def failing(self, x):
        calls["n"] += 1
        if calls["n"] > 1:
            raise RuntimeError("simulated crash")
        return original(self, x)

    monkeypatch.setattr(RestorationTask, "forward", failing)
    with pytest.raises(RuntimeError, match="simulated crash"):
        restore_scene(ckpt, scene, tmp_path / "crash.tif", tile=16, batch_size=1, progress=False)
    assert _only_inputs_left(tmp_path, ckpt, scene)


# ---------------------------------------------------------------------------- baselines


def test_classical_baselines_beat_the_noisy_input() -> None:
    clean = np.transpose(_smooth_cube(), (2, 0, 1))
    clean = (clean - clean.min()) / (clean.max() - clean.min())
    noisy = build_degradation("gaussian50")(clean, np.random.default_rng(0))
    t = torch.from_numpy(clean)
    before = mpsnr(torch.from_numpy(noisy), t).item()
    for restored in (gaussian_filter_denoise(noisy, 1.5), median_filter_denoise(noisy, 5)):
        assert mpsnr(torch.from_numpy(restored), t).item() > before + 3
    low = build_degradation("bicubic_x2")(clean, np.random.default_rng(0))
    up = bicubic_upsample(low, 2)
    assert up.shape == clean.shape
    assert mpsnr(torch.from_numpy(up), t).item() > 30  # smooth cube: bicubic is close


def test_predict_scene_scaling_runs_a_band_agnostic_model_on_other_bands(tmp_path) -> None:
    """HSDT with ``flex`` trained on 4-band windows runs on a 6-band scene only when the scene
    is scaled by its own range (``--scaling scene``); a fixed-band model is still refused."""
    cube = np.transpose(_smooth_cube(), (2, 0, 1)).copy()
    task = RestorationTask(model="hsdt_s", model_kwargs={"flex": True}, in_bands=4, scale=1)
    task.scaling = Scaling.fit("minmax", [cube[:4]]).state_dict()
    task.degradation = {"name": "gaussian", "sigma": 30.0}
    ckpt = task.export_checkpoint(tmp_path / "flex.ckpt")
    scene = _scene(tmp_path, cube)
    with pytest.raises(DataError, match="--scaling scene"):
        restore_scene(ckpt, scene, tmp_path / "a.tif", tile=16, progress=False)
    out = restore_scene(ckpt, scene, tmp_path / "b.tif", tile=16, progress=False, scaling="scene")
    assert out["bands"] == 6 and "scaling_fitted_on_input" in out
    with rasterio.open(tmp_path / "b.tif") as src:
        assert src.count == 6 and src.crs.to_epsg() == 32633
        assert np.isfinite(src.read()).all()
        assert src.tags()["hsi_scaling"].startswith("the scene's own min-max")
        assert src.tags()["hsi_checkpoint"] == str(ckpt)
    fixed = _export(tmp_path, "_infra_pointwise", 1, cube[:4])
    with pytest.raises(DataError, match="same sensor"):
        restore_scene(fixed, scene, tmp_path / "c.tif", tile=16, progress=False, scaling="scene")
    with pytest.raises(ConfigError, match="'checkpoint' or 'scene'"):
        restore_scene(fixed, scene, tmp_path / "d.tif", progress=False, scaling="own")


def test_predict_with_a_per_scene_scaled_checkpoint(tmp_path) -> None:
    """A checkpoint trained under ``minmax_scene`` scales each scene by its own range."""
    cube = np.transpose(_smooth_cube(), (2, 0, 1)).copy()
    task = RestorationTask(model="_infra_pointwise", in_bands=6, scale=1)
    task.scaling = Scaling.per_scene().state_dict()
    task.degradation = {"name": "gaussian", "sigma": 30.0}
    ckpt = task.export_checkpoint(tmp_path / "per_scene.ckpt")
    out = restore_scene(ckpt, _scene(tmp_path, cube), tmp_path / "o.tif", tile=16, progress=False)
    lo, hi = out["scaling_fitted_on_input"]
    assert cube.min() <= lo < hi <= cube.max()  # 3x3-mean range lies inside the raw range
    with rasterio.open(tmp_path / "o.tif") as src:
        restored = src.read()
    assert np.isfinite(restored).all() and abs(float(restored.mean()) - cube.mean()) < 100


def test_test_without_logger_or_report_dir_writes_no_file(cube_file, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    task = RestorationTask(model="_infra_tiny_denoiser")
    trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False,
                        enable_checkpointing=False, default_root_dir=tmp_path)  # fmt: skip
    trainer.test(task, datamodule=_dm(cube_file))
    assert task.test_metrics and list(tmp_path.iterdir()) == []
