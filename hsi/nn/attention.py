"""Window multi-head self-attention with a learnable relative-position bias (Swin-style).

Liu, Z., Lin, Y., Cao, Y., Hu, H., Wei, Y., Zhang, Z., Lin, S., Guo, B. "Swin Transformer:
Hierarchical Vision Transformer using Shifted Windows", ICCV 2021, arXiv:2103.14030
(Section 3.2, Eq. 4: ``Attention(Q, K, V) = SoftMax(QKᵀ/√d + B)V`` with ``B`` read from a
``(2M−1)²`` table per head). Reference code: github.com/microsoft/Swin-Transformer.

Why windows: a hyperspectral patch classifier sees a grid of tokens (pixels or patch
embeddings); attention inside ``w×w`` windows costs ``O(H·W·w²)`` instead of
``O((H·W)²)`` and keeps a locality prior, which matters with the few labelled pixels of
HSI benchmarks. Shifted windows are not implemented (not needed by the models here).

The attention itself runs on :func:`torch.nn.functional.scaled_dot_product_attention`, so
CUDA picks a fused (memory-efficient) kernel; the bias, and the padding mask, go in as its
float ``attn_mask``. :func:`attention_reference` is the explicit formula, for tests and
benchmarks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hsi.errors import ConfigError


def attention_reference(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """``softmax(q kᵀ / √d + bias) v``, written out (shapes ``(..., tokens, d)``)."""
    scores = q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5
    if bias is not None:
        scores = scores + bias
    return scores.softmax(dim=-1) @ v


def _check_divisible(height: int, width: int, window: int) -> None:
    if height % window or width % window:
        raise ConfigError(
            f"a {height}×{width} token grid does not split into {window}×{window} windows; "
            f"pad it (pad=True) or choose a window size dividing both sides"
        )


def window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """``(B, H, W, C)`` → ``(B · nW, window², C)``, windows in row-major order per image.

    ``H`` and ``W`` must be multiples of ``window`` (see :func:`pad_to_windows`).
    """
    batch, height, width, channels = x.shape
    _check_divisible(height, width, window)
    x = x.reshape(batch, height // window, window, width // window, window, channels)
    return x.transpose(2, 3).reshape(-1, window * window, channels)


def window_reverse(windows: torch.Tensor, window: int, height: int, width: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`: ``(B · nW, window², C)`` → ``(B, H, W, C)``."""
    _check_divisible(height, width, window)
    rows, cols = height // window, width // window
    channels = windows.shape[-1]
    x = windows.reshape(-1, rows, cols, window, window, channels).transpose(2, 3)
    return x.reshape(-1, height, width, channels)


