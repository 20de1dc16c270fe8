"""Class probabilities of a whole preprocessed cube: fully convolutional for models with
``forward_dense`` (HybridSN), batched ``unfold`` patches for any other patch model."""

from __future__ import annotations

import math

import torch
from torch import nn

from hsi.errors import ConfigError


def _dense_net(model: nn.Module, patch_size: int) -> nn.Module | None:
    """The module whose ``forward_dense`` computes this model's patch logits, if any.

    A task (LightningModule) that wraps its network as ``.net`` is unwrapped, so the
    classification task can pass itself. The dense path is only used when the network
    was built for this patch size: its first Linear layer is sized for it.
    """
    for candidate in (model, getattr(model, "net", None)):
        if isinstance(candidate, nn.Module) and callable(getattr(candidate, "forward_dense", None)):
            if getattr(candidate, "patch_size", patch_size) == patch_size:
                return candidate
    return None


def _model_device(model: nn.Module) -> torch.device:
    for param in model.parameters():
        return param.device
    return torch.device("cpu")


def _dense_block(height: int, width: int, radius: int, batch_size: int) -> tuple[int, int]:
    """Output rows/cols of one dense block, sized like one patch batch of ``batch_size``.

    A batch of ``batch_size`` patches holds ``batch_size·p²`` input positions; a dense
    block of as many padded positions needs about as much activation memory, so
    ``batch_size`` bounds memory the same way on both paths. Blocks are full-width row
    strips when a strip of at least ``p`` rows fits, otherwise squares.
    """
    p = 2 * radius + 1
    budget = max(1, batch_size) * p * p
    padded_w = width + 2 * radius
    side = max(p, math.isqrt(budget))
    block_w = padded_w if padded_w <= side else side
    block_h = max(p, budget // block_w)
    return max(1, block_h - 2 * radius), max(1, block_w - 2 * radius)


@torch.no_grad()
def classify_cube(
    model: nn.Module,
    padded: torch.Tensor,
    patch_size: int,
    batch_size: int = 256,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Class probabilities ``(K, H, W)`` of every pixel of a padded ``(C, H + 2r, W + 2r)`` cube.

    ``padded`` is preprocessed and padded by ``r = patch_size // 2`` on each side (as
    :func:`hsi.data.patches.pad_cube` does), so pixel ``(i, j)``'s patch is
    ``padded[:, i : i + p, j : j + p]``. With ``forward_dense`` (see :func:`_dense_net`)
    the model runs over blocks of the cube (:func:`_dense_block`); otherwise patches are
    cut with ``Tensor.unfold`` in blocks of about ``batch_size`` pixels and fed to
    ``model(patches) -> logits``. Either way memory is bounded by ``batch_size``, not by
    the cube. The model is evaluated in eval mode (and its mode restored afterwards);
    ``device`` defaults to the model's. The result is float32 on the CPU.
    """
    if padded.ndim != 3:
        raise ConfigError(
            f"classify_cube expects a (bands, H + 2r, W + 2r) tensor, got {tuple(padded.shape)}"
        )
    if patch_size < 1 or patch_size % 2 == 0:
        raise ConfigError(f"patch_size must be a positive odd number, got {patch_size}")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
    p, r = patch_size, patch_size // 2
    bands, padded_h, padded_w = padded.shape
    height, width = padded_h - 2 * r, padded_w - 2 * r
    if height < 1 or width < 1:
        raise ConfigError(
            f"a cube of padded size {padded_h}×{padded_w} holds no pixel for patch size {p}; "
            f"pad it by {r} on each side first (hsi.data.patches.pad_cube)"
        )
    dev = torch.device(device) if device is not None else _model_device(model)
    dense = _dense_net(model, p)
    out: torch.Tensor | None = None

    def put(probs: torch.Tensor, r0: int, c0: int) -> None:
        nonlocal out
        if out is None:
            out = torch.empty((probs.shape[0], height, width), dtype=torch.float32)
        out[:, r0 : r0 + probs.shape[1], c0 : c0 + probs.shape[2]] = probs.float().cpu()

    was_training = model.training
    model.eval()
    try:
        if dense is not None:
            rows, cols = _dense_block(height, width, r, batch_size)
            for r0 in range(0, height, rows):
                r1 = min(height, r0 + rows)
                for c0 in range(0, width, cols):
                    c1 = min(width, c0 + cols)
                    x = padded[:, r0 : r1 + 2 * r, c0 : c1 + 2 * r].unsqueeze(0)
                    logits = dense.forward_dense(x.to(dev, torch.float32))
                    put(torch.softmax(logits[0], dim=0), r0, c0)
        else:
            cols = min(width, batch_size)
            rows = max(1, batch_size // cols)
            for r0 in range(0, height, rows):
                r1 = min(height, r0 + rows)
                for c0 in range(0, width, cols):
                    c1 = min(width, c0 + cols)
                    block = padded[:, r0 : r1 + 2 * r, c0 : c1 + 2 * r]
                    # (C, rows, cols, p, p) view -> (rows·cols, C, p, p): one copy per batch
                    patches = block.unfold(1, p, 1).unfold(2, p, 1)
                    patches = patches.permute(1, 2, 0, 3, 4).reshape(-1, bands, p, p)
                    logits = model(patches.to(dev, torch.float32))
                    probs = torch.softmax(logits, dim=1)
                    put(probs.T.reshape(-1, r1 - r0, c1 - c0), r0, c0)
    finally:
        model.train(was_training)
    assert out is not None
    return out
