"""LoRA: starts equal to the base layer, merges exactly, trains only A and B (and a head)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hsi.errors import ConfigError
from hsi.nn.lora import LoRALinear, apply_lora, count_parameters, mark_only_lora_trainable


class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(8, 16)
        self.block = nn.Sequential(nn.Linear(16, 16), nn.GELU(), nn.LayerNorm(16))
        self.head = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block(self.embed(x)))


def _trained_lora(rank: int = 2, alpha: float = 4.0) -> LoRALinear:
    torch.manual_seed(0)
    layer = LoRALinear(8, 5, rank=rank, alpha=alpha)
    with torch.no_grad():
        layer.lora_B.normal_()  # as if trained: B is no longer zero
    return layer


def test_starts_equal_to_the_wrapped_linear() -> None:
    torch.manual_seed(0)
    linear = nn.Linear(8, 5)
    layer = LoRALinear.from_linear(linear, rank=2, alpha=4.0, dropout=0.1)
    x = torch.randn(3, 8)
    torch.testing.assert_close(layer(x), linear(x))
    assert layer.base is linear and not linear.weight.requires_grad
    assert layer.scaling == 2.0 and (layer.lora_B == 0).all()


def test_merge_keeps_outputs_and_merging_twice_is_a_no_op() -> None:
    layer = _trained_lora().eval()
    x = torch.randn(4, 8)
    before = layer(x)
    weight = layer.base.weight.clone()
    layer.merge()
    assert layer.merged
    assert (layer(x) - before).abs().max() <= 1e-5
    layer.merge()  # no-op: the update is not added a second time
    assert (layer(x) - before).abs().max() <= 1e-5
    layer.unmerge()
    layer.unmerge()  # no-op as well
    assert not layer.merged
    assert (layer.base.weight - weight).abs().max() <= 1e-6
    assert (layer(x) - before).abs().max() <= 1e-5


def test_update_is_scaled_low_rank_product() -> None:
    layer = _trained_lora(rank=2, alpha=4.0)
    x = torch.randn(2, 8)
    expected = layer.base(x) + 2.0 * x @ layer.lora_A.T @ layer.lora_B.T
    torch.testing.assert_close(layer(x), expected)


def test_only_lora_and_head_train_and_counts_agree() -> None:
    model = _Tiny()
    total_before, _ = count_parameters(model)
    names = apply_lora(model, ["embed", "block.0"], rank=2)
    assert names == ["embed", "block.0"]
    mark_only_lora_trainable(model, train_head="head")
    total, trainable = count_parameters(model)
    lora = 2 * (8 + 16) + 2 * (16 + 16)  # A: rank×in, B: out×rank, per wrapped layer
    head = 16 * 3 + 3
    assert total == total_before + lora
    assert trainable == lora + head
    mark_only_lora_trainable(model)
    assert count_parameters(model) == (total, lora)


def test_gradients_flow_only_to_a_and_b() -> None:
    model = _Tiny()
    apply_lora(model, lambda name, _: name == "block.0", rank=2)
    mark_only_lora_trainable(model)
    layer = model.block[0]
    with torch.no_grad():
        layer.lora_B.normal_()  # with B = 0 the gradient of A would be zero too
    model(torch.randn(5, 8)).sum().backward()
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None}
    assert with_grad == {"block.0.lora_A", "block.0.lora_B"}
    assert layer.lora_A.grad.abs().sum() > 0 and layer.lora_B.grad.abs().sum() > 0


def test_errors_name_the_fix() -> None:
    with pytest.raises(ConfigError, match="has no LoRA layers"):
        mark_only_lora_trainable(_Tiny())
    model = _Tiny()
    apply_lora(model, ["head"])
    with pytest.raises(ConfigError, match="no submodule with parameters named 'classifier'"):
        mark_only_lora_trainable(model, train_head="classifier")
    with pytest.raises(ConfigError, match="matched the LoRA targets"):
        apply_lora(_Tiny(), ["qkv"])
    with pytest.raises(ConfigError, match="rank must be >= 1"):
        LoRALinear(4, 4, rank=0)
