"""One window of a scene made ready for the model (the checkpoint's preprocessing, a halo of
``patch_size // 2`` pixels, a check that the values are in the training units) and its
probabilities turned into the output arrays."""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch

from hsi.data.preprocessing import Preprocessor
from hsi.inference.scenes import Window, _Scene

# Mean |value| of standardised (or whitened) data is about sqrt(2/pi) ~ 0.8; a scene whose
# transformed pixels average ten times that was almost surely stored in other units.
_MEAN_ABS_STANDARD = math.sqrt(2.0 / math.pi)

_RANGE_FACTOR = 10.0


def _expected_mean_abs(pre: Preprocessor) -> float | None:
    """Mean |value| that transformed training-like pixels have, or None if unknown.

    Standardised bands and whitened components have unit variance (mean |z| ~ 0.8);
    unwhitened components of standardised data have at most ``in_bands / k`` variance on
    average. Without standardisation the scale is the data's own, so nothing is checked.
    """
    if not pre.standardize:
        return None
    if pre.components is not None and not pre.whiten:
        k = len(pre.components)
        return _MEAN_ABS_STANDARD * math.sqrt(max(1.0, (pre.in_bands or k) / k))
    return _MEAN_ABS_STANDARD


class _WindowReader:
    """Reads one window plus its halo, preprocessed and padded for :func:`classify_cube`.

    Also watches the preprocessed values: if they average far beyond training-like data,
    a warning (once) says the scene is probably in other units.
    """

    def __init__(
        self,
        scene: _Scene,
        pre: Preprocessor,
        radius: int,
        pad_mode: str,
        expected_abs: float | None,
    ) -> None:
        self.scene, self.pre, self.radius, self.pad_mode = scene, pre, radius, pad_mode
        self.expected_abs = expected_abs
        self.abs_sum, self.abs_count, self.warned = 0.0, 0, False

    def read(self, window: Window) -> tuple[np.ndarray | None, np.ndarray]:
        """``(padded, core_valid)``; ``padded`` is None when no core pixel has data."""
        scene, radius = self.scene, self.radius
        r0, r1, c0, c1 = window
        rr0, rr1 = max(0, r0 - radius), min(scene.height, r1 + radius)
        cc0, cc1 = max(0, c0 - radius), min(scene.width, c1 + radius)
        data, valid = scene.read(rr0, rr1, cc0, cc1)
        core_valid = valid[r0 - rr0 : r1 - rr0, c0 - cc0 : c1 - cc0]
        if not core_valid.any():
            return None, core_valid
        z = self.pre.transform_cube(data, valid)
        self._check_range(z, data, valid)
        pads = (
            (0, 0),
            (radius - (r0 - rr0), radius - (rr1 - r1)),
            (radius - (c0 - cc0), radius - (cc1 - c1)),
        )
        if any(any(p) for p in pads):
            z = np.pad(z, pads, mode=self.pad_mode)  # type: ignore[call-overload]
        return z, core_valid

    def _check_range(self, z: np.ndarray, data: np.ndarray, valid: np.ndarray) -> None:
        expected = self.expected_abs
        if expected is None:
            return
        self.abs_sum += float(np.abs(z[:, valid]).sum(dtype=np.float64))
        self.abs_count += int(valid.sum()) * z.shape[0]
        mean_abs = self.abs_sum / self.abs_count
        if not self.warned and mean_abs > _RANGE_FACTOR * expected:
            self.warned = True
            raw = data[:, valid]
            pre = self.pre
            warnings.warn(
                f"{self.scene.source}: the scene's values look unlike the training data: "
                f"after the checkpoint's preprocessing the mean |value| is "
                f"{mean_abs:.3g}, more than {_RANGE_FACTOR:g}× the ~{expected:.2f} "
                f"of training-like data (scene {self.scene.dtype}, values "
                f"{raw.min():.4g}..{raw.max():.4g}, mean {raw.mean():.4g}; training "
                f"band means {float(np.min(pre.mean)):.4g}..{float(np.max(pre.mean)):.4g}"
                "); check units and scale factors (e.g. reflectance ×10000 vs 0..1) — "
                "the map is likely wrong",
                UserWarning,
                stacklevel=3,
            )


def _window_maps(
    probs: torch.Tensor,
    core_valid: np.ndarray,
    map_dtype: str,
    confidence: bool,
    probabilities: bool,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Classes (1..K, 0 = no data), and if asked confidence and probabilities (NaN = no data)."""
    conf, pred = probs.max(dim=0)
    classes = (pred.numpy() + 1).astype(map_dtype)
    classes[~core_valid] = 0
    c = pr = None
    if confidence:
        c = conf.numpy().astype(np.float32)
        c[~core_valid] = np.nan
    if probabilities:
        pr = probs.numpy().astype(np.float32)
        pr[:, ~core_valid] = np.nan
    return classes, c, pr
