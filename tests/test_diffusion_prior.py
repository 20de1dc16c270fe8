"""HIR-Diff's prior trained by hsi: DDPM loss, checkpoint -> eps_model, reduced-image data."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

from hsi.diffusion.hirdiff import estimate_coefficients, hirdiff_restore
from hsi.diffusion.prior import (
    DiffusionPriorTask,
    ReducedImageDataModule,
    load_prior,
    to_unit_range,
)
from hsi.errors import ConfigError, DataError

torch.set_num_threads(1)

TINY_UNET = {"base_channels": 8, "channel_mults": [1, 2], "num_res_blocks": 1}


def _cube(bands: int = 12, h: int = 24, w: int = 40, seed: int = 0) -> np.ndarray:
    """Smooth rank-3 cube in raw units (not [0, 1]) so the scaling is exercised."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    maps = np.stack([np.sin(3 * yy) ** 2, (xx > 0.4) * 0.8 + 0.1, 0.5 + 0.4 * np.cos(5 * xx)])
    spectra = rng.uniform(0.1, 1.0, (bands, 3))
    return 1000.0 + 4000.0 * (spectra @ maps.reshape(3, -1)).reshape(bands, h, w)


def _datamodule(**kw) -> ReducedImageDataModule:
    args = dict(images=["unused"], k=3, crop_size=8, crops_per_epoch=16, val_fraction=0.25)
    args.update(kw)
    dm = ReducedImageDataModule(**args, batch_size=8)
    dm.scenes = [dm.scene_from_cube("synthetic", _cube())]
    return dm


def _task(k: int = 3) -> DiffusionPriorTask:
    torch.manual_seed(0)
    return DiffusionPriorTask(k=k, unet_kwargs=TINY_UNET, lr=2e-3)


def test_one_training_step_lowers_the_ddpm_loss() -> None:
    task = _task()
    x0 = next(iter(_datamodule().train_dataloader()))
    opt = task.configure_optimizers()

    def loss() -> torch.Tensor:  # the same t and noise every call
        return task.diffusion_loss(x0, generator=torch.Generator().manual_seed(1))

    with torch.no_grad():
        before = loss()
    for _ in range(5):
        opt.zero_grad()
        loss().backward()
        opt.step()
    with torch.no_grad():
        after = loss()
    assert float(after) < float(before)


def test_checkpoint_round_trip_gives_the_same_eps(tmp_path: Path) -> None:
    task = _task()
    dm = _datamodule()
    trainer = L.Trainer(
        max_steps=1,
        limit_val_batches=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(task, datamodule=dm)
    ckpt = tmp_path / "prior.ckpt"
    trainer.save_checkpoint(ckpt)
    prior = load_prior(ckpt, k=3)
    # everything the sampler needs comes from the checkpoint
    assert prior.meta["schedule"] == "exp" and prior.meta["schedule_kwargs"] == {"k": 8.0}
    assert prior.meta["num_train_steps"] == 1000
    assert prior.meta["data"]["scenes"][0]["train_cols"] == [0, 30]
    assert torch.allclose(prior.alphas_cumprod.float(), task.alphas_cumprod)
    x, t = torch.randn(2, 3, 8, 8), torch.tensor([5, 900])
    task.eval()
    with torch.no_grad():
        assert torch.equal(prior(x, t), task(x, t))
    # and it drives the sampler
    cube = (_cube()[:, :16, :16] - 1000.0) / 4000.0
    cube = (cube - cube.min()) / (cube.max() - cube.min())
    out = hirdiff_restore(
        cube, prior, k=3, steps=2, progress=False, alphas_cumprod=prior.alphas_cumprod
    )
    assert out.shape == cube.shape and np.isfinite(out).all()


def test_wrong_k_and_bad_files_are_refused(tmp_path: Path) -> None:
    task = _task(k=4)
    trainer = L.Trainer(max_steps=0, logger=False, enable_checkpointing=False)
    trainer.strategy.connect(task)
    ckpt = tmp_path / "k4.ckpt"
    trainer.save_checkpoint(ckpt)
    with pytest.raises(ConfigError, match="k=4-band reduced images, but k=3"):
        load_prior(ckpt, k=3)
    assert load_prior(ckpt, k=4).k == 4
    with pytest.raises(DataError, match="not found"):
        load_prior(tmp_path / "missing.ckpt")
    torch.save({"state_dict": {}}, tmp_path / "other.ckpt")
    with pytest.raises(DataError, match="not a diffusion-prior checkpoint"):
        load_prior(tmp_path / "other.ckpt")
    with pytest.raises(ConfigError, match="with k, not"):
        DiffusionPriorTask(unet_kwargs={"in_channels": 3})


def test_training_crops_never_overlap_the_validation_region() -> None:
    dm = _datamodule()
    scene = dm.scenes[0]
    v0, v1 = scene.val_cols
    assert scene.train_cols == (0, 30) and (v0, v1) == (30, 40)
    boxes = dm.val_boxes()
    assert boxes and all(v0 <= c0 and c1 <= v1 for _, _, _, c0, c1 in boxes)
    # Mark the held-out columns with a value no training crop may contain.
    marked = scene.image.copy()
    marked[:, :, v0:] = 7.0
    dm.scenes = [type(scene)(**{**scene.__dict__, "image": marked})]
    torch.manual_seed(0)
    for batch in dm.train_dataloader():
        assert batch.shape[1:] == (3, 8, 8) and not bool((batch == 7.0).any())
    for batch in dm.val_dataloader():
        assert bool((batch == 7.0).all())


def test_reduced_images_are_rrqr_bands_scaled_to_minus_one_one() -> None:
    raw = _cube()
    dm = _datamodule()
    scene = dm.scenes[0]
    train = raw[:, :, :30]
    lo, hi = train.min(), train.max()
    _, bands = estimate_coefficients((train - lo) / (hi - lo), 3)
    assert scene.bands == bands.tolist() and (scene.lo, scene.hi) == (lo, hi)
    expected = np.clip(2 * (raw[scene.bands] - lo) / (hi - lo) - 1, -1, 1)
    np.testing.assert_allclose(scene.image, expected, atol=1e-6)
    assert scene.image.min() >= -1.0 and scene.image.max() <= 1.0
    assert to_unit_range(np.array([0.0, 0.5, 1.0, 1.2])).tolist() == [-1.0, 0.0, 1.0, 1.0]


def test_bad_data_settings_are_refused() -> None:
    with pytest.raises(ConfigError, match="dataset=<registry name> or images"):
        ReducedImageDataModule()
    dm = ReducedImageDataModule(images=["x"], crop_size=32, val_fraction=0.25)
    with pytest.raises(ConfigError, match="cannot hold 32-pixel crops"):
        dm.scene_from_cube("small", _cube())
    with pytest.raises(DataError, match="constant"):
        _datamodule().scene_from_cube("flat", np.ones((5, 24, 40)))
    with pytest.raises(DataError, match=r"\(B, 3, H, W\)"):
        _task().diffusion_loss(torch.zeros(2, 4, 8, 8))
