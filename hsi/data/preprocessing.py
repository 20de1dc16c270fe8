"""Spectral preprocessing fitted on training pixels: per-band standardisation and PCA.

The fitted state is plain arrays (:meth:`Preprocessor.state_dict`), stored in every
checkpoint, so a trained model is applied to a new scene with the statistics of its
training data, never with statistics of the scene itself.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from hsi.errors import ConfigError, DataError

FitOn = Literal["train", "image"]


class Preprocessor:
    """Per-band z-score followed by an optional PCA (optionally whitened).

    Args:
        pca_components: number of principal components to keep (``None``: keep bands).
        whiten: scale each component to unit variance (HybridSN's reference code does).
        standardize: z-score each band before PCA.
    """

    def __init__(
        self, pca_components: int | None = None, whiten: bool = True, standardize: bool = True
    ) -> None:
        self.pca_components = pca_components
        self.whiten = whiten
        self.standardize = standardize
        self.in_bands: int | None = None
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None
        self.components: np.ndarray | None = None  # (k, bands)
        self.scale: np.ndarray | None = None  # (k,)
        self.fit_on: str | None = None

    @property
    def fitted(self) -> bool:
        return self.mean is not None

    @property
    def out_bands(self) -> int:
        if self.pca_components:
            return self.pca_components
        if self.in_bands is None:
            raise RuntimeError("out_bands is known after fit()")
        return self.in_bands

    def fit(self, pixels: np.ndarray, fit_on: str = "train") -> Preprocessor:
        """Fit on ``pixels`` of shape ``(n, bands)`` (the training pixels, normally)."""
        pixels = np.asarray(pixels, dtype=np.float64)
        if pixels.ndim != 2 or len(pixels) < 2:
            raise DataError(f"need at least 2 pixels to fit preprocessing, got {pixels.shape}")
        if not np.isfinite(pixels).all():
            raise DataError("training pixels contain NaN/inf; mark them as no-data before fitting")
        n, bands = pixels.shape
        if self.pca_components is not None and not 0 < self.pca_components <= bands:
            raise ConfigError(
                f"pca_components={self.pca_components} but the cube has {bands} bands; "
                f"choose 1..{bands} or null for no PCA"
            )
        self.in_bands = bands
        self.fit_on = fit_on
        self.mean = pixels.mean(axis=0)
        std = pixels.std(axis=0)
        self.std = np.where(std > 0, std, 1.0) if self.standardize else np.ones(bands)
        if not self.standardize:
            self.std = np.ones(bands)
        z = (pixels - self.mean) / self.std
        if self.pca_components:
            cov = z.T @ z / max(n - 1, 1)
            eigval, eigvec = np.linalg.eigh(cov)
            order = np.argsort(eigval)[::-1][: self.pca_components]
            vecs = eigvec[:, order].T
            # deterministic sign: the largest-magnitude loading of each component positive
            signs = np.sign(vecs[np.arange(len(vecs)), np.abs(vecs).argmax(axis=1)])
            self.components = vecs * signs[:, None]
            var = np.clip(eigval[order], 1e-12, None)
            self.scale = 1.0 / np.sqrt(var) if self.whiten else np.ones_like(var)
        return self

    def transform_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """Apply to ``(n, bands)`` pixels; returns ``(n, out_bands)`` float32."""
        if not self.fitted:
            raise RuntimeError("Preprocessor.transform called before fit()")
        if pixels.shape[-1] != self.in_bands:
            raise DataError(
                f"the data has {pixels.shape[-1]} bands but the model was trained on "
                f"{self.in_bands}; use a scene from the same sensor and band selection"
            )
        z = (np.asarray(pixels, dtype=np.float64) - self.mean) / self.std
        if self.components is not None:
            z = (z @ self.components.T) * self.scale
        return z.astype(np.float32)

    def transform_cube(self, data: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
        """Apply to a ``(bands, H, W)`` array; no-data pixels become 0 (the training mean)."""
        bands, height, width = data.shape
        out = self.transform_pixels(data.reshape(bands, -1).T).T.reshape(-1, height, width)
        if valid is not None:
            out[:, ~valid] = 0.0
        return np.ascontiguousarray(out)

    def state_dict(self) -> dict[str, Any]:
        """JSON/pickle-friendly fitted state (lists, not arrays), for checkpoints."""

        def tolist(a: np.ndarray | None) -> list | None:
            return None if a is None else np.asarray(a).tolist()

        return {
            "pca_components": self.pca_components,
            "whiten": self.whiten,
            "standardize": self.standardize,
            "in_bands": self.in_bands,
            "fit_on": self.fit_on,
            "mean": tolist(self.mean),
            "std": tolist(self.std),
            "components": tolist(self.components),
            "scale": tolist(self.scale),
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> Preprocessor:
        pre = cls(state["pca_components"], state["whiten"], state["standardize"])
        pre.in_bands = state["in_bands"]
        pre.fit_on = state["fit_on"]
        for key in ("mean", "std", "components", "scale"):
            value = state.get(key)
            setattr(pre, key, None if value is None else np.asarray(value, dtype=np.float64))
        return pre
