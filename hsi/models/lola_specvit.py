"""LoLA-SpecViT: a 3-D-conv spectral stem, window attention and LoRA, for HSI patch classification.

Zidi, F. A., Boukhari, D. E., Sellam, A. Z., Ouafi, A., Distante, C., Bekhouche, S. E.,
Taleb-Ahmed, A. "LoLA-SpecViT: Local Attention SwiGLU Vision Transformer with LoRA for
Hyperspectral Imaging", International Journal of Applied Earth Observation and
Geoinformation 144:104924, 2025. doi:10.1016/j.jag.2025.104924, arXiv:2506.17759.
Reference code: github.com/FadiZidiDz/LoLA-SpecViT-Model (``improved_GCPE.py``,
``EnhancedPEFTHyperspectralGCViT``; read for sizes and defaults, not copied).

Why it is here: a hierarchical window-attention transformer whose attention and MLP
projections carry LoRA adapters, so a backbone trained on one scene can be adapted to
another by training the adapters and the classifier only (``finetune: lora`` in
:class:`hsi.tasks.ClassificationTask`; the paper's "over 80% fewer trainable parameters").
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from timm.layers import DropPath, SwiGLU
from torch import nn

from hsi.errors import ConfigError
from hsi.models.registry import register_model
from hsi.nn.attention import WindowAttention
from hsi.nn.lora import LoRALinear


class SqueezeExcitation(nn.Module):
    """Channel re-weighting (Hu et al., CVPR 2018) for ``(B, C, ...)`` maps of any rank.

    Mean over every non-channel axis → ``Linear(C, C/r)`` → ReLU → ``Linear(C/r, C)`` →
    sigmoid → scale, both Linear layers without bias as in the reference code
    (``2·C²/r`` parameters). One module serves the 3-D stem and the 2-D downsampling.
    """

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        if channels // reduction < 1:
            raise ConfigError(
                f"squeeze-excitation on {channels} channels with reduction {reduction} leaves "
                f"no hidden units; use se_reduction <= {channels}"
            )
        self.fc = nn.Sequential(
            nn.Linear(channels, channels // reduction, bias=False),
            nn.ReLU(inplace=True),
            nn.Linear(channels // reduction, channels, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = self.fc(x.flatten(2).mean(-1))  # (B, C)
        return x * weights.reshape(*weights.shape, *([1] * (x.ndim - 2)))


class BandDropout(nn.Module):
    """Drop whole (channel, band) planes of a ``(B, C, D, H, W)`` stem output in training.

    Why: the paper's band dropout makes the classifier robust to missing or noisy bands;
    as in the reference code a plane is zeroed with probability ``p`` and the kept ones
    are scaled by ``1/(1 − p)``, so evaluation needs no rescaling.
    """

    def __init__(self, p: float = 0.1) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ConfigError(f"band dropout must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = torch.full(x.shape[:3], 1.0 - self.p, device=x.device, dtype=x.dtype)
        mask = torch.bernoulli(keep).reshape(*x.shape[:3], 1, 1)
        return x * mask / (1.0 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class LoRASwiGLUMlp(nn.Module):
    """The paper's MLP: LoRA Linear ``dim → 4·dim`` → SwiGLU(4·dim) → LoRA Linear ``4·dim → dim``.

    The SwiGLU is the reference code's: gate and value Linear layers ``4·dim → 4·dim``
    and an output Linear ``4·dim → 4·dim``, all with bias (timm's ``SwiGLU``, same
    layout and count); it carries no LoRA, so LoRA fine-tuning freezes it.
    """

    def __init__(self, dim: int, hidden: int, rank: int, alpha: float, dropout: float) -> None:
        super().__init__()
        self.fc1 = LoRALinear(dim, hidden, rank=rank, alpha=alpha, dropout=dropout)
        self.swiglu = SwiGLU(hidden, hidden, hidden)
        self.fc2 = LoRALinear(hidden, dim, rank=rank, alpha=alpha, dropout=dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.swiglu(self.fc1(x)))


class LoLABlock(nn.Module):
    """Pre-norm transformer block on a ``(B, H, W, dim)`` token grid.

    ``x + DropPath(WindowAttention(LN(x)))`` then ``x + DropPath(MLP(LN(x)))``; the
    attention's ``qkv`` and ``proj`` Linear layers are LoRA-wrapped (rank ``r``,
    scale ``α/r``). Windows larger than the grid are zero-padded *and masked*
    (:class:`~hsi.nn.WindowAttention` ``pad=True``); the reference code pads without a
    mask, so its padded tokens take part in attention (same parameters, cleaner result).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window: int,
        mlp_ratio: float,
        drop_path: float,
        rank: int,
        alpha: float,
        lora_dropout: float,
        pad: bool,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, num_heads, window=window, qkv_bias=True, pad=pad)
        self.attn.qkv = LoRALinear.from_linear(self.attn.qkv, rank, alpha, lora_dropout)
        self.attn.proj = LoRALinear.from_linear(self.attn.proj, rank, alpha, lora_dropout)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = LoRASwiGLUMlp(dim, int(dim * mlp_ratio), rank, alpha, lora_dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class Downsample(nn.Module):
    """Between stages: halve the grid, double the width (GCViT's ReduceSize, as the authors').

    Depthwise 3×3 conv → SiLU → squeeze-excitation → 1×1 conv ``C → 2C`` → BatchNorm →
    3×3 conv stride 2 ``2C → 2C`` (convolutions without bias). Input and output are
    ``(B, H, W, C)`` token grids; the side becomes ``⌈side / 2⌉``.
    """

    def __init__(self, dim: int, se_reduction: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(dim, dim, 3, padding=1, groups=dim, bias=False),
            nn.SiLU(),
            SqueezeExcitation(dim, se_reduction),
            nn.Conv2d(dim, 2 * dim, 1, bias=False),
        )
        self.norm = nn.BatchNorm2d(2 * dim)
        self.reduction = nn.Conv2d(2 * dim, 2 * dim, 3, stride=2, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.reduction(self.norm(self.conv(x.permute(0, 3, 1, 2))))
        return x.permute(0, 2, 3, 1)


def _per_stage(value: int | Sequence[int], stages: int, name: str) -> list[int]:
    values = [int(value)] * stages if isinstance(value, int) else [int(v) for v in value]
    if len(values) != stages:
        raise ConfigError(f"{name} needs one value per stage ({stages}), got {list(values)}")
    return values


@register_model("lola_specvit")
class LoLASpecViT(nn.Module):
    """LoLA-SpecViT with the paper's and the reference code's defaults.

    Input ``(N, bands, patch, patch)``: PCA components (15 in the paper) of a 15×15 patch.

    - Spectral stem on the cube as a 1-channel volume (kernel bands×h×w, "same" padding,
      each conv followed by BatchNorm3d + SiLU): Conv3d 1→32 (7×3×3), 32→64 (5×3×3),
      64→96 (3×3×3); band dropout 0.1; squeeze-excitation (reduction 16); mean over
      the band axis → ``(N, 96, patch, patch)``.
    - Patch embedding: Conv2d 96→96, 4×4, stride 2, padding 1 + BatchNorm + SiLU →
      a ``⌊patch/2⌋`` grid (7×7 for 15×15); learnable position embedding, dropout 0.1.
    - 3 stages, widths 96/192/384, depths 3/4/19, heads 4/8/16, window 7 with a
      relative-position bias; a :class:`Downsample` after stages 1 and 2 (grids 7 → 4 → 2
      for 15×15 patches; windows larger than the grid are padded and masked).
    - Block MLP: LoRA Linear → SwiGLU (hidden 4·dim) → LoRA Linear; stochastic depth
      rising linearly from 0 to 0.2 over the 26 blocks.
    - LayerNorm, mean over tokens, LoRA Linear head ``384 → classes``.
    - LoRA rank 16, α 32 (scale 2) on ``qkv``, ``proj``, both MLP Linear layers and the
      head; ``B`` starts at zero. The reference keeps a ``lora_dropout`` of 0.1 but never
      applies it, hence the default 0.

    With 15 bands, 16 classes and 15×15 patches this has 183,199,916 parameters, of
    which 2,144,512 are LoRA's ``A``/``B`` (the reference's count less its extra
    full-size ``lora_gate``/``lora_residual`` matrices, which the paper does not describe
    and which would leave LoRA fine-tuning training 29% of the weights, not < 20%).

    All parameters train when training from scratch (the reference freezes everything but
    its adapters even then); :func:`hsi.nn.mark_only_lora_trainable` with
    ``train_head="head"`` gives the paper's LoRA fine-tuning (98.8% fewer trainable).
    """

    head_name = "head"  # the classifier a fine-tuning run re-initialises for new classes

    def __init__(
        self,
        in_bands: int = 15,
        num_classes: int = 16,
        patch_size: int = 15,
        embed_dim: int = 96,
        depths: Sequence[int] = (3, 4, 19),
        num_heads: Sequence[int] = (4, 8, 16),
        window_size: int | Sequence[int] = 7,
        mlp_ratio: float = 4.0,
        stem_channels: Sequence[int] = (32, 64),
        drop_path_rate: float = 0.2,
        band_dropout: float = 0.1,
        pos_dropout: float = 0.1,
        se_reduction: int = 16,
        lora_rank: int = 16,
        lora_alpha: float = 32.0,
        lora_dropout: float = 0.0,
        pad_windows: bool = True,
    ) -> None:
        super().__init__()
        if in_bands < 1 or num_classes < 1:
            raise ConfigError(
                f"LoLA-SpecViT needs in_bands >= 1 and num_classes >= 1, got {in_bands} "
                f"and {num_classes}"
            )
        if patch_size < 2:
            raise ConfigError(
                f"LoLA-SpecViT needs patches of at least 2×2 (its 4×4 stride-2 patch "
                f"embedding), got {patch_size}"
            )
        depths = [int(d) for d in depths]
        stages = len(depths)
        if stages < 1 or min(depths) < 1:
            raise ConfigError(f"depths must list at least one stage of >= 1 block, got {depths}")
        heads = _per_stage(list(num_heads), stages, "num_heads")
        windows = _per_stage(window_size, stages, "window_size")
        if len(stem_channels) != 2:
            raise ConfigError(f"stem_channels takes the two hidden widths, got {stem_channels}")
        self.in_bands = in_bands
        self.num_classes = num_classes
        self.patch_size = patch_size
        self.dims = [embed_dim * 2**i for i in range(stages)]
        self.grids = [patch_size // 2]
        for _ in range(stages - 1):
            self.grids.append((self.grids[-1] - 1) // 2 + 1)
        for i, (grid, window) in enumerate(zip(self.grids, windows, strict=True)):
            if window < 1:
                raise ConfigError(f"window_size must be >= 1, got {window} for stage {i + 1}")
            if not pad_windows and (window > grid or grid % window):
                raise ConfigError(
                    f"stage {i + 1} sees a {grid}×{grid} token grid (patch {patch_size}), "
                    f"which {window}×{window} windows do not tile; set pad_windows=true or "
                    f"a window_size dividing {grid}"
                )

        c1, c2 = (int(c) for c in stem_channels)
        self.stem = nn.Sequential(
            nn.Conv3d(1, c1, (7, 3, 3), padding=(3, 1, 1)),
            nn.BatchNorm3d(c1),
            nn.SiLU(),
            nn.Conv3d(c1, c2, (5, 3, 3), padding=(2, 1, 1)),
            nn.BatchNorm3d(c2),
            nn.SiLU(),
            nn.Conv3d(c2, embed_dim, (3, 3, 3), padding=(1, 1, 1)),
            nn.BatchNorm3d(embed_dim),
            nn.SiLU(),
        )
        self.band_dropout = BandDropout(band_dropout)
        self.spectral_se = SqueezeExcitation(embed_dim, se_reduction)
        self.patch_embed = nn.Sequential(
            nn.Conv2d(embed_dim, embed_dim, 4, stride=2, padding=1),
            nn.BatchNorm2d(embed_dim),
            nn.SiLU(),
        )
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grids[0], self.grids[0], embed_dim))
        self.pos_drop = nn.Dropout(pos_dropout)

        n_blocks = sum(depths)  # stochastic depth rises linearly from 0 to drop_path_rate
        rates = [drop_path_rate * k / max(n_blocks - 1, 1) for k in range(n_blocks)]
        self.stages = nn.ModuleList()
        self.downsamples = nn.ModuleList()
        start = 0
        for i, depth in enumerate(depths):
            blocks = [
                LoLABlock(
                    self.dims[i],
                    heads[i],
                    windows[i],
                    mlp_ratio,
                    rates[start + j],
                    lora_rank,
                    lora_alpha,
                    lora_dropout,
                    pad_windows,
                )
                for j in range(depth)
            ]
            start += depth
            self.stages.append(nn.Sequential(*blocks))
            if i < stages - 1:
                self.downsamples.append(Downsample(self.dims[i], se_reduction))
        self.norm = nn.LayerNorm(self.dims[-1])
        self.head = LoRALinear(self.dims[-1], num_classes, rank=lora_rank, alpha=lora_alpha)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The reference's init: Linear weights N(0, 0.02²) truncated, zero biases, unit norms.

        LoRA's ``A``/``B`` keep their own init (``B = 0``: adapters start as a no-op; the
        reference re-draws ``B`` too, which makes its adapted model start off the base).
        Every parameter is left trainable: LoRALinear freezes its base on construction,
        but a model trained from scratch trains all of it.
        """
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02, a=-0.04, b=0.04)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, (nn.LayerNorm, nn.BatchNorm2d, nn.BatchNorm3d)):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.trunc_normal_(self.pos_embed, std=0.02, a=-0.04, b=0.04)
        for p in self.parameters():
            p.requires_grad_(True)

    def _check_input(self, x: torch.Tensor) -> None:
        if x.ndim != 4 or tuple(x.shape[1:]) != (self.in_bands, self.patch_size, self.patch_size):
            raise ConfigError(
                f"LoLA-SpecViT expects patches of shape (N, {self.in_bands}, "
                f"{self.patch_size}, {self.patch_size}), got {tuple(x.shape)}"
            )

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Each stage's output token grid ``(N, side, side, width)``, before downsampling.

        For the paper's 15×15 patches: ``(N, 7, 7, 96)``, ``(N, 4, 4, 192)``,
        ``(N, 2, 2, 384)``.
        """
        self._check_input(x)
        x = self.stem(x.unsqueeze(1))  # (N, 96, bands, patch, patch)
        x = self.spectral_se(self.band_dropout(x))
        x = self.patch_embed(x.mean(dim=2))  # (N, 96, grid, grid)
        x = self.pos_drop(x.permute(0, 2, 3, 1) + self.pos_embed)
        outputs = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            outputs.append(x)
            if i < len(self.downsamples):
                x = self.downsamples[i](x)
        return outputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.forward_features(x)[-1]
        return self.head(self.norm(tokens.flatten(1, 2)).mean(dim=1))
