"""VP-Hype: a hybrid Mamba-Transformer with visual and textual prompts.

Sellam, A. Z., Zidi, F. A., Bekhouche, S. E., Houhou, I., Tliba, M., Distante, C., Hadid, A.
"VP-Hype: A Hybrid Mamba-Transformer Framework with Visual-Textual Prompting for
Hyperspectral Image Classification", arXiv:2603.01174, 2026. Published: OA 99.69 % on
Salinas and 99.45 % on WHU-Hi LongKou with 2 % of the labelled pixels for training.

What is the paper's and what is ours
------------------------------------
From the paper / issue: a 3-D CNN spectral front-end (inherited from the authors'
LoLA-SpecViT, arXiv:2506.17759); a hybrid Mamba-Transformer backbone in which, in every
stage, the first half of the blocks are Mamba mixers and the rest self-attention (the
MambaVision rule, Hatamizadeh & Kautz, arXiv:2407.08083: with an odd depth the Mamba half
gets the extra block); Mamba mixers with ``d_state=8, d_conv=3, expand=1``; dual visual
and textual prompts; the LoLA-SpecViT input pipeline (PCA to 15 whitened components,
15×15 patches).

The authors' VP-Hype code was not found in any index we could search, so the widths,
depths, head counts and prompt sizes below are **our** choices (small enough to train on a
CPU), not the paper's; the parameter count is checked against the layer-by-layer formula
in :func:`expected_parameter_count`, not against a published figure.

Layers (defaults: ``embed_dim=64``, ``depths=(2, 4)``, ``num_heads=(2, 4)``, 15 input
bands, 15×15 patch):

- spectral front-end: Conv3d 1→8 (7×3×3) BN ReLU, Conv3d 8→16 (5×3×3) BN ReLU, both
  "same"-padded; fold the 16×bands spectral features into channels; Conv2d 1×1 →
  ``embed_dim``, BN, ReLU. Tokens: one per pixel (15×15 = 225), plus a learnable
  absolute position embedding (the labelled pixel is the centre one).
- stage ``s`` (width ``embed_dim·2^s``; before stages > 0 a 3×3 stride-2 Conv2d halves
  the grid and doubles the width, as MambaVision's downsampler):
  prompt fusion (below), then ``depths[s]`` pre-norm residual blocks
  ``x += mixer(LN(x)); x += MLP(LN(x))`` (MLP ratio 4, GELU). Mixer = :class:`hsi.nn.Mamba`
  over the row-major token sequence for the first ``ceil(depth/2)`` blocks, multi-head
  self-attention (PyTorch SDPA) for the rest.
- head: LayerNorm, mean over tokens, Dropout, Linear → classes.

With the defaults and 16 classes this has 1,145,744 parameters (front-end 21,888, position
embedding 14,400, text context 6,144, stage 1 139,840, stage 2 961,152, norm + head 2,320,
ours; see :func:`expected_parameter_count`).

Prompts, and why they enter the network this way
------------------------------------------------
Each stage starts with a cross-attention in which the pixel tokens are the queries and a
small set of prompt tokens are the keys/values, added back residually:

- **visual prompts**: ``num_visual_prompts`` learnable tokens per stage (the paper's
  learnable prompt maps, here without spatial layout), shared by every sample; they act as
  learned "prototype" memories the features can read from.
- **textual prompts**: one token per class. The buffer ``text_embeddings``
  ``(num_classes, 384)`` holds the MiniLM sentence embedding of
  ``"a hyperspectral image patch of <class name>"`` (:mod:`hsi.nn.text_prompts`), computed
  once at build; a learnable ``text_context`` of the same shape is added (CoOp-style
  context, small random init) and the sum is projected by a per-stage Linear 384 → width.

Why keys/values: the class names carry a prior on which classes are alike (the MiniLM
vectors of "corn-notill" and "corn-mintill" are closer than those of "corn-notill" and
"woods"), and reading them through attention lets every pixel token mix in class
semantics without fixing the classifier to them; the learnable context lets training
correct names that describe the spectra badly. Without an encoder (``text_encoder="none"``
or MiniLM not installed under ``"auto"``) the buffer is zeros and the text tokens are the
learnable context alone, i.e. learnable prompt tokens. The state-dict keys are the same in
every case, and a loaded state dict's ``text_embeddings`` replaces the built one, so a
checkpoint trained with MiniLM is rebuilt exactly on a machine without it. Whether the text
prompts improve accuracy on our protocols is not measured here.

Differences from the paper we know of: our :class:`hsi.nn.Mamba` is the causal reference
Mamba (MambaVision's mixer is non-causal, with a symmetric convolution and an ungated
branch), and prompts come from class names rather than one fixed CLIP sentence.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from hsi.errors import ConfigError
from hsi.models.registry import register_model
from hsi.nn.mamba import Mamba
from hsi.nn.text_prompts import TEXT_EMBED_DIM, embed_class_names


class SpectralFrontEnd(nn.Module):
    """3-D convolutions over (bands, h, w), folded into ``dim`` channels per pixel."""

    def __init__(self, in_bands: int, dim: int) -> None:
        super().__init__()
        self.conv3d = nn.Sequential(
            nn.Conv3d(1, 8, kernel_size=(7, 3, 3), padding=(3, 1, 1)),
            nn.BatchNorm3d(8),
            nn.ReLU(inplace=True),
            nn.Conv3d(8, 16, kernel_size=(5, 3, 3), padding=(2, 1, 1)),
            nn.BatchNorm3d(16),
            nn.ReLU(inplace=True),
        )
        self.fold = nn.Sequential(
            nn.Conv2d(16 * in_bands, dim, kernel_size=1),
            nn.BatchNorm2d(dim),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3d(x.unsqueeze(1))  # (B, 16, bands, H, W)
        return self.fold(x.flatten(1, 2))  # (B, dim, H, W)


class SelfAttention(nn.Module):
    """Multi-head self-attention over all tokens, on ``scaled_dot_product_attention``."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, dim // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, heads, tokens, head_dim)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, dim))


