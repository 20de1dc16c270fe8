"""LoLA-SpecViT: sizes against the authors' reference code, stage shapes, LoRA cut, bad input.

The reference figures come from instantiating ``EnhancedPEFTHyperspectralGCViT(in_channels=15,
num_classes=16)`` of github.com/FadiZidiDz/LoLA-SpecViT-Model (``improved_GCPE.py``, commit
664c45d) outside this repository: 254,642,348 parameters, of which 71,442,432 belong to its
full-size ``lora_gate``/``lora_residual`` matrices (not in the paper, not in hsi's standard
LoRA) and 2,144,512 to LoRA's low-rank ``A``/``B``; 254,642,348 − 71,442,432 = 183,199,916.
Per-module counts below are that model's, less the gate/residual matrices.
"""

from __future__ import annotations

import pytest
import torch

from hsi.errors import ConfigError
from hsi.models.lola_specvit import LoLASpecViT
from hsi.models.registry import create_model
from hsi.nn import LoRALinear, count_parameters, mark_only_lora_trainable

pytestmark = pytest.mark.usefixtures("one_thread")


def _numel(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(scope="module")
def paper_model() -> LoLASpecViT:
    # on the meta device: exact shapes and counts without allocating 0.7 GB of weights
    with torch.device("meta"):
        return create_model("lola_specvit", in_bands=15, num_classes=16, patch_size=15)


def test_parameter_count_matches_reference_code(paper_model: LoLASpecViT) -> None:
    assert _numel(paper_model) == 183_199_916
    lora = sum(p.numel() for n, p in paper_model.named_parameters() if ".lora_" in n)
    assert lora == 2_144_512
    assert _numel(paper_model.stem) == 260_640  # Conv3d 1→32→64→96 + BatchNorm3d
    assert _numel(paper_model.spectral_se) == 1_152  # 2 · 96² / 16
    assert _numel(paper_model.patch_embed) == 147_744
    assert paper_model.pos_embed.numel() == 4_704  # 7 · 7 · 96
    assert [_numel(d) for d in paper_model.downsamples] == [352_608, 1_407_936]
    per_stage = [[_numel(block) for block in stage] for stage in paper_model.stages]
    assert [len(s) for s in per_stage] == [3, 4, 19]
    assert set(per_stage[2]) == {8_957_968}  # every 384-wide block
    assert _numel(paper_model.head) == 12_560  # Linear 384→16 + rank-16 LoRA


def test_paper_layout(paper_model: LoLASpecViT) -> None:
    assert paper_model.dims == [96, 192, 384]
    assert paper_model.grids == [7, 4, 2]
    heads = [stage[0].attn.num_heads for stage in paper_model.stages]
    windows = [stage[0].attn.window for stage in paper_model.stages]
    assert heads == [4, 8, 16] and windows == [7, 7, 7]
    block = paper_model.stages[2][0]
    assert isinstance(block.attn.qkv, LoRALinear) and isinstance(block.attn.proj, LoRALinear)
    assert (block.attn.qkv.rank, block.attn.qkv.alpha) == (16, 32.0)
    assert block.mlp.fc1.out_features == 4 * 384  # SwiGLU hidden 4·dim
    assert block.mlp.swiglu.fc1_g.in_features == 4 * 384
    drop = [getattr(b.drop_path, "drop_prob", 0.0) for s in paper_model.stages for b in s]
    assert drop[0] == 0.0 and drop[-1] == pytest.approx(0.2) and len(drop) == 26


def test_lora_finetuning_cuts_trainable_parameters_by_over_80_percent(
    paper_model: LoLASpecViT,
) -> None:
    total, trainable = count_parameters(paper_model)
    assert trainable == total  # from scratch every weight trains
    mark_only_lora_trainable(paper_model, train_head="head")
    total, trainable = count_parameters(paper_model)
    assert trainable == 2_144_512 + 384 * 16 + 16  # adapters + the head's base Linear
    assert 1 - trainable / total > 0.80  # the paper's claim; here 98.8%


def test_stage_shapes_follow_the_paper() -> None:
    # the paper's widths, heads and windows; one block per stage and a narrow MLP keep it fast
    # (neither changes the token grids)
    model = LoLASpecViT(
        in_bands=15, num_classes=16, patch_size=15, depths=(1, 1, 1), mlp_ratio=1.0
    ).eval()
    x = torch.randn(2, 15, 15, 15)
    with torch.no_grad():
        stages = model.forward_features(x)
        logits = model(x)
    assert [tuple(s.shape) for s in stages] == [(2, 7, 7, 96), (2, 4, 4, 192), (2, 2, 2, 384)]
    assert logits.shape == (2, 16) and torch.isfinite(logits).all()


def _tiny(**kw) -> LoLASpecViT:
    args = dict(
        in_bands=6,
        num_classes=3,
        patch_size=7,
        embed_dim=16,
        depths=(1, 1, 1),
        num_heads=(2, 2, 2),
        window_size=3,
        stem_channels=(4, 8),
        se_reduction=4,
        lora_rank=2,
        lora_alpha=4,
    )
    args.update(kw)
    return LoLASpecViT(**args)


def test_tiny_forward_backward_trains_every_weight() -> None:
    torch.manual_seed(0)
    model = _tiny()
    logits = model(torch.randn(4, 6, 7, 7))
    assert logits.shape == (4, 3)
    logits.square().mean().backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None]
    # B starts at zero, so A gets no gradient on the first step; everything else does
    assert all(n.endswith("lora_A") for n in no_grad)
    assert model.grids == [3, 2, 1]


def test_adapters_start_as_a_no_op() -> None:
    torch.manual_seed(0)
    model = _tiny().eval()
    x = torch.randn(2, 6, 7, 7)
    with torch.no_grad():
        before = model(x)
        for layer in model.modules():
            if isinstance(layer, LoRALinear):
                layer.lora_A.normal_()  # B = 0 keeps the update zero whatever A is
        after = model(x)
    assert torch.equal(before, after)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"patch_size": 1}, "at least 2"),
        ({"in_bands": 0}, "in_bands"),
        ({"window_size": 3, "pad_windows": False}, "stage 2"),
        ({"num_heads": (3, 2, 2)}, "divisible"),
        ({"num_heads": (2, 2)}, "num_heads"),
        ({"window_size": (3, 3)}, "window_size"),
        ({"se_reduction": 32}, "se_reduction"),
        ({"depths": ()}, "depths"),
        ({"lora_rank": 0}, "rank"),
        ({"band_dropout": 1.0}, "band dropout"),
    ],
)
def test_bad_configuration_is_a_clear_error(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _tiny(**kwargs)


def test_window_tiling_every_grid_needs_no_padding() -> None:
    # grids 3, 2, 1: windows (3, 2, 1) tile them exactly
    model = _tiny(window_size=(3, 2, 1), pad_windows=False)
    assert model(torch.randn(1, 6, 7, 7)).shape == (1, 3)


def test_wrong_input_shape_is_a_clear_error() -> None:
    model = _tiny()
    with pytest.raises(ConfigError, match=r"\(N, 6, 7, 7\)"):
        model(torch.randn(2, 5, 7, 7))
    with pytest.raises(ConfigError, match="expects patches"):
        model(torch.randn(6, 7, 7))
