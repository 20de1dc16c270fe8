"""VP-Hype: shapes, documented sizes, the Mamba/attention split, prompts and checkpoints."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import pytest
import scipy.io as sio
import torch
from conftest import make_scene

import hsi
import hsi.nn.text_prompts as tp
from hsi.data.datamodule import HyperspectralPatchDataModule
from hsi.errors import ConfigError
from hsi.models.vp_hype import SelfAttention, VPHype, expected_parameter_count
from hsi.nn import Mamba
from hsi.tasks import ClassificationTask

NAMES = [f"class {i}" for i in range(16)]
TINY = dict(embed_dim=16, depths=(1, 2), num_heads=(1, 2), num_visual_prompts=2)


@pytest.fixture
def fake_encoder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Stand in for MiniLM (tested in test_text_prompts.py): fast, deterministic, offline.

    Returns the list of sentence batches it was asked to encode.
    """
    calls: list[list[str]] = []

    def encode(sentences: list[str]) -> np.ndarray:
        calls.append(sentences)
        rng = np.random.default_rng(len(sentences))
        v = rng.standard_normal((len(sentences), tp.TEXT_EMBED_DIM)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    monkeypatch.setenv("HSI_CACHE", str(tmp_path))
    monkeypatch.setattr(tp, "text_encoder_available", lambda: True)
    monkeypatch.setattr(tp, "_encode_with_minilm", encode)
    tp.clear_memory_cache()
    yield calls
    tp.clear_memory_cache()


def test_shapes_through_the_stages() -> None:
    model = VPHype(in_bands=15, num_classes=16, patch_size=15, text_encoder="none").eval()
    x = torch.randn(2, 15, 15, 15)
    feats = model.front(x)
    assert feats.shape == (2, 64, 15, 15)
    text = model.text_tokens()
    assert text.shape == (16, 384)
    feats = model.stages[0](feats + model.pos_embed, text)
    assert feats.shape == (2, 64, 15, 15)
    feats = model.stages[1](feats, text)
    assert feats.shape == (2, 128, 8, 8)  # 3×3 stride-2 conv halves the grid (rounded up)
    assert model(x).shape == (2, 16)
    assert hsi.create_model("vp_hype", text_encoder="none")(x).shape == (2, 16)


def test_parameter_count_matches_the_documented_layers() -> None:
    model = VPHype(text_encoder="none")
    total = sum(p.numel() for p in model.parameters())
    assert total == expected_parameter_count()
    assert total == 1_145_744  # the figure the docs quote for the default sizes
    other = dict(
        in_bands=30,
        num_classes=9,
        patch_size=11,
        embed_dim=32,
        depths=(3, 1, 2),
        num_visual_prompts=3,
        mlp_ratio=2.0,
    )
    model = VPHype(num_heads=(2, 4, 8), text_encoder="none", **other)
    assert sum(p.numel() for p in model.parameters()) == expected_parameter_count(**other)


def test_first_half_of_each_stage_is_mamba_with_the_authors_sizes() -> None:
    model = VPHype(depths=(3, 4), num_heads=(2, 4), text_encoder="none")
    kinds = [[type(b.mixer) for b in stage.blocks] for stage in model.stages]
    assert kinds == [
        [Mamba, Mamba, SelfAttention],
        [Mamba, Mamba, SelfAttention, SelfAttention],
    ]
    for stage, width in zip(model.stages, (64, 128), strict=True):
        mamba = stage.blocks[0].mixer
        assert (mamba.d_model, mamba.d_state, mamba.d_conv, mamba.d_inner) == (width, 8, 3, width)


def test_state_dict_keys_do_not_depend_on_the_encoder(fake_encoder: list[list[str]]) -> None:
    with_text = VPHype(class_names=NAMES, text_encoder="minilm", **TINY)
    assert len(fake_encoder) == 1 and fake_encoder[0][0] == "a hyperspectral image patch of class 0"
    assert with_text.has_text_embeddings
    without = VPHype(class_names=NAMES, text_encoder="none", **TINY)
    no_names = VPHype(**TINY, text_encoder="auto")
    assert not without.has_text_embeddings and not no_names.has_text_embeddings
    keys = list(with_text.state_dict())
    assert keys == list(without.state_dict()) == list(no_names.state_dict())
    assert "text_embeddings" in keys and "text_context" in keys
    torch.testing.assert_close(
        with_text.text_embeddings,
        torch.from_numpy(tp._encode_with_minilm(tp.prompt_sentences(NAMES))),
    )


def test_checkpoint_rebuilds_without_the_encoder(
    fake_encoder: list[list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    trained = VPHype(class_names=NAMES, **TINY).eval()
    state = trained.state_dict()
    # a machine without MiniLM: "auto" falls back, and the saved buffer wins on load
    monkeypatch.setattr(tp, "text_encoder_available", lambda: False)
    tp.clear_memory_cache()
    rebuilt = VPHype(class_names=NAMES, **TINY).eval()
    assert not rebuilt.has_text_embeddings
    rebuilt.load_state_dict(state)
    assert rebuilt.has_text_embeddings
    x = torch.randn(3, 15, 15, 15)
    torch.testing.assert_close(rebuilt(x), trained(x))
    with pytest.raises(ConfigError, match=r"pip install hsi\[text\]"):
        VPHype(class_names=NAMES, text_encoder="minilm", **TINY)


def test_text_prompts_change_the_output(fake_encoder: list[list[str]]) -> None:
    torch.manual_seed(0)
    model = VPHype(class_names=NAMES, **TINY).eval()
    x = torch.randn(2, 15, 15, 15)
    before = model(x)
    model.text_embeddings.zero_()
    assert not torch.allclose(before, model(x))


def test_bad_input_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="at least 5×5"):
        VPHype(patch_size=3, text_encoder="none")
    with pytest.raises(ConfigError, match="3 class names for 16 classes"):
        VPHype(class_names=["a", "b", "c"], text_encoder="none")
    with pytest.raises(ConfigError, match="not divisible into 3"):
        VPHype(num_heads=(3, 4), text_encoder="none")
    with pytest.raises(ConfigError, match="one head count per stage"):
        VPHype(depths=(2, 2, 2), num_heads=(2, 4), text_encoder="none")
    with pytest.raises(ConfigError, match="needs class_names"):
        VPHype(text_encoder="minilm")
    with pytest.raises(ConfigError, match="'auto', 'minilm' or 'none'"):
        VPHype(class_names=NAMES, text_encoder="clip")  # type: ignore[arg-type]
    model = VPHype(text_encoder="none")
    with pytest.raises(ConfigError, match=r"\(N, 15, 15, 15\)"):
        model(torch.zeros(1, 30, 15, 15))


def test_training_steps_reduce_the_loss_and_reach_the_prompts() -> None:
    torch.manual_seed(0)
    model = VPHype(in_bands=6, num_classes=3, patch_size=7, text_encoder="none", **TINY)
    x, y = torch.randn(12, 6, 7, 7), torch.arange(12) % 3
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        if not losses:
            assert model.text_context.grad.abs().sum() > 0
            assert model.stages[1].prompt.visual_prompts.grad.abs().sum() > 0
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_task_hands_class_names_to_vp_hype(tmp_path: Path) -> None:
    cube, labels = make_scene(height=32, width=30, bands=12, classes=3)
    sio.savemat(tmp_path / "toy.mat", {"toy": cube})
    sio.savemat(tmp_path / "toy_gt.mat", {"toy_gt": labels})
    names = ["Corn-notill", "Woods", "Water"]
    dm = HyperspectralPatchDataModule(
        dataset=None,
        image=str(tmp_path / "toy.mat"),
        labels=str(tmp_path / "toy_gt.mat"),
        class_names=names,
        protocol="random",
        train=0.3,
        val=0.1,
        patch_size=7,
        pca_components=6,
        batch_size=16,
    )
    task = ClassificationTask(model="vp_hype", model_kwargs={"text_encoder": "none", **TINY})
    trainer = L.Trainer(
        fast_dev_run=1,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(task, datamodule=dm)
    assert task.hparams.model_kwargs["class_names"] == names
    assert task.net(torch.randn(2, 6, 7, 7)).shape == (2, 3)