def pad_to_windows(x: torch.Tensor, window: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-pad ``(B, H, W, C)`` at the bottom/right up to multiples of ``window``.

    Returns the padded map and a ``(H', W')`` bool mask that is True on real tokens.
    Every window keeps at least one real token (padding is less than a window per side).
    """
    height, width = x.shape[1:3]
    pad_h, pad_w = (-height) % window, (-width) % window
    real = torch.ones(height + pad_h, width + pad_w, dtype=torch.bool, device=x.device)
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
        real[height:] = False
        real[:, width:] = False
    return x, real


class RelativePositionBias(nn.Module):
    """Learnable bias per head for every relative offset inside a ``w×w`` window.

    The table has ``(2w−1)²`` rows (offsets −(w−1)…w−1 along each axis) and one column per
    head, initialised from N(0, 0.02²) truncated at ±2σ (as in Swin); :meth:`forward`
    gathers it into a ``(heads, w², w²)`` bias.
    """

    def __init__(self, window: int, num_heads: int) -> None:
        super().__init__()
        self.window = window
        self.num_heads = num_heads
        side = 2 * window - 1
        self.table = nn.Parameter(torch.zeros(side * side, num_heads))
        nn.init.trunc_normal_(self.table, std=0.02, a=-0.04, b=0.04)
        rows, cols = torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
        rows, cols = rows.flatten(), cols.flatten()  # token i sits at (rows[i], cols[i])
        d_row = rows[:, None] - rows[None, :] + window - 1  # 0 … 2w−2
        d_col = cols[:, None] - cols[None, :] + window - 1
        # derived from `window`, so not saved in checkpoints
        self.register_buffer("index", d_row * side + d_col, persistent=False)

    def forward(self) -> torch.Tensor:
        tokens = self.window * self.window
        bias = self.table[self.index.flatten()].reshape(tokens, tokens, self.num_heads)
        return bias.permute(2, 0, 1)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside non-overlapping ``window×window`` windows.

    Input and output ``(B, H, W, dim)``. Layers as Swin's ``WindowAttention``: a
    ``Linear(dim, 3·dim)`` for q, k, v, scaled dot-product attention per head (scale
    ``head_dim^-1/2``) plus the :class:`RelativePositionBias`, and a ``Linear(dim, dim)``
    output projection; ``3·dim² + 3·dim + dim² + dim + (2w−1)²·heads`` parameters.

    ``pad=False`` requires ``H`` and ``W`` to be multiples of ``window`` (a
    :class:`~hsi.errors.ConfigError` names the fix otherwise). ``pad=True`` zero-pads the
    grid at the bottom/right and masks the padded tokens out of every attention (as keys;
    their own outputs are cropped), so real tokens never attend to padding, unlike Swin's
    unmasked padding.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window: int = 7,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        pad: bool = False,
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ConfigError(
                f"attention width {dim} is not divisible by {num_heads} heads; "
                f"choose a head count dividing it"
            )
        if window < 1:
            raise ConfigError(f"window size must be >= 1, got {window}")
        self.dim = dim
        self.num_heads = num_heads
        self.window = window
        self.pad = pad
        self.attn_drop = attn_drop
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.relative_position = RelativePositionBias(window, num_heads)

    def forward(self, x: torch.Tensor, reference: bool = False) -> torch.Tensor:
        """Attend within windows; ``reference=True`` uses :func:`attention_reference`."""
        if x.ndim != 4 or x.shape[-1] != self.dim:
            raise ConfigError(
                f"WindowAttention expects (B, H, W, {self.dim}) token grids, got {tuple(x.shape)}"
            )
        batch, height, width, _ = x.shape
        w = self.window
        if not self.pad and (w > height or w > width):
            raise ConfigError(
                f"window {w}×{w} is larger than the {height}×{width} token grid; use a "
                f"window of at most {min(height, width)} or pad=True"
            )
        if not self.pad:
            _check_divisible(height, width, w)
        x, real = pad_to_windows(x, w)
        grid_h, grid_w = x.shape[1:3]
        n_windows = (grid_h // w) * (grid_w // w)
        tokens, heads, head_dim = w * w, self.num_heads, self.dim // self.num_heads

        qkv = self.qkv(window_partition(x, w))  # (B·nW, w², 3·dim)
        # windows go into the head axis, (B, nW·heads, w², head_dim), so the per-window
        # mask broadcasts over the batch and SDPA still sees 4-D tensors
        qkv = qkv.reshape(batch, n_windows, tokens, 3, heads, head_dim)
        q, k, v = qkv.permute(3, 0, 1, 4, 2, 5).reshape(3, batch, n_windows * heads, tokens, -1)
        mask = self._mask(real, n_windows, q.dtype)
        if reference:
            out = attention_reference(q, k, v, mask)
        else:
            drop = self.attn_drop if self.training else 0.0
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop)
        out = out.reshape(batch, n_windows, heads, tokens, head_dim).permute(0, 1, 3, 2, 4)
        out = self.proj_drop(self.proj(out.reshape(batch * n_windows, tokens, self.dim)))
        return window_reverse(out, w, grid_h, grid_w)[:, :height, :width]

    def _mask(self, real: torch.Tensor, n_windows: int, dtype: torch.dtype) -> torch.Tensor:
        """Float attention mask ``(1, nW·heads, w², w²)``: position bias, −inf on padding."""
        bias = self.relative_position().to(dtype)  # (heads, w², w²)
        bias = bias.unsqueeze(0).expand(n_windows, -1, -1, -1)
        if not bool(real.all()):
            keys = window_partition(real[None, :, :, None], self.window)[..., 0]  # (nW, w²)
            blocked = torch.zeros(keys.shape, dtype=dtype, device=keys.device)
            blocked.masked_fill_(~keys, float("-inf"))
            bias = bias + blocked[:, None, None, :]
        return bias.reshape(1, -1, *bias.shape[-2:])
