"""LoRA fine-tuning in ClassificationTask (init_from / finetune) and the CyclicLoRAScaling callback.

A tiny LoLA-SpecViT is trained on one generated scene, then fine-tuned with ``finetune='lora'``
on another with fewer classes; frozen weights must come out bit-identical, adapters changed.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import scipy.io as sio
import torch
from conftest import make_scene

from hsi.callbacks import CyclicLoRAScaling
from hsi.data import HyperspectralPatchDataModule
from hsi.errors import ConfigError
from hsi.nn import LoRALinear, count_parameters
from hsi.tasks import ClassificationTask

TINY = {
    "embed_dim": 16,
    "depths": [1, 1, 1],
    "num_heads": [2, 2, 2],
    "window_size": 3,
    "stem_channels": [4, 8],
    "se_reduction": 4,
    "lora_rank": 2,
    "lora_alpha": 4,
}
BANDS = 8  # PCA components, the model's in_bands


pytestmark = pytest.mark.usefixtures("one_thread")


def _datamodule(tmp_path: Path, name: str, classes: int, seed: int) -> HyperspectralPatchDataModule:
    cube, labels = make_scene(height=24, width=24, bands=20, classes=classes, seed=seed)
    image, gt = tmp_path / f"{name}.mat", tmp_path / f"{name}_gt.mat"
    sio.savemat(image, {name: cube})
    sio.savemat(gt, {f"{name}_gt": labels})
    return HyperspectralPatchDataModule(
        dataset=None,
        image=str(image),
        labels=str(gt),
        class_names=[f"c{i}" for i in range(classes)],
        protocol="random",
        train=0.3,
        val=0.1,
        patch_size=7,
        pca_components=BANDS,
        batch_size=16,
    )


def _trainer(**kw: Any) -> L.Trainer:
    args = dict(
        max_epochs=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_train_batches=2,
        limit_val_batches=1,
        num_sanity_val_steps=0,
    )
    args.update(kw)
    return L.Trainer(**args)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoLA-SpecViT checkpoint trained (briefly) on a 4-class scene."""
    tmp = tmp_path_factory.mktemp("pretrain")
    torch.set_num_threads(1)
    L.seed_everything(0)
    task = ClassificationTask(model="lola_specvit", model_kwargs=TINY, lr=1e-2)
    trainer = _trainer()
    trainer.fit(task, datamodule=_datamodule(tmp, "a", classes=4, seed=0))
    path = tmp / "base.ckpt"
    trainer.save_checkpoint(path)
    return path


def _is_adapter(name: str) -> bool:
    return name.endswith(("lora_A", "lora_B"))


def test_lora_finetune_trains_only_adapters_and_head(tmp_path: Path, pretrained: Path) -> None:
    base = torch.load(pretrained, map_location="cpu", weights_only=True)["state_dict"]
    L.seed_everything(1)
    task = ClassificationTask(
        model="lola_specvit", model_kwargs=TINY, lr=1e-2, init_from=str(pretrained), finetune="lora"
    )
    trainer = _trainer()
    trainer.fit(task, datamodule=_datamodule(tmp_path, "b", classes=3, seed=1))
    assert task.hparams.num_classes == 3 and task.net.head.out_features == 3

    params = dict(task.net.named_parameters())
    trainable = {n for n, p in params.items() if p.requires_grad}
    assert trainable == {n for n in params if _is_adapter(n) or n.startswith("head.")}
    # only trainable weights reach the optimizer
    in_optimizer = {id(p) for g in trainer.optimizers[0].param_groups for p in g["params"]}
    assert in_optimizer == {id(params[n]) for n in trainable}

    for name, p in params.items():
        if name.startswith("head."):
            continue
        before = base[f"net.{name}"]
        if _is_adapter(name):
            assert not torch.equal(p.detach(), before), f"adapter {name} did not train"
        else:
            assert torch.equal(p.detach(), before), f"frozen {name} changed"
    total, n_trainable = count_parameters(task.net)
    assert task.describe()["trainable_parameters"] == n_trainable < total

    # the run's own checkpoint, tested later, keeps the same frozen set (for its report)
    trainer.save_checkpoint(tmp_path / "tuned.ckpt")
    tuned = ClassificationTask.load_from_checkpoint(
        tmp_path / "tuned.ckpt", report_dir=str(tmp_path / "report"), predict_map=False
    )
    _trainer(limit_test_batches=1).test(tuned, datamodule=trainer.datamodule)
    assert tuned.describe()["trainable_parameters"] == n_trainable
    assert (tmp_path / "report" / "test_report.json").is_file()


def test_full_finetune_starts_from_the_checkpoint(tmp_path: Path, pretrained: Path) -> None:
    base = torch.load(pretrained, map_location="cpu", weights_only=True)["state_dict"]
    task = ClassificationTask(model="lola_specvit", model_kwargs=TINY, init_from=str(pretrained))
    trainer = _trainer(max_epochs=0)  # setup and load only
    trainer.fit(task, datamodule=_datamodule(tmp_path, "b", classes=3, seed=1))
    state = task.net.state_dict()
    assert all(torch.equal(state[k[4:]], v) for k, v in base.items() if ".head." not in f".{k}")
    assert all(p.requires_grad for p in task.net.parameters())


