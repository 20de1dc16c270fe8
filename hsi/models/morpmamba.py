"""MorpMamba: spatial-spectral morphological tokens, centre gating, attention and Mamba.

Ahmad, M., Butt, M. H. F., Khan, A. M., Mazzara, M., Distefano, S., Usama, M., Roy, S. K.,
Chanussot, J., Hong, D. "Spatial-spectral morphological mamba for hyperspectral image
classification", Neurocomputing 636:129995, 2025. doi:10.1016/j.neucom.2025.129995
(arXiv:2408.01372). Authors' code: github.com/mahmad000/MorpMamba, notebook
"Spatial-Spectral MorpMamba.ipynb" (Keras), the source of the sizes below.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from hsi.errors import ConfigError, DataError
from hsi.models.registry import register_model
from hsi.nn.mamba import Mamba2DScan
from hsi.nn.morphology import Morphology, MorphologyMode, StructuringElement
from hsi.nn.selective_scan import BACKENDS, Backend


class CentreGate(nn.Module):
    """Feature enhancement: gate every token by the patch's centre row.

    ``gate = sigmoid(Linear(centre_row))`` is ``(N, W, D)``, one gate per column, taken
    from the token in that column of the centre row (row ``P // 2``) and applied to every
    token of that column. The authors' notebook broadcasts the same ``(N, W, D)`` gate
    over the *first* grid axis instead (row ``h`` gated by the centre-row token of column
    ``h``, a transposition that only type-checks because patches are square); here each
    column is gated by its own centre pixel, which is what the paper describes.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, dim)

    def forward(self, tokens: torch.Tensor, centre_row: torch.Tensor) -> torch.Tensor:
        # tokens (N, H, W, D), centre_row (N, W, D)
        return tokens * torch.sigmoid(self.proj(centre_row)).unsqueeze(1)


