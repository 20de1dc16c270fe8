"""SpecDETR (Li et al., ISPRS P&RS 2025): shapes, size, attention behaviour, learning."""

from __future__ import annotations

import pytest
import torch

import hsi
from hsi.detection.matching import SetCriterion
from hsi.errors import ConfigError, DataError
from hsi.models.specdetr import SubpixelDeformableAttention

SMALL = dict(
    embed_dim=32, num_heads=4, ffn_dim=64, encoder_layers=2, decoder_layers=2, num_queries=20
)


def _small(**kw) -> torch.nn.Module:
    torch.manual_seed(0)
    return hsi.create_model("specdetr", in_bands=12, num_classes=3, **{**SMALL, **kw})


def test_output_shapes() -> None:
    out = _small()(torch.randn(2, 12, 16, 16))
    assert out["logits"].shape == (2, 20, 3) and out["boxes"].shape == (2, 20, 4)
    assert ((out["boxes"] > 0) & (out["boxes"] < 1)).all()  # normalised cx, cy, w, h
    assert len(out["aux"]) == 1  # decoder_layers - 1 auxiliary outputs
    assert out["aux"][0]["logits"].shape == (2, 20, 3)
    assert out["enc"]["boxes"].shape == (2, 20, 4)
    # fewer pixels than queries: one query per pixel
    assert _small()(torch.randn(1, 12, 4, 4))["logits"].shape == (1, 16, 3)


def test_paper_size_parameter_count() -> None:
    """SPOD setting (30 bands, 8 classes): the reference config's count, "16.1M" in its table.

    Counted layer by layer from ``SpecDETR_SPOD_100e.py``: 16,009,556 used parameters; the
    reference backbone also builds an unused PatchEmbed (8,448) and MLP (73,728), giving
    16,091,732, the 16.1M of the authors' README table.
    """
    model = hsi.create_model("specdetr", in_bands=30, num_classes=8)
    n = sum(p.numel() for p in model.parameters())
    assert n == 16_009_556
    unused_in_reference = (30 * 256 + 256 + 2 * 256) + (30 * 256 + 256 + 256 * 256 + 256)
    assert round((n + unused_in_reference) / 1e6, 1) == 16.1
    assert len(model.encoder) == 6 and len(model.decoder) == 6
    assert model.encoder[0].ffn.net[0].out_features == 2048
    attn = model.encoder[0].attn
    assert (attn.num_heads, attn.num_levels, attn.num_points) == (8, 2, 4)
    assert model.num_queries == 900


def _identity_attention(num_points: int = 1) -> SubpixelDeformableAttention:
    attn = SubpixelDeformableAttention(
        embed_dim=4, num_heads=1, num_levels=1, num_points=num_points
    )
    with torch.no_grad():
        attn.value_proj.weight.copy_(torch.eye(4))
        attn.output_proj.weight.copy_(torch.eye(4))
    return attn


def _pixel_reference(h: int, w: int, row: int, col: int) -> torch.Tensor:
    return torch.tensor([[[[(col + 0.5) / w, (row + 0.5) / h]]]])


def test_initial_sampling_points_form_a_star_of_whole_pixels() -> None:
    attn = SubpixelDeformableAttention(embed_dim=16, num_heads=4, num_levels=1, num_points=3)
    ref = _pixel_reference(8, 8, 4, 4)
    loc = attn.sampling_locations(torch.zeros(1, 1, 16), ref, [(8, 8)])[0, 0, :, 0]
    offsets_px = (loc - ref[0, 0, 0]) * 8  # (heads, points, 2) in pixels
    # head 0 looks right (+x), head 1 down (+y), head 2 left, head 3 up; point k at k+1 px
    expected_dirs = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    steps = torch.arange(1, 4, dtype=torch.float32)[None, :, None]
    assert torch.allclose(offsets_px, expected_dirs[:, None, :] * steps, atol=1e-5)


def test_attention_reads_between_pixels_bilinearly() -> None:
    """A half-pixel offset reads the mean of two neighbours: sub-pixel sampling."""
    attn = _identity_attention()
    with torch.no_grad():
        attn.sampling_offsets.bias.copy_(torch.tensor([0.5, 0.0]))  # +0.5 px in x
    value = torch.randn(1, 5 * 5, 4)
    ref = _pixel_reference(5, 5, 2, 1)
    query = torch.zeros(1, 1, 4)
    out = attn(query, None, value, ref, [(5, 5)])
    grid = value[0].view(5, 5, 4)
    assert torch.allclose(out[0, 0], (grid[2, 1] + grid[2, 2]) / 2, atol=1e-5)


def test_attention_is_local_and_adds_the_query_itself() -> None:
    attn = _identity_attention(num_points=2)  # samples 1 and 2 px to the right
    value = torch.randn(1, 9 * 9, 4)
    ref = _pixel_reference(9, 9, 4, 4)
    query = torch.randn(1, 1, 4)
    base = attn(query, None, value, ref, [(9, 9)])
    far = value.clone().view(9, 9, 4)
    far[0, 0] += 10.0  # four pixels away from anything it samples
    assert torch.allclose(attn(query, None, far.view(1, -1, 4), ref, [(9, 9)]), base)
    near = value.clone().view(9, 9, 4)
    near[4, 5] += 10.0  # one pixel to the right: sampled with weight 1/2
    delta = attn(query, None, near.view(1, -1, 4), ref, [(9, 9)]) - base
    assert torch.allclose(delta, torch.full((1, 1, 4), 5.0), atol=1e-4)
    # self-excitation: the output is the query plus what it reads, so with zero values
    # the token passes through unchanged
    assert torch.allclose(attn(query, None, torch.zeros_like(value), ref, [(9, 9)]), query)


def test_global_token_is_the_detached_mean_of_pixel_tokens() -> None:
    model = _small()
    x = torch.randn(1, 12, 6, 6, requires_grad=True)
    tokens, shapes = model._tokens(x)
    assert shapes == [(6, 6), (1, 1)] and tokens.shape == (1, 37, 32)
    assert torch.allclose(tokens[0, -1], tokens[0, :-1].mean(0), atol=1e-6)
    tokens[0, -1].sum().backward()
    assert x.grad is None or x.grad.abs().sum() == 0


def test_one_training_step_reduces_the_loss_on_a_toy_batch() -> None:
    model = _small()
    x = torch.randn(2, 12, 16, 16)
    two = torch.tensor([[0.3, 0.3, 0.06, 0.06], [0.7, 0.6, 0.06, 0.06]])
    targets = [
        {"labels": torch.tensor([0, 2]), "boxes": two},
        {"labels": torch.tensor([1]), "boxes": torch.tensor([[0.5, 0.5, 0.1, 0.1]])},
    ]
    crit = SetCriterion(3, match_num=3)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(4):
        loss = crit(model(x), targets, (16, 16))["loss"]
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert losses[-1] < losses[0]


def test_bad_input_is_a_clear_error() -> None:
    model = _small()
    with pytest.raises(DataError, match="13 bands but the model was built for 12"):
        model(torch.randn(1, 13, 8, 8))
    with pytest.raises(DataError, match="batch, bands, height, width"):
        model(torch.randn(12, 8, 8))
    with pytest.raises(ConfigError, match="does not take"):
        hsi.create_model("specdetr", in_bands=12, num_classes=3, hidden=7)
    with pytest.raises(ConfigError, match="divisible"):
        hsi.create_model("specdetr", in_bands=12, num_classes=3, embed_dim=30, num_heads=4)
