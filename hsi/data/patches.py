"""Patch datasets that index one in-memory cube instead of materialising every patch.

Materialising 10,249 Indian Pines patches of 25×25×30 float32 costs 770 MB; slicing the
padded cube on demand costs the cube (2.5 MB) plus a coordinate list.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

PAD_MODES = ("reflect", "constant", "edge")


def pad_cube(data: np.ndarray, radius: int, mode: str = "reflect") -> torch.Tensor:
    """Pad a ``(C, H, W)`` array by ``radius`` on both spatial sides.

    Border pixels get full patches; ``reflect`` mirrors the image (the usual choice),
    ``constant`` pads with zeros (the training mean after standardisation).
    """
    if mode not in PAD_MODES:
        raise ValueError(f"pad mode must be one of {PAD_MODES}, got {mode!r}")
    widths = ((0, 0), (radius, radius), (radius, radius))
    if mode == "reflect" and min(data.shape[1:]) <= radius:
        mode = "symmetric"  # numpy's reflect needs the image to be wider than the pad
    padded = np.pad(data, widths, mode=mode)  # type: ignore[call-overload]
    return torch.from_numpy(np.ascontiguousarray(padded, dtype=np.float32))


class PatchDataset(Dataset):
    """``(patch, label)`` pairs centred on given pixels of one padded cube.

    Args:
        padded: ``(C, H + 2r, W + 2r)`` tensor from :func:`pad_cube`.
        coords: ``(n, 2)`` row/col of the centre pixels in the *unpadded* image.
        labels: ``(n,)`` class ids 0..K-1, or ``None`` for unlabelled inference.
        patch_size: odd patch side.
        augment: random flips and 90° rotations (training only).
    """

    def __init__(
        self,
        padded: torch.Tensor,
        coords: np.ndarray,
        labels: np.ndarray | None,
        patch_size: int,
        augment: bool = False,
    ) -> None:
        self.padded = padded
        self.coords = torch.as_tensor(np.asarray(coords), dtype=torch.long)
        self.labels = None if labels is None else torch.as_tensor(labels, dtype=torch.long)
        self.patch_size = patch_size
        self.augment = augment

    def __len__(self) -> int:
        return len(self.coords)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        row, col = self.coords[index].tolist()
        p = self.patch_size
        patch = self.padded[:, row : row + p, col : col + p]
        if self.augment:
            k = int(torch.randint(4, ()))
            if k:
                patch = torch.rot90(patch, k, dims=(1, 2))
            if torch.rand(()) < 0.5:
                patch = patch.flip(2)
        sample = {"image": patch.contiguous(), "coords": self.coords[index]}
        if self.labels is not None:
            sample["label"] = self.labels[index]
        return sample