class SpatialSpectralAttention(nn.Module):
    """Multi-head attention, queries from spatial tokens, keys/values from spectral tokens.

    As in the authors' layer: Q, K, V are Linear ``D → D`` with bias, scaled dot-product
    attention per head, **no output projection**, dropout on the output. Input and output
    are ``(N, L, D)``.
    """

    def __init__(self, dim: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, dim = x.shape
        return x.reshape(batch, length, self.num_heads, dim // self.num_heads).transpose(1, 2)

    def forward(self, spatial: torch.Tensor, spectral: torch.Tensor) -> torch.Tensor:
        q = self._heads(self.query(spatial))
        k = self._heads(self.key(spectral))
        v = self._heads(self.value(spectral))
        out = F.scaled_dot_product_attention(q, k, v)  # (N, heads, L, D / heads)
        return self.dropout(out.transpose(1, 2).flatten(2))


class MambaLayer(nn.Module):
    """Pre-norm residual Mamba over the token grid: ``x + Mamba2DScan(LayerNorm(x))``.

    The residual-with-norm wrapping is how the Mamba paper stacks its mixer (its "Block");
    the authors' notebook has no counterpart (its SSM is a plain linear recurrence).
    """

    def __init__(self, dim: int, directions: Literal["uni", "bi"], **mamba_kwargs) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.mixer = Mamba2DScan(dim, directions=directions, **mamba_kwargs)

    def forward(self, grid: torch.Tensor) -> torch.Tensor:
        return grid + self.mixer(self.norm(grid))


@register_model("morpmamba")
class MorpMamba(nn.Module):
    """The spatial-spectral MorpMamba (SSMM) of the authors' notebook, with a real Mamba.

    Input ``(N, bands, P, P)`` (bands = PCA components; the notebook: 15 whitened PCA
    components, a 4×4 patch, UH 2013). With ``D = embed_dim``:

    1. **Morphological token generation** (kernel ``k = 5``):

       - spatial: erosion and dilation of every band over the ``(row, column)`` plane
         (``Morphology(bands)``);
       - spectral: erosion and dilation over the ``(band, row)`` plane, one map per
         patch column (``Morphology(P)``), as the notebook does by moving the band axis
         into the image plane;
       - one **shared** pointwise Conv2d ``2·bands → D`` (with bias) maps
         ``[erosion, dilation]`` of each branch to ``D``-wide spatial and spectral tokens
         on the ``P × P`` grid.

       ``morphology="conv"`` (the paper, and every shipped config): the learnable
       depthwise ``k × k`` convolutions of :class:`~hsi.nn.morphology.Morphology`, ones-
       initialised, "erosion" negated; ``2·(bands + P)·k²`` parameters. ``"grey"``: exact
       grey-scale min/max morphology (``structuring_element`` square or cross), no
       parameters.
    2. **Feature enhancement** (:class:`CentreGate`): the spatial and the spectral tokens
       are each gated by ``sigmoid(Linear D → D)`` of the centre row of the spatial tokens.
    3. **Attention** (:class:`SpatialSpectralAttention`): ``num_heads = 4`` heads, queries
       from the enhanced spatial tokens, keys and values from the enhanced spectral tokens,
       over the ``P²`` tokens in row-major order; dropout ``attn_dropout = 0.1``.
    4. **State-space block**: ``depth = 1`` :class:`MambaLayer` (Mamba, Gu & Dao 2023:
       ``d_state = 16``, ``d_conv = 4``, ``expand = 2``, via :class:`~hsi.nn.Mamba2DScan`)
       and a final LayerNorm. Read-out: the last token of a causal (``"uni"``) scan, the
       only one that has seen every token and the counterpart of the notebook's final
       recurrent state; the mean over tokens for ``directions="bi"``. *This is where we
       depart from the authors' code*: their "state space model" is
       ``s_t = Linear(s_{t−1}) + Linear(x_t)`` with a 128-wide state, returning ``s_L``
       (no selectivity, no discretisation); ours is a selective scan.
    5. **Classifier**: Linear ``D → 128``, ReLU, Dropout(``dropout``), Linear ``128 →
       classes``. The notebook builds a Dropout(0.4) but never calls it, so ``dropout``
       defaults to 0; its Dense-128 carries an L2 penalty (0.01) that a model cannot
       express (see the configs).

    Parameters, for the notebook's setting (15 bands, 4×4 patch, 15 classes, ``D = 64``):
    token generation 2·15·25 + 2·4·25 + (30·64 + 64) = 2,934, enhancement 2·(64·64 + 64)
    = 8,320, attention 3·(64·64 + 64) = 12,480 and output layer 128·15 + 15 = 1,935, equal
    to the notebook's Keras summary; then Mamba 32,640 + LayerNorms 256 and Linear
    64·128 + 128 = 8,320, where the notebook has its recurrence 24,832 (state 128) and
    Dense 128·128 + 128 = 16,512. Total 66,885 (notebook: 67,013).

    The notebook's training recipe: Adam lr 1e-3 (Keras decay 1e-6), batch 256, 50 epochs,
    PCA 15 whitened on the whole image, train / validation / test 25% / 25% / 50% drawn
    at random (its UH run).
    """

    def __init__(
        self,
        in_bands: int = 15,
        num_classes: int = 16,
        patch_size: int = 5,
        embed_dim: int = 64,
        num_heads: int = 4,
        kernel_size: int = 5,
        morphology: MorphologyMode = "conv",
        structuring_element: StructuringElement = "square",
        depth: int = 1,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        directions: Literal["uni", "bi"] = "uni",
        hidden_dim: int = 128,
        attn_dropout: float = 0.1,
        dropout: float = 0.0,
        scan_backend: Backend = "auto",
    ) -> None:
        super().__init__()
        if in_bands < 1 or num_classes < 2:
            raise ConfigError(
                f"MorpMamba needs in_bands >= 1 and num_classes >= 2, got {in_bands}, {num_classes}"
            )
        if patch_size < 3:
            raise ConfigError(
                f"MorpMamba needs a patch of at least 3x3 (its centre row gates the rows "
                f"around it), got patch_size={patch_size}"
            )
        if isinstance(kernel_size, int) and kernel_size > 2 * min(patch_size, in_bands) - 1:
            raise ConfigError(
                f"MorpMamba kernel_size={kernel_size} is too large for a {patch_size}x"
                f"{patch_size} patch with {in_bands} bands: a kernel wider than "
                f"2*min(patch_size, in_bands) - 1 = {2 * min(patch_size, in_bands) - 1} has "
                f"taps that never reach a pixel; use a smaller kernel or a larger patch"
            )
        if embed_dim < 1 or num_heads < 1 or embed_dim % num_heads:
            raise ConfigError(
                f"MorpMamba embed_dim must be a positive multiple of num_heads, got "
                f"embed_dim={embed_dim}, num_heads={num_heads}"
            )
        if depth < 1:
            raise ConfigError(f"MorpMamba depth must be >= 1, got {depth}")
        if directions not in ("uni", "bi"):
            raise ConfigError(f"MorpMamba directions must be 'uni' or 'bi', got {directions!r}")
        if scan_backend not in BACKENDS:
            raise ConfigError(
                f"MorpMamba scan_backend must be one of {', '.join(BACKENDS)}, got {scan_backend!r}"
            )
        self.in_bands = in_bands
        self.num_classes = num_classes
        self.patch_size = patch_size
        self.directions = directions

        self.spatial_morphology = Morphology(in_bands, kernel_size, morphology, structuring_element)
        self.spectral_morphology = Morphology(
            patch_size, kernel_size, morphology, structuring_element
        )
        self.pointwise = nn.Conv2d(2 * in_bands, embed_dim, kernel_size=1)
        self.spatial_gate = CentreGate(embed_dim)
        self.spectral_gate = CentreGate(embed_dim)
        self.attention = SpatialSpectralAttention(embed_dim, num_heads, attn_dropout)
        self.layers = nn.ModuleList(
            MambaLayer(
                embed_dim,
                directions,
                d_state=d_state,
                d_conv=d_conv,
                expand=expand,
                backend=scan_backend,
            )
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(embed_dim)
        self.head = nn.Sequential(
            nn.Linear(embed_dim, hidden_dim),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden_dim, num_classes),
        )

    def set_scan_backend(self, backend: Backend) -> None:
        """Switch every Mamba layer's selective-scan backend (weights are unaffected)."""
        if backend not in BACKENDS:
            raise ConfigError(f"scan_backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        for layer in self.layers:
            for scan in (layer.mixer.forward_scan, layer.mixer.backward_scan):
                if scan is not None:
                    scan.backend = backend

    def tokens(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Spatial and spectral tokens, each ``(N, P, P, D)``, from ``(N, bands, P, P)``."""
        spatial_erosion, spatial_dilation = self.spatial_morphology(x)
        # move the band axis into the image plane: (N, W, bands, H), one map per column
        spectral_erosion, spectral_dilation = self.spectral_morphology(x.permute(0, 3, 1, 2))
        spectral_erosion = spectral_erosion.permute(0, 2, 3, 1)
        spectral_dilation = spectral_dilation.permute(0, 2, 3, 1)
        spatial = self.pointwise(torch.cat([spatial_erosion, spatial_dilation], dim=1))
        spectral = self.pointwise(torch.cat([spectral_erosion, spectral_dilation], dim=1))
        return spatial.permute(0, 2, 3, 1), spectral.permute(0, 2, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        expected = (self.in_bands, self.patch_size, self.patch_size)
        if x.ndim != 4 or tuple(x.shape[1:]) != expected:
            raise DataError(
                f"MorpMamba expects patches of shape (N, {self.in_bands}, {self.patch_size}, "
                f"{self.patch_size}), got {tuple(x.shape)}; check the PCA component count "
                f"and patch_size the model was built with"
            )
        spatial, spectral = self.tokens(x)
        centre_row = spatial[:, self.patch_size // 2]  # (N, W, D)
        spatial = self.spatial_gate(spatial, centre_row)
        spectral = self.spectral_gate(spectral, centre_row)
        batch, height, width, dim = spatial.shape
        mixed = self.attention(spatial.reshape(batch, -1, dim), spectral.reshape(batch, -1, dim))
        grid = mixed.reshape(batch, height, width, dim)
        for layer in self.layers:
            grid = layer(grid)
        sequence = self.norm(grid.reshape(batch, height * width, dim))
        feature = sequence[:, -1] if self.directions == "uni" else sequence.mean(dim=1)
        return self.head(feature)