class PromptCrossAttention(nn.Module):
    """Pixel tokens (queries) read prompt tokens (keys/values); residual, pre-norm."""

    def __init__(self, dim: int, num_heads: int, num_visual_prompts: int, text_dim: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.visual_prompts = nn.Parameter(torch.zeros(num_visual_prompts, dim))
        nn.init.trunc_normal_(self.visual_prompts, std=0.02)
        self.text_proj = nn.Linear(text_dim, dim)
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim)
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, text_tokens: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        heads, head_dim = self.num_heads, dim // self.num_heads
        prompts = torch.cat([self.visual_prompts, self.text_proj(text_tokens)], dim=0)
        k, v = self.kv(self.norm_kv(prompts)).reshape(-1, 2, heads, head_dim).permute(1, 2, 0, 3)
        q = self.q(self.norm_q(x)).reshape(batch, tokens, heads, head_dim).transpose(1, 2)
        # the prompts are the same for every sample: broadcast them over the batch
        k = k.unsqueeze(0).expand(batch, -1, -1, -1)
        v = v.unsqueeze(0).expand(batch, -1, -1, -1)
        out = F.scaled_dot_product_attention(q, k, v)
        return x + self.proj(out.transpose(1, 2).reshape(batch, tokens, dim))


class HybridBlock(nn.Module):
    """``x += mixer(LN(x)); x += MLP(LN(x))`` with a Mamba or an attention mixer."""

    def __init__(
        self,
        dim: int,
        mixer: Literal["mamba", "attention"],
        num_heads: int,
        mlp_ratio: float,
        d_state: int,
        d_conv: int,
        expand: int,
    ) -> None:
        super().__init__()
        self.kind = mixer
        self.norm1 = nn.LayerNorm(dim)
        self.mixer: nn.Module = (
            Mamba(dim, d_state=d_state, d_conv=d_conv, expand=expand)
            if mixer == "mamba"
            else SelfAttention(dim, num_heads)
        )
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.mixer(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def mamba_block_count(depth: int) -> int:
    """Mamba blocks in a stage of ``depth`` blocks: the first half, rounded up."""
    return (depth + 1) // 2


class HybridStage(nn.Module):
    """Optional downsampling, prompt cross-attention, then Mamba blocks and attention blocks."""

    def __init__(
        self,
        in_dim: int,
        dim: int,
        depth: int,
        num_heads: int,
        downsample: bool,
        num_visual_prompts: int,
        text_dim: int,
        mlp_ratio: float,
        d_state: int,
        d_conv: int,
        expand: int,
    ) -> None:
        super().__init__()
        self.downsample = (
            nn.Conv2d(in_dim, dim, kernel_size=3, stride=2, padding=1, bias=False)
            if downsample
            else None
        )
        self.prompt = PromptCrossAttention(dim, num_heads, num_visual_prompts, text_dim)
        n_mamba = mamba_block_count(depth)
        self.blocks = nn.ModuleList(
            HybridBlock(
                dim,
                "mamba" if i < n_mamba else "attention",
                num_heads,
                mlp_ratio,
                d_state,
                d_conv,
                expand,
            )
            for i in range(depth)
        )

    def forward(self, x: torch.Tensor, text_tokens: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, H, W)`` → ``(B, C, H', W')``."""
        if self.downsample is not None:
            x = self.downsample(x)
        batch, _, height, width = x.shape
        tokens = self.prompt(x.flatten(2).transpose(1, 2), text_tokens)  # row-major order
        for block in self.blocks:
            tokens = block(tokens)
        return tokens.transpose(1, 2).reshape(batch, -1, height, width)


@register_model("vp_hype")
class VPHype(nn.Module):
    """VP-Hype patch classifier: ``(B, in_bands, patch, patch)`` → logits ``(B, classes)``.

    See the module docstring for the layers, which sizes are the paper's and which are
    ours, and how the prompts enter the network.

    Args:
        in_bands, num_classes, patch_size: input bands (PCA components; 15 in the paper's
            pipeline), classes, patch side (15 in the paper's pipeline).
        embed_dim: width of the first stage; stage ``s`` has ``embed_dim · 2^s``.
        depths, num_heads: blocks and attention heads per stage.
        num_visual_prompts: learnable visual prompt tokens per stage.
        mlp_ratio: MLP hidden width / token width.
        d_state, d_conv, expand: Mamba sizes (the authors': 8, 3, 1).
        class_names: class names for the text prompts (the task passes the dataset's);
            ``None`` means learnable prompt tokens only.
        text_encoder: ``"auto"``, ``"minilm"`` or ``"none"`` (:func:`embed_class_names`).
        dropout: dropout before the classifier.
    """

    def __init__(
        self,
        in_bands: int = 15,
        num_classes: int = 16,
        patch_size: int = 15,
        embed_dim: int = 64,
        depths: Sequence[int] = (2, 4),
        num_heads: Sequence[int] = (2, 4),
        num_visual_prompts: int = 4,
        mlp_ratio: float = 4.0,
        d_state: int = 8,
        d_conv: int = 3,
        expand: int = 1,
        class_names: list[str] | None = None,
        text_encoder: Literal["auto", "minilm", "none"] = "auto",
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        depths, num_heads = list(depths), list(num_heads)
        self._check_config(
            in_bands,
            num_classes,
            patch_size,
            embed_dim,
            depths,
            num_heads,
            num_visual_prompts,
            class_names,
        )
        self.in_bands = in_bands
        self.num_classes = num_classes
        self.patch_size = patch_size
        self.front = SpectralFrontEnd(in_bands, embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, embed_dim, patch_size, patch_size))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)

        if class_names is None and text_encoder == "minilm":
            raise ConfigError("text_encoder='minilm' needs class_names to embed")
        embeddings = embed_class_names(class_names, encoder=text_encoder) if class_names else None
        self.register_buffer(
            "text_embeddings",
            embeddings if embeddings is not None else torch.zeros(num_classes, TEXT_EMBED_DIM),
        )
        self.text_context = nn.Parameter(torch.zeros(num_classes, TEXT_EMBED_DIM))
        nn.init.normal_(self.text_context, std=0.02)

        dims = [embed_dim * 2**i for i in range(len(depths))]
        self.stages = nn.ModuleList(
            HybridStage(
                dims[max(i - 1, 0)],
                dims[i],
                depths[i],
                num_heads[i],
                i > 0,
                num_visual_prompts,
                TEXT_EMBED_DIM,
                mlp_ratio,
                d_state,
                d_conv,
                expand,
            )
            for i in range(len(depths))
        )
        self.norm = nn.LayerNorm(dims[-1])
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(dims[-1], num_classes)

    @staticmethod
    def _check_config(
        in_bands: int,
        num_classes: int,
        patch_size: int,
        embed_dim: int,
        depths: list[int],
        num_heads: list[int],
        num_visual_prompts: int,
        class_names: list[str] | None,
    ) -> None:
        if in_bands < 1 or num_classes < 2:
            raise ConfigError(
                f"VP-Hype needs in_bands >= 1 and num_classes >= 2, got {in_bands}, {num_classes}"
            )
        if not depths or len(depths) != len(num_heads) or min(depths) < 1:
            raise ConfigError(
                f"VP-Hype needs one depth >= 1 and one head count per stage, got "
                f"depths={depths}, num_heads={num_heads}"
            )
        smallest = 2 ** len(depths) + 1  # the last stage keeps at least 3×3 tokens
        if patch_size < smallest:
            raise ConfigError(
                f"VP-Hype with {len(depths)} stages needs a patch of at least "
                f"{smallest}×{smallest} (each later stage halves the grid), got {patch_size}"
            )
        for i, heads in enumerate(num_heads):
            width = embed_dim * 2**i
            if heads < 1 or width % heads:
                raise ConfigError(
                    f"stage {i} has width {width}, not divisible into {heads} attention heads"
                )
        if num_visual_prompts < 1:
            raise ConfigError(f"num_visual_prompts must be >= 1, got {num_visual_prompts}")
        if class_names is not None and len(class_names) != num_classes:
            raise ConfigError(
                f"VP-Hype got {len(class_names)} class names for {num_classes} classes; "
                f"give one name per class (in label order)"
            )

    @property
    def has_text_embeddings(self) -> bool:
        """Whether ``text_embeddings`` came from an encoder (else the prompts are learned)."""
        return bool(self.text_embeddings.abs().sum() > 0)

    def text_tokens(self) -> torch.Tensor:
        """Class prompt vectors ``(num_classes, 384)``: frozen embedding + learned context."""
        return self.text_embeddings + self.text_context

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features ``(B, width of the last stage)``."""
        p = self.patch_size
        if x.ndim != 4 or x.shape[1:] != (self.in_bands, p, p):
            raise ConfigError(
                f"VP-Hype expects patches of shape (N, {self.in_bands}, {p}, {p}), "
                f"got {tuple(x.shape)}"
            )
        x = self.front(x) + self.pos_embed
        text = self.text_tokens()
        for stage in self.stages:
            x = stage(x, text)
        return self.norm(x.flatten(2).transpose(1, 2)).mean(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.forward_features(x)))


def expected_parameter_count(
    in_bands: int = 15,
    num_classes: int = 16,
    patch_size: int = 15,
    embed_dim: int = 64,
    depths: Sequence[int] = (2, 4),
    num_visual_prompts: int = 4,
    mlp_ratio: float = 4.0,
    d_state: int = 8,
    d_conv: int = 3,
    expand: int = 1,
) -> int:
    """Parameter count written out layer by layer from the sizes in the module docstring.

    An independent tally (no module is built) that the tests compare with the real model,
    so a layer that drifts from the documented sizes is caught.
    """
    text = TEXT_EMBED_DIM
    front = (8 * 7 * 9 + 8) + 2 * 8 + (16 * 8 * 5 * 9 + 16) + 2 * 16
    front += (16 * in_bands * embed_dim + embed_dim) + 2 * embed_dim
    total = front + embed_dim * patch_size**2 + num_classes * text  # + pos_embed, context
    for i, depth in enumerate(depths):
        d = embed_dim * 2**i
        if i > 0:
            total += (d // 2) * d * 9  # 3×3 stride-2 conv, no bias
        # prompt cross-attention: prompts, text proj, 2 LayerNorms, q, kv, proj
        total += num_visual_prompts * d + (text * d + d) + 4 * d
        total += (d * d + d) + (d * 2 * d + 2 * d) + (d * d + d)
        hidden = int(d * mlp_ratio)
        common = 4 * d + (d * hidden + hidden) + (hidden * d + d)  # 2 LayerNorms + MLP
        inner = expand * d
        rank = math.ceil(d / 16)
        mamba = (
            d * 2 * inner
            + inner * d_conv
            + inner
            + inner * (rank + 2 * d_state)
            + rank * inner
            + inner
            + inner * d_state
            + inner
            + inner * d
        )
        attention = (d * 3 * d + 3 * d) + (d * d + d)
        n_mamba = mamba_block_count(depth)
        total += depth * common + n_mamba * mamba + (depth - n_mamba) * attention
    last = embed_dim * 2 ** (len(depths) - 1)
    return total + 2 * last + last * num_classes + num_classes
