"""HybridSN: a 3-D/2-D CNN for hyperspectral patch classification.

Roy, S. K., Krishna, G., Dubey, S. R., Chaudhuri, B. B. "HybridSN: Exploring 3-D–2-D CNN
Feature Hierarchy for Hyperspectral Image Classification", IEEE Geoscience and Remote
Sensing Letters 17(2):277-281, 2020. doi:10.1109/LGRS.2019.2918719.
Reference code: github.com/gokriznastic/HybridSN (Keras).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hsi.errors import ConfigError
from hsi.models.registry import register_model


@register_model("hybridsn")
class HybridSN(nn.Module):
    """HybridSN as in Table I of the paper.

    Input ``(N, bands, patch, patch)`` (bands = PCA components, 30 for Indian Pines,
    15 for Salinas/Pavia; patch 25×25). Layers (kernel as spectral×h×w):

    - Conv3d 1→8 (7×3×3), ReLU
    - Conv3d 8→16 (5×3×3), ReLU
    - Conv3d 16→32 (3×3×3), ReLU
    - fold the remaining spectral depth into channels: 32·(bands−12) channels
    - Conv2d →64 (3×3), ReLU
    - flatten → FC 256, ReLU, Dropout 0.4 → FC 128, ReLU, Dropout 0.4 → FC classes

    No BatchNorm, valid (unpadded) convolutions, as in the paper. With 30 bands, 16
    classes and a 25×25 patch this has 5,122,176 parameters (the paper's Table I total).
    """

    def __init__(
        self,
        in_bands: int = 30,
        num_classes: int = 16,
        patch_size: int = 25,
        dropout: float = 0.4,
    ) -> None:
        super().__init__()
        if in_bands < 13:
            raise ConfigError(
                f"HybridSN needs at least 13 input bands (its 3-D kernels span 7+5+3 bands), "
                f"got {in_bands}; raise the number of PCA components"
            )
        if patch_size < 9:
            raise ConfigError(
                f"HybridSN needs a patch of at least 9×9 (four valid 3×3 convolutions), "
                f"got {patch_size}"
            )
        self.in_bands = in_bands
        self.num_classes = num_classes
        self.patch_size = patch_size
        self.conv3d = nn.Sequential(
            nn.Conv3d(1, 8, kernel_size=(7, 3, 3)),
            nn.ReLU(inplace=True),
            nn.Conv3d(8, 16, kernel_size=(5, 3, 3)),
            nn.ReLU(inplace=True),
            nn.Conv3d(16, 32, kernel_size=(3, 3, 3)),
            nn.ReLU(inplace=True),
        )
        depth = in_bands - 6 - 4 - 2
        self.conv2d = nn.Sequential(
            nn.Conv2d(32 * depth, 64, kernel_size=3),
            nn.ReLU(inplace=True),
        )
        side = patch_size - 8
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(64 * side * side, 256),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(256, 128),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(128, num_classes),
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Glorot-uniform weights and zero biases, the Keras defaults the authors trained with.

        PyTorch's default init is about 6x smaller in variance for the 18,496-input FC
        layer, which, without BatchNorm, makes the network start much more slowly.
        """
        for module in self.modules():
            if isinstance(module, (nn.Conv3d, nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1:] != (self.in_bands, self.patch_size, self.patch_size):
            raise ConfigError(
                f"HybridSN expects patches of shape (N, {self.in_bands}, {self.patch_size}, "
                f"{self.patch_size}), got {tuple(x.shape)}"
            )
        x = self.conv3d(x.unsqueeze(1))  # (N, 32, D, H, W)
        x = x.flatten(1, 2)  # fold spectral depth into channels
        x = self.conv2d(x)
        return self.classifier(x)

    def forward_dense(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of every pixel of a padded window in one fully-convolutional pass.

        Input ``(N, bands, H + 2r, W + 2r)`` with ``r = patch_size // 2`` (the window plus a
        halo of ``r`` pixels on each side), output ``(N, classes, H, W)``; pixel ``(i, j)``
        gets exactly the logits :meth:`forward` gives the patch centred on it.

        Why: neighbouring patches overlap in all but one row or column, so running
        :meth:`forward` per pixel repeats the 3-D/2-D convolutions ~``(patch − 8)²`` times.
        Here they run once over the window; the first Linear layer, which sees the
        ``64 × s × s`` feature block under each patch (``s = patch − 8``), becomes an
        ``s × s`` convolution with the same weights (reshaped in the ``(C, H, W)`` order
        :class:`~torch.nn.Flatten` used), and the later Linear layers become 1×1
        convolutions. No parameters are added, so any checkpoint works unchanged; dropout
        acts element-wise exactly as in :meth:`forward` (inactive in eval mode).
        """
        p = self.patch_size
        if x.ndim != 4 or x.shape[1] != self.in_bands or min(x.shape[2:]) < p:
            raise ConfigError(
                f"HybridSN.forward_dense expects padded windows of shape (N, {self.in_bands}, "
                f"H + {p - 1}, W + {p - 1}) with H, W >= 1, got {tuple(x.shape)}"
            )
        x = self.conv3d(x.unsqueeze(1))  # (N, 32, D, H + 2r - 6, W + 2r - 6)
        x = x.flatten(1, 2)
        x = self.conv2d(x)  # (N, 64, H + 2r - 8, W + 2r - 8)
        kernel = p - 8  # the first Linear sees a (64, s, s) block: an s×s convolution
        for layer in self.classifier:
            if isinstance(layer, nn.Flatten):
                continue
            if isinstance(layer, nn.Linear):
                out_f, in_f = layer.weight.shape
                weight = layer.weight.reshape(out_f, in_f // (kernel * kernel), kernel, kernel)
                x = F.conv2d(x, weight, layer.bias)
                kernel = 1  # the later Linear layers act per pixel: 1×1 convolutions
            else:  # ReLU and Dropout are element-wise, so they apply to maps as they are
                x = layer(x)
        return x
