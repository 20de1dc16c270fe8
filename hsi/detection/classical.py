"""Classical (non-learned) hyperspectral detectors on pixel spectra.

All four detectors score every pixel from second-order background statistics estimated on
the scene itself, the way the target-detection literature evaluates them:

- **RX** (Reed & Yu, IEEE TASSP 1990): Mahalanobis distance to the background mean; needs
  no target spectrum (the anomaly-detection baseline of the ABU scenes).
- **CEM**, constrained energy minimisation (Harsanyi 1993; Chang, *Hyperspectral Imaging*,
  2003): the FIR filter ``w = R⁻¹d / (dᵀR⁻¹d)`` that passes the target ``d`` with unit gain
  and minimises output energy, with ``R`` the sample *correlation* matrix (no mean removed).
- **AMF**, adaptive matched filter (Robey et al., IEEE TAES 1992; Manolakis & Shaw, IEEE
  SPM 2002): ``(d-μ)ᵀΣ⁻¹(x-μ) / (d-μ)ᵀΣ⁻¹(d-μ)`` with mean ``μ`` and covariance ``Σ``.
- **ACE**, adaptive coherence/cosine estimator (Kraut & Scharf, IEEE TSP 1999): the squared
  cosine between whitened target and pixel, ``((d-μ)ᵀΣ⁻¹(x-μ))² / ((d-μ)ᵀΣ⁻¹(d-μ)·(x-μ)ᵀΣ⁻¹(x-μ))``,
  invariant to the pixel's scale.

Statistics use float64 and a small diagonal loading (``loading`` × mean eigenvalue) because
neighbouring bands are nearly collinear and integer-coded scenes make ``Σ`` singular.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hsi.data.cube import SpectralCube
from hsi.errors import DataError

CubeLike = SpectralCube | np.ndarray


@dataclass(frozen=True)
class BackgroundStats:
    """Mean, inverse covariance and inverse correlation of a scene's background pixels."""

    mean: np.ndarray  # (bands,)
    cov_inv: np.ndarray  # (bands, bands)
    corr_inv: np.ndarray  # (bands, bands)

    @property
    def bands(self) -> int:
        return int(self.mean.shape[0])


def pixels_of(cube: CubeLike) -> tuple[np.ndarray, tuple[int, int], np.ndarray]:
    """Pixels as a float64 (N, bands) matrix, the image shape, and the valid-pixel mask.

    No-data pixels (the cube's mask) are excluded from statistics and scored NaN; NaN or
    infinite values elsewhere are refused, since one NaN would poison every score.
    """
    if isinstance(cube, SpectralCube):
        data, valid = cube.data, cube.valid_mask
        source = cube.source
    else:
        data, valid, source = np.asarray(cube), None, "<array>"
        if data.ndim != 3:
            raise DataError(f"{source}: a cube must be (bands, height, width), got {data.shape}")
        valid = np.ones(data.shape[1:], dtype=bool)
    bands, height, width = data.shape
    if height * width == 0 or bands == 0:
        raise DataError(f"{source}: the cube is empty (shape {data.shape})")
    x = np.asarray(data, dtype=np.float64).reshape(bands, -1).T
    flat_valid = valid.reshape(-1)
    if not np.isfinite(x[flat_valid]).all():
        raise DataError(
            f"{source}: the cube has NaN or infinite values outside its no-data mask; "
            "mask them as no-data or fill them before detection"
        )
    return x, (height, width), flat_valid


def _loaded_inverse(matrix: np.ndarray, loading: float) -> np.ndarray:
    bands = matrix.shape[0]
    ridge = loading * float(np.trace(matrix)) / bands
    return np.linalg.inv(matrix + ridge * np.eye(bands))


def background_stats(
    cube: CubeLike, exclude: np.ndarray | None = None, loading: float = 1e-6
) -> BackgroundStats:
    """Estimate background statistics from every valid pixel not in ``exclude`` (H×W bool).

    Excluding known targets gives the "clean background" variant; the default (all pixels)
    is what a detector sees in practice, where the targets are unknown.
    """
    x, shape, valid = pixels_of(cube)
    keep = valid.copy()
    if exclude is not None:
        if exclude.shape != shape:
            raise DataError(f"exclude mask is {exclude.shape}, the image is {shape}")
        keep &= ~exclude.reshape(-1)
    bg = x[keep]
    if len(bg) <= x.shape[1]:
        raise DataError(
            f"{len(bg)} valid background pixels cannot estimate a {x.shape[1]}-band "
            "covariance; use a larger scene or fewer bands"
        )
    mean = bg.mean(axis=0)
    centred = bg - mean
    cov = centred.T @ centred / (len(bg) - 1)
    corr = bg.T @ bg / len(bg)
    return BackgroundStats(mean, _loaded_inverse(cov, loading), _loaded_inverse(corr, loading))


