"""The affine map of raw values to [0, 1] that restoration models see, fitted on training data
only, and the check that a cube given to a fitted model is on the scale it expects."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from hsi.errors import ConfigError, DataError

# Fraction of scaled values allowed outside [-0.5, 1.5] before a cube is called "not scaled
# the way the model expects" (a few outliers are normal; reflectance x 1e4 is not).
_RANGE_SLACK = 0.5

_RANGE_TOLERANCE = 0.01


@dataclass
class Scaling:
    """Affine map of raw values to [0, 1]: ``(x - lo) / (hi - lo)``, per band or global.

    ``minmax_scene`` is a rule, not a map (``lo``/``hi`` empty): each cube is scaled by its
    own min and max, so :meth:`apply` refuses it; :meth:`of_cube` makes the map of one cube.
    """

    method: Literal["minmax", "minmax_band", "minmax_scene", "none"]
    lo: list[float]
    hi: list[float]

    @classmethod
    def per_scene(cls) -> Scaling:
        """The ``minmax_scene`` rule (what a checkpoint stores for a per-scene scaled run)."""
        return cls("minmax_scene", [], [])

    @classmethod
    def of_cube(cls, x: np.ndarray, source: str) -> Scaling:
        """Global min-max map of one ``(bands, ...)`` cube (the ``minmax_scene`` rule)."""
        lo, hi = float(np.min(x)), float(np.max(x))
        if not hi > lo:
            raise DataError(f"{source}: every value is {lo:g}; there is nothing to restore")
        n = int(x.shape[0])
        return cls("minmax", [lo] * n, [hi] * n)

    @classmethod
    def fit(cls, method: str, pixels: Sequence[np.ndarray]) -> Scaling:
        """Fit on training ``(bands, h, w)`` arrays; refuses constant bands and data without
        range. Only per-band minima and maxima matter, so ``pixels`` may be per-scene
        ``(bands, 1, 2)`` summaries of [min, max] (how a collection is fitted, streaming)."""
        if method == "minmax_scene":
            return cls.per_scene()
        if method not in ("minmax", "minmax_band", "none"):
            raise ConfigError(
                f"scaling must be minmax, minmax_band, minmax_scene or none, got {method!r}"
            )
        band_lo = np.min([p.reshape(p.shape[0], -1).min(axis=1) for p in pixels], axis=0)
        band_hi = np.max([p.reshape(p.shape[0], -1).max(axis=1) for p in pixels], axis=0)
        constant = np.flatnonzero(band_hi <= band_lo)
        if constant.size:
            shown = ", ".join(str(int(b)) for b in constant[:10])
            more = " ..." if constant.size > 10 else ""
            raise DataError(
                f"bands {shown}{more} (0-based) are constant over the training data "
                f"(value {float(band_lo[constant[0]]):g}): a dead or zeroed band carries no "
                "signal to restore; drop them with data.bands (a list of the bands to keep)"
            )
        if method == "none":
            lo, hi = float(band_lo.min()), float(band_hi.max())
            if lo < -_RANGE_SLACK / 10 or hi > 1 + _RANGE_SLACK / 10:
                raise DataError(
                    f"scaling='none' but the training data range {lo:g}..{hi:g}, not [0, 1]; "
                    "use scaling: minmax (or minmax_band)"
                )
            n = len(band_lo)
            return cls("none", [0.0] * n, [1.0] * n)
        if method == "minmax":
            n = len(band_lo)
            return cls("minmax", [float(band_lo.min())] * n, [float(band_hi.max())] * n)
        return cls("minmax_band", band_lo.astype(float).tolist(), band_hi.astype(float).tolist())

    @property
    def bands(self) -> int:
        return len(self.lo)

    def _arrays(self, ndim: int) -> tuple[np.ndarray, np.ndarray]:
        if self.method == "minmax_scene":
            raise ConfigError(
                "scaling minmax_scene (the model was trained on cubes each scaled by its own "
                "min and max) has no fixed range to apply: scale each cube by its own range "
                "(Scaling.of_cube(cube, source))"
            )
        shape = (-1,) + (1,) * (ndim - 1)
        lo = np.asarray(self.lo, dtype=np.float32).reshape(shape)
        span = (np.asarray(self.hi, dtype=np.float32) - np.asarray(self.lo, np.float32)).reshape(
            shape
        )
        return lo, span

    def apply(self, x: np.ndarray) -> np.ndarray:
        """Raw ``(bands, ...)`` values to the [0, 1] scale the model works on."""
        if self.method != "minmax_scene" and x.shape[0] != self.bands:
            raise DataError(
                f"the scaling was fitted on {self.bands} bands, the data has {x.shape[0]}"
            )
        lo, span = self._arrays(x.ndim)
        return ((np.asarray(x, dtype=np.float32) - lo) / span).astype(np.float32)

    def invert(self, y: np.ndarray) -> np.ndarray:
        """[0, 1]-scale values back to the data's own units."""
        lo, span = self._arrays(y.ndim)
        return (np.asarray(y, dtype=np.float32) * span + lo).astype(np.float32)

    def check_range(self, scaled: np.ndarray, source: str) -> None:
        """Refuse data that, once scaled, mostly fall far outside [0, 1] (other units)."""
        finite = scaled[np.isfinite(scaled)]
        if finite.size == 0:
            return
        outside = float(np.mean((finite < -_RANGE_SLACK) | (finite > 1 + _RANGE_SLACK)))
        if outside > _RANGE_TOLERANCE:
            raise DataError(
                f"{source}: {outside:.0%} of the values fall far outside the range the model "
                f"was trained on (scaled {float(finite.min()):.3g}..{float(finite.max()):.3g}, "
                "expected about 0..1); the data are not scaled as the model expects (other "
                "units, e.g. reflectance x 10000 vs radiance?); use data from the same sensor "
                "and product as the training data"
            )

    def state_dict(self) -> dict[str, Any]:
        return {"method": self.method, "lo": list(self.lo), "hi": list(self.hi)}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> Scaling:
        lo, hi = state["lo"], state["hi"]
        return cls(state["method"], [float(v) for v in lo], [float(v) for v in hi])
