"""Degradation operators ``H`` shared by the diffusion restorers (HIR-Diff and DDS2M).

Both methods see a degraded cube ``y = H x + n`` and need ``H``: HIR-Diff in its guidance term
``||y - H(E · A)||²`` (a gradient through ``H``), DDS2M in DDRM's update, which works in the
row space of ``H`` (a projection and a pseudo-inverse). Writing ``H`` once keeps the two
methods restoring the same problem for the same task name.

The three tasks have operators whose non-zero singular values are all equal, so their SVD is
a projection ``P = H⁺H`` and one singular value:

- ``denoise``: ``H = I`` (singular value 1).
- ``inpaint``: ``H`` keeps the entries where ``mask`` is 1 (a cube-shaped 0/1 mask; singular
  value 1 on the kept entries, 0 elsewhere).
- ``sr``: ``H`` averages ``scale × scale`` blocks (singular value ``1/scale``); its
  pseudo-inverse repeats each low-resolution pixel over its block. The papers downsample with
  a bicubic kernel (DDS2M's ``SRConv``) or blur + decimation (HIR-Diff); block averaging keeps
  a closed-form pseudo-inverse, and a user whose data were bicubic-downsampled still gets a
  consistent, if slightly mismatched, data term.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from hsi.errors import ConfigError, DataError

__all__ = ["TASKS", "DegradationOperator", "check_task_args"]

TASKS = ("denoise", "inpaint", "sr")


def check_task_args(
    method: str,
    task: str,
    mask: np.ndarray | torch.Tensor | None,
    scale: int | None,
    shape: tuple[int, ...],
) -> torch.Tensor | None:
    """Check a restorer's ``task``/``mask``/``scale`` for a degraded cube of ``shape``
    (bands, H, W); returns the mask as a contiguous float32 (bands, H, W) 0/1 tensor
    (``inpaint`` only; an (H, W) mask applies to every band), else None.

    Shared by HIR-Diff and DDS2M so both refuse the same inputs with the same messages.
    """
    if task not in TASKS:
        raise ConfigError(f"unknown {method} task {task!r}; choose one of {', '.join(TASKS)}")
    if task == "sr":
        if not isinstance(scale, int) or isinstance(scale, bool) or scale < 2:
            raise ConfigError(f"task='sr' needs an integer scale >= 2, got {scale!r}")
    elif scale is not None:
        raise ConfigError(f"scale is only used by task='sr', not {task!r}")
    if task != "inpaint":
        if mask is not None:
            raise ConfigError(f"a mask is only used by task='inpaint', not {task!r}")
        return None
    if mask is None:
        raise ConfigError("task='inpaint' needs a mask (1 = observed, 0 = missing)")
    m = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    if m.ndim == 2 and m.shape == tuple(shape[1:]):
        m = np.broadcast_to(m, shape)
    if m.shape != tuple(shape):
        raise DataError(
            f"the mask's shape {m.shape} is neither the cube's {tuple(shape)} nor its (H, W) = "
            f"{tuple(shape[1:])}"
        )
    if not np.isin(m, (0, 1)).all():
        raise DataError("the mask must hold only 0 (missing) and 1 (observed)")
    if not m.any():
        raise DataError("the mask marks every value as missing; nothing to restore from")
    return torch.from_numpy(np.ascontiguousarray(m, dtype=np.float32))


class DegradationOperator:
    """``H`` of one restoration task on (bands, H, W) cubes (batch-free, as the samplers use).

    Args:
        task: ``denoise``, ``inpaint`` or ``sr``.
        mask: for ``inpaint``, a (bands, H, W) 0/1 tensor (1 = observed).
        scale: for ``sr``, the integer block side.
    """

    def __init__(
        self, task: str, mask: torch.Tensor | None = None, scale: int | None = None
    ) -> None:
        if task not in TASKS:
            raise ConfigError(f"unknown restoration task {task!r}; choose one of {TASKS}")
        if (task == "inpaint") != (mask is not None):
            raise ConfigError("a mask is needed by, and only by, task='inpaint'")
        if (task == "sr") != (scale is not None):
            raise ConfigError("a scale is needed by, and only by, task='sr'")
        self.task, self.mask, self.scale = task, mask, scale
        self.singular = 1.0 / scale if task == "sr" else 1.0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``H x``: the observation a clean (bands, H, W) cube would give (differentiable)."""
        if self.task == "denoise":
            return x
        if self.task == "inpaint":
            return x * self.mask
        return F.avg_pool2d(x[None], self.scale)[0]

    def pinv(self, y: torch.Tensor) -> torch.Tensor:
        """``H⁺ y``: for ``sr`` each low-resolution pixel repeated over its block."""
        if self.task == "sr":
            return F.interpolate(y[None], scale_factor=self.scale, mode="nearest")[0]
        return self(y)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """``H⁺ H x``: the part of ``x`` the observation constrains (row space of ``H``)."""
        return x if self.task == "denoise" else self.pinv(self(x))