def _exported(tmp_path: Path, model: str, in_bands: int, patch: int = 7, **kwargs: Any) -> Path:
    task = ClassificationTask(
        model=model, in_bands=in_bands, num_classes=4, patch_size=patch, model_kwargs=kwargs
    )
    return task.export_checkpoint(tmp_path / f"{model}_{in_bands}.ckpt")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp: _exported(tmp, "hybridsn", 16, patch=9), "'hybridsn' checkpoint"),
        (lambda tmp: _exported(tmp, "lola_specvit", 6, **TINY), "6 input bands"),
        (lambda tmp: _exported(tmp, "lola_specvit", BANDS, **{**TINY, "embed_dim": 8}), "differ"),
        (lambda tmp: tmp / "nope.ckpt", "not found"),
    ],
    ids=["other-model", "other-bands", "other-width", "missing"],
)
def test_unusable_init_checkpoint_is_a_clear_error(tmp_path: Path, make, message: str) -> None:
    path = make(tmp_path)
    task = ClassificationTask(
        model="lola_specvit", model_kwargs=TINY, init_from=str(path), finetune="lora"
    )
    with pytest.raises(ConfigError, match=message):
        _trainer(max_epochs=0).fit(task, datamodule=_datamodule(tmp_path, "b", classes=3, seed=1))


def test_lora_without_a_base_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="init_from"):
        ClassificationTask(model="lola_specvit", finetune="lora")


# ---- the cyclical LoRA scaling -------------------------------------------------------------
def test_schedule_rises_within_each_warm_restart_cycle() -> None:
    cb = CyclicLoRAScaling(cycle_epochs=10, cycle_mult=2, min_scale=0.5, max_scale=1.0)
    assert cb.multiplier(0) == pytest.approx(0.5)
    assert cb.multiplier(5) == pytest.approx(0.75)  # half way through the first 10 epochs
    assert cb.multiplier(9.999) == pytest.approx(1.0, abs=1e-6)
    assert cb.multiplier(10) == pytest.approx(0.5)  # restart
    assert cb.cycle_position(20) == pytest.approx((10.0, 20.0))  # second cycle is twice as long
    assert cb.multiplier(20) == pytest.approx(0.75)
    assert cb.multiplier(30) == pytest.approx(0.5)  # third cycle starts at 10 + 20
    fixed = CyclicLoRAScaling(cycle_epochs=4, cycle_mult=1, min_scale=0.0)
    assert fixed.multiplier(1) == pytest.approx(0.5 * (1 - math.cos(math.pi / 4)))
    assert fixed.multiplier(9) == pytest.approx(fixed.multiplier(1))
    for bad in ({"cycle_epochs": 0}, {"cycle_mult": 0.5}, {"min_scale": 2.0}):
        with pytest.raises(ConfigError):
            CyclicLoRAScaling(**bad)


class _Probe(L.Callback):
    """Records the LoRA scaling seen by each training and validation batch."""

    def __init__(self) -> None:
        self.train: list[float] = []
        self.val: list[float] = []

    @staticmethod
    def _scaling(module: L.LightningModule) -> float:
        return next(m for m in module.modules() if isinstance(m, LoRALinear)).scaling

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.train.append(self._scaling(pl_module))

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, *args) -> None:
        self.val.append(self._scaling(pl_module))


def test_callback_scales_lora_during_training_only(tmp_path: Path) -> None:
    cb = CyclicLoRAScaling(cycle_epochs=1, cycle_mult=1, min_scale=0.2, max_scale=1.0)
    probe = _Probe()
    task = ClassificationTask(model="lola_specvit", model_kwargs=TINY)
    trainer = _trainer(limit_train_batches=4, callbacks=[cb, probe])
    trainer.fit(task, datamodule=_datamodule(tmp_path, "a", classes=4, seed=0))
    nominal = TINY["lora_alpha"] / TINY["lora_rank"]
    expected = [nominal * cb.multiplier(i / 4) for i in range(4)]  # t = batch / batches
    assert probe.train == pytest.approx(expected)
    assert len(set(probe.train)) == 4  # it really varies across steps
    assert probe.val and all(s == pytest.approx(nominal) for s in probe.val)
    assert all(m.scaling == nominal for m in task.modules() if isinstance(m, LoRALinear))


def test_callback_on_a_model_without_lora_is_a_clear_error() -> None:
    task = ClassificationTask(model="hybridsn", in_bands=16, num_classes=4, patch_size=9)
    with pytest.raises(ConfigError, match="needs a model with LoRA layers"):
        CyclicLoRAScaling().on_train_start(None, task)  # type: ignore[arg-type]


def test_scale_multiplier_knob() -> None:
    torch.manual_seed(0)
    layer = LoRALinear(4, 3, rank=2, alpha=4)
    torch.nn.init.normal_(layer.lora_B)
    x = torch.randn(5, 4)
    base, full = layer.base(x), layer(x)
    layer.set_scale_multiplier(0.5)
    assert layer.scaling == 1.0
    assert torch.allclose(layer(x) - base, (full - base) * 0.5, atol=1e-6)
    layer.merge()
    with pytest.raises(ConfigError, match="unmerge"):
        layer.set_scale_multiplier(1.0)
    layer.unmerge()
    with pytest.raises(ConfigError, match=">= 0"):
        layer.set_scale_multiplier(-1.0)


def test_cosine_restarts_scheduler() -> None:
    task = ClassificationTask(
        model="lola_specvit",
        model_kwargs=TINY,
        in_bands=BANDS,
        num_classes=3,
        patch_size=7,
        optimizer="adamw",
        scheduler="cosine_restarts",
        restart_epochs=3,
        restart_mult=2,
        min_lr=1e-6,
    )
    sched = task.configure_optimizers()["lr_scheduler"]
    assert isinstance(sched, torch.optim.lr_scheduler.CosineAnnealingWarmRestarts)
    assert (sched.T_0, sched.T_mult, sched.eta_min) == (3, 2, 1e-6)