class StatsAccumulator:
    """Background statistics accumulated window by window, for scenes larger than memory.

    Sums of pixels and of their outer products (float64) over valid pixels; ``finish``
    gives the same :class:`BackgroundStats` as :func:`background_stats` on the whole scene.
    """

    def __init__(self, bands: int) -> None:
        self.n = 0
        self.total = np.zeros(bands)
        self.outer = np.zeros((bands, bands))

    def add(self, cube: CubeLike) -> None:
        x, _, valid = pixels_of(cube)
        x = x[valid]
        if x.shape[1] != self.total.shape[0]:
            raise DataError(f"a window has {x.shape[1]} bands, expected {self.total.shape[0]}")
        self.n += len(x)
        self.total += x.sum(axis=0)
        self.outer += x.T @ x

    def finish(self, loading: float = 1e-6) -> BackgroundStats:
        bands = self.total.shape[0]
        if self.n <= bands:
            raise DataError(
                f"{self.n} valid background pixels cannot estimate a {bands}-band covariance; "
                "use a larger scene or fewer bands"
            )
        mean = self.total / self.n
        cov = (self.outer - self.n * np.outer(mean, mean)) / (self.n - 1)
        corr = self.outer / self.n
        return BackgroundStats(mean, _loaded_inverse(cov, loading), _loaded_inverse(corr, loading))


def _target(signature: np.ndarray, stats: BackgroundStats) -> np.ndarray:
    d = np.asarray(signature, dtype=np.float64).reshape(-1)
    if d.shape[0] != stats.bands:
        raise DataError(
            f"the target signature has {d.shape[0]} bands, the scene {stats.bands}; "
            "resample it with hsi.detection.match_signature"
        )
    if not np.isfinite(d).all():
        raise DataError("the target signature has NaN or infinite values")
    return d


def _scores(values: np.ndarray, shape: tuple[int, int], valid: np.ndarray) -> np.ndarray:
    out = np.full(valid.shape, np.nan)
    out[valid] = values[valid]
    return out.reshape(shape)


def rx(cube: CubeLike, stats: BackgroundStats | None = None) -> np.ndarray:
    """Reed-Xiaoli anomaly score (H×W): Mahalanobis distance to the background mean."""
    x, shape, valid = pixels_of(cube)
    stats = stats or background_stats(cube)
    c = x - stats.mean
    return _scores(np.einsum("nb,bc,nc->n", c, stats.cov_inv, c), shape, valid)


def cem(cube: CubeLike, signature: np.ndarray, stats: BackgroundStats | None = None) -> np.ndarray:
    """Constrained energy minimisation output (H×W); 1 on a pure target spectrum."""
    x, shape, valid = pixels_of(cube)
    stats = stats or background_stats(cube)
    d = _target(signature, stats)
    w = stats.corr_inv @ d / (d @ stats.corr_inv @ d)
    return _scores(x @ w, shape, valid)


def adaptive_matched_filter(
    cube: CubeLike, signature: np.ndarray, stats: BackgroundStats | None = None
) -> np.ndarray:
    """Adaptive matched filter (H×W), normalised to 1 on the target spectrum."""
    x, shape, valid = pixels_of(cube)
    stats = stats or background_stats(cube)
    s = _target(signature, stats) - stats.mean
    w = stats.cov_inv @ s / (s @ stats.cov_inv @ s)
    return _scores((x - stats.mean) @ w, shape, valid)


def ace(cube: CubeLike, signature: np.ndarray, stats: BackgroundStats | None = None) -> np.ndarray:
    """Adaptive coherence estimator (H×W), in [0, 1]: squared whitened cosine to the target."""
    x, shape, valid = pixels_of(cube)
    stats = stats or background_stats(cube)
    s = _target(signature, stats) - stats.mean
    c = x - stats.mean
    ws = stats.cov_inv @ s
    num = (c @ ws) ** 2
    den = (s @ ws) * np.einsum("nb,bc,nc->n", c, stats.cov_inv, c)
    return _scores(num / np.maximum(den, np.finfo(np.float64).tiny), shape, valid)
