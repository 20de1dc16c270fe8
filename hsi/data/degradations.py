"""Seeded, composable degradations of a clean cube, as the restoration papers simulate them.

Every degradation maps a clean ``(bands, H, W)`` float array scaled to ``[0, 1]`` to a degraded
copy, drawing all randomness from the ``numpy.random.Generator`` it is given, so the same
generator state always gives the same noise (the data module seeds one per crop and epoch).
Noise levels ``sigma`` are on the 0-255 scale the papers quote and are applied as
``sigma / 255`` to ``[0, 1]`` data.

Settings follow the training code of QRNN3D (Wei, Fu, Huang, "3-D Quasi-Recurrent Neural
Network for Hyperspectral Image Denoising", IEEE TNNLS 2020; github.com/Vandermode/QRNN3D,
``utility/dataset.py``), which HSDT (Lai, Yan, Fu, "Hybrid Spectral Denoising Transformer with
Guided Attention", ICCV 2023; github.com/Zeqiang-Lai/HSDT, ``train/utility/dataset.py``)
reuses unchanged:

========================  ================================================================
``gaussian``              i.i.d. Gaussian, one ``sigma`` (the papers' 10/30/50/70).
``blind_gaussian``        one ``sigma`` per sample drawn from ``sigmas`` (10, 30, 50, 70).
                          The reference cycles through the list; here it is drawn at random.
``noniid_gaussian``       every band its own ``sigma`` drawn from ``sigmas`` (ICVL case 1).
``stripe``                on ``fraction`` = 1/3 of the bands, ``floor(0.05 W)`` to
                          ``floor(0.15 W) - 1`` random columns each shifted by a value
                          uniform in [-0.25, 0.25] (subtracted, as the reference does).
``deadline``              on 1/3 of the bands, ``ceil(0.05 W)`` to ``ceil(0.15 W) - 1``
                          random columns set to 0.
``impulse``               on 1/3 of the bands, salt-and-pepper noise (half salt = 1, half
                          pepper = 0) hitting a fraction of pixels drawn from 0.1/0.3/0.5/0.7.
``case``                  QRNN3D's ICVL noise cases 1-5: non-i.i.d. Gaussian (sigmas 10-70)
                          alone (1), plus stripes (2), dead lines (3), impulse (4), or plus
                          stripes, dead lines and impulse on three disjoint thirds of the
                          bands (5, "mixture").
``complex``               the complex-noise training mix of QRNN3D/HSDT (``train_complex.py``):
                          non-i.i.d. Gaussian, then one of {nothing, impulse, stripe, deadline}
                          per sample (the reference cycles; here it is drawn at random).
``bicubic_down``          super-resolution: antialiased bicubic downsampling by ``scale``
                          (2/4/8), what MATLAB ``imresize(x, 1/scale)`` does and what HSI
                          super-resolution papers such as ESSAformer (Zhang et al., ICCV 2023)
                          use to make low-resolution inputs.
``gaussian_blur_down``    super-resolution: Gaussian blur (``blur_sigma`` pixels, default
                          ``scale / 2``) then decimation by ``scale`` (the "Wald protocol"
                          style; set ``blur_sigma`` to the value of the paper you compare with).
========================  ================================================================

Specs are plain dicts (``{"name": "gaussian", "sigma": 30}``) or short strings (``"gaussian30"``,
``"blind"``, ``"complex"``, ``"case5"``, ``"bicubic_x4"``), so a checkpoint can store the exact
degradation and :func:`build_degradation` rebuilds it. Several are composed with
``{"name": "compose", "steps": [...]}`` (e.g. downsampling then noise).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import numpy as np

from hsi.errors import ConfigError, DataError

__all__ = [
    "Degradation",
    "build_degradation",
    "degradation_names",
    "degradation_scale",
]

PAPER_SIGMAS = (10.0, 30.0, 50.0, 70.0)
IMPULSE_AMOUNTS = (0.1, 0.3, 0.5, 0.7)

_REGISTRY: dict[str, type[Degradation]] = {}


def _register(cls: type[Degradation]) -> type[Degradation]:
    _REGISTRY[cls.name] = cls
    return cls


def _check_cube(x: np.ndarray) -> np.ndarray:
    if x.ndim != 3:
        raise DataError(f"a degradation needs a (bands, H, W) cube, got shape {x.shape}")
    return np.array(x, dtype=np.float32, copy=True)


def _bands_subset(n_bands: int, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """``floor(fraction * B)`` distinct random bands (QRNN3D's AddNoiseMixed rule)."""
    return rng.permutation(n_bands)[: int(math.floor(fraction * n_bands))]


@dataclass(frozen=True)
class Degradation:
    """Base class: ``degraded = d(clean, rng)``; ``spec()`` rebuilds it via build_degradation."""

    name: ClassVar[str] = ""
    scale: ClassVar[int] = 1  # spatial downsampling factor (1: size unchanged)

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self.apply(_check_cube(x), rng)

    def apply(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def spec(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    def describe(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.spec().items() if k != "name")
        return f"{self.name}({args})"


# ---------------------------------------------------------------------------- noise


@_register
@dataclass(frozen=True)
class Gaussian(Degradation):
    """i.i.d. zero-mean Gaussian noise of std ``sigma / 255`` on every value."""

    name: ClassVar[str] = "gaussian"
    sigma: float = 30.0

    def __post_init__(self) -> None:
        if not self.sigma >= 0:
            raise ConfigError(f"gaussian noise needs sigma >= 0 (0-255 scale), got {self.sigma}")

    def apply(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return x + rng.standard_normal(x.shape, dtype=np.float32) * np.float32(self.sigma / 255)


def _sigmas(values: Sequence[float], what: str) -> tuple[float, ...]:
    out = tuple(float(v) for v in values)
    if not out or any(not v >= 0 for v in out):
        raise ConfigError(f"{what} needs a non-empty list of sigmas >= 0, got {list(values)}")
    return out


@_register
@dataclass(frozen=True)
class BlindGaussian(Degradation):
    """i.i.d. Gaussian noise whose sigma is drawn per sample from ``sigmas`` (blind setting)."""

    name: ClassVar[str] = "blind_gaussian"
    sigmas: tuple[float, ...] = PAPER_SIGMAS

    def __post_init__(self) -> None:
        object.__setattr__(self, "sigmas", _sigmas(self.sigmas, self.name))

    def apply(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        sigma = self.sigmas[int(rng.integers(len(self.sigmas)))]
        return x + rng.standard_normal(x.shape, dtype=np.float32) * np.float32(sigma / 255)


@_register
@dataclass(frozen=True)
class NoniidGaussian(Degradation):
    """Band-wise Gaussian noise: each band's sigma drawn from ``sigmas`` (QRNN3D case 1)."""

    name: ClassVar[str] = "noniid_gaussian"
    sigmas: tuple[float, ...] = PAPER_SIGMAS

    def __post_init__(self) -> None:
        object.__setattr__(self, "sigmas", _sigmas(self.sigmas, self.name))

    def apply(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        table = np.asarray(self.sigmas, dtype=np.float32) / 255
        band_sigma = table[rng.integers(len(table), size=x.shape[0])][:, None, None]
        return x + rng.standard_normal(x.shape, dtype=np.float32) * band_sigma


def _check_fraction(fraction: float, what: str) -> None:
    if not 0 < fraction <= 1:
        raise ConfigError(f"{what}: fraction of bands must be in (0, 1], got {fraction}")


def _check_amounts(lo: float, hi: float, what: str) -> None:
    if not 0 <= lo < hi <= 1:
        raise ConfigError(f"{what}: need 0 <= min_amount < max_amount <= 1, got {lo}, {hi}")


def _column_counts(
    lo: int, hi: int, n: int, rng: np.random.Generator, width: int, what: str
) -> np.ndarray:
    if hi <= lo:
        raise DataError(
            f"{what}: the image is only {width} pixels wide, too narrow for the column "
            f"fractions; use wider crops (at least ~20 pixels)"
        )
    return rng.integers(lo, hi, size=n)


@dataclass(frozen=True)
class _ColumnDegradation(Degradation):
    """Random columns of a subset of bands corrupted (stripes, dead lines).

    ``fraction`` of the bands are hit; each gets between ``min_amount`` and ``max_amount``
    of the image width as corrupted columns (rounded as the reference code rounds).
    """

    fraction: float = 1 / 3
    min_amount: float = 0.05
    max_amount: float = 0.15
    rounding: ClassVar[str] = "floor"

    def __post_init__(self) -> None:
        _check_fraction(self.fraction, self.name)
        _check_amounts(self.min_amount, self.max_amount, self.name)

    def apply(
        self, x: np.ndarray, rng: np.random.Generator, bands: np.ndarray | None = None
    ) -> np.ndarray:
        width = x.shape[2]
        bands = _bands_subset(x.shape[0], self.fraction, rng) if bands is None else bands
        rounded = getattr(math, self.rounding)
        lo, hi = rounded(self.min_amount * width), rounded(self.max_amount * width)
        counts = _column_counts(lo, hi, len(bands), rng, width, self.name)
        for b, n in zip(bands, counts, strict=True):
            self.corrupt(x[b], rng.permutation(width)[:n], rng)
        return x

    def corrupt(self, band: np.ndarray, cols: np.ndarray, rng: np.random.Generator) -> None:
        raise NotImplementedError  # pragma: no cover


@_register
@dataclass(frozen=True)
class Stripe(_ColumnDegradation):
    """Stripes: random columns of a subset of bands shifted by U(-0.25, 0.25)."""

    name: ClassVar[str] = "stripe"

    def corrupt(self, band: np.ndarray, cols: np.ndarray, rng: np.random.Generator) -> None:
        shift = (rng.uniform(0, 1, size=len(cols)) * 0.5 - 0.25).astype(np.float32)
        band[:, cols] -= shift[None, :]


@_register
@dataclass(frozen=True)
class Deadline(_ColumnDegradation):
    """Dead lines: random columns of a subset of bands set to 0."""

    name: ClassVar[str] = "deadline"
    rounding: ClassVar[str] = "ceil"

    def corrupt(self, band: np.ndarray, cols: np.ndarray, rng: np.random.Generator) -> None:
        band[:, cols] = 0


@_register
@dataclass(frozen=True)
class Impulse(Degradation):
    """Salt-and-pepper noise on a subset of bands, each band's amount drawn from ``amounts``."""

    name: ClassVar[str] = "impulse"
    fraction: float = 1 / 3
    amounts: tuple[float, ...] = IMPULSE_AMOUNTS
    salt_vs_pepper: float = 0.5

    def __post_init__(self) -> None:
        _check_fraction(self.fraction, self.name)
        amounts = tuple(float(a) for a in self.amounts)
        if not amounts or any(not 0 <= a <= 1 for a in amounts):
            raise ConfigError(f"impulse amounts must lie in [0, 1], got {list(self.amounts)}")
        if not 0 <= self.salt_vs_pepper <= 1:
            raise ConfigError(
                f"impulse salt_vs_pepper must be in [0, 1], got {self.salt_vs_pepper}"
            )
        object.__setattr__(self, "amounts", amounts)

    def apply(
        self, x: np.ndarray, rng: np.random.Generator, bands: np.ndarray | None = None
    ) -> np.ndarray:
        bands = _bands_subset(x.shape[0], self.fraction, rng) if bands is None else bands
        amounts = np.asarray(self.amounts)[rng.integers(len(self.amounts), size=len(bands))]
        for b, amount in zip(bands, amounts, strict=True):
            hit = rng.random(x.shape[1:]) < amount
            salt = rng.random(x.shape[1:]) < self.salt_vs_pepper
            x[b][hit & salt] = 1
            x[b][hit & ~salt] = 0
        return x


_CASE_NAMES = {1: "non-i.i.d.", 2: "stripe", 3: "deadline", 4: "impulse", 5: "mixture"}


@_register
@dataclass(frozen=True)
class NoiseCase(Degradation):
    """QRNN3D's ICVL complex-noise cases 1-5 (non-i.i.d. Gaussian plus structured noise).

    Case 5 puts stripes, dead lines and impulse on three disjoint thirds of the bands
    (QRNN3D's ``AddNoiseComplex``); cases 2-4 put one kind on a third of the bands.
    """

    name: ClassVar[str] = "case"
    case: int = 5
    sigmas: tuple[float, ...] = PAPER_SIGMAS

    def __post_init__(self) -> None:
        if self.case not in _CASE_NAMES:
            raise ConfigError(f"noise case must be 1-5 (QRNN3D's ICVL cases), got {self.case}")
        object.__setattr__(self, "sigmas", _sigmas(self.sigmas, self.name))

    def apply(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        x = NoniidGaussian(self.sigmas).apply(x, rng)
        if self.case == 1:
            return x
        if self.case < 5:
            kind = {2: Stripe(), 3: Deadline(), 4: Impulse()}[self.case]
            return kind.apply(x, rng)
        order = rng.permutation(x.shape[0])
        third = x.shape[0] // 3
        for i, kind in enumerate((Stripe(), Deadline(), Impulse())):
            kind.apply(x, rng, bands=order[i * third : (i + 1) * third])
        return x


@_register
@dataclass(frozen=True)
class Complex(Degradation):
    """QRNN3D/HSDT complex-noise training: non-i.i.d. Gaussian, then one of nothing,
    impulse, stripe or deadline."""

    name: ClassVar[str] = "complex"
    sigmas: tuple[float, ...] = PAPER_SIGMAS

    def __post_init__(self) -> None:
        object.__setattr__(self, "sigmas", _sigmas(self.sigmas, self.name))

    def apply(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        x = NoniidGaussian(self.sigmas).apply(x, rng)
        choice = int(rng.integers(4))
        if choice == 0:
            return x
        return (Impulse(), Stripe(), Deadline())[choice - 1].apply(x, rng)


# ---------------------------------------------------------------------------- resolution


def _check_scale(scale: int, what: str) -> None:
    if not isinstance(scale, int) or scale < 2:
        raise ConfigError(f"{what}: scale must be an integer >= 2 (2, 4 or 8), got {scale!r}")


def _check_divisible(x: np.ndarray, scale: int, what: str) -> None:
    h, w = x.shape[1:]
    if h % scale or w % scale:
        raise DataError(
            f"{what}: a {h}x{w} image does not divide by scale {scale}; crop it to a multiple "
            f"of {scale} first"
        )


@dataclass(frozen=True)
class _Downsample(Degradation):
    """A spatial downsampling by the integer ``factor`` (the degradation's ``scale``)."""

    factor: int = 4

    def __post_init__(self) -> None:
        _check_scale(self.factor, self.name)

    @property
    def scale(self) -> int:  # type: ignore[override]
        return self.factor


@_register
@dataclass(frozen=True)
class BicubicDown(_Downsample):
    """Antialiased bicubic downsampling by ``scale`` (like MATLAB ``imresize``)."""

    name: ClassVar[str] = "bicubic_down"

    def apply(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        import torch
        import torch.nn.functional as F

        _check_divisible(x, self.factor, self.name)
        t = torch.from_numpy(x)[None]
        out = F.interpolate(
            t, scale_factor=1 / self.factor, mode="bicubic", antialias=True, align_corners=False
        )
        return out[0].numpy().astype(np.float32)


@_register
@dataclass(frozen=True)
class GaussianBlurDown(_Downsample):
    """Gaussian blur (std ``blur_sigma`` px, default ``factor / 2``), then keep every
    ``factor``-th pixel starting at ``factor // 2`` (the centre of each block)."""

    name: ClassVar[str] = "gaussian_blur_down"
    blur_sigma: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.blur_sigma is not None and not self.blur_sigma > 0:
            raise ConfigError(f"{self.name}: blur_sigma must be > 0, got {self.blur_sigma}")

    def apply(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        from scipy.ndimage import gaussian_filter

        _check_divisible(x, self.factor, self.name)
        sigma = self.blur_sigma if self.blur_sigma is not None else self.factor / 2
        blurred = gaussian_filter(x, sigma=(0, sigma, sigma), mode="reflect")
        s = self.factor
        return np.ascontiguousarray(blurred[:, s // 2 :: s, s // 2 :: s], dtype=np.float32)


@_register
@dataclass(frozen=True)
class BlockMeanDown(_Downsample):
    """Mean of each ``factor`` x ``factor`` block: the operator the diffusion restorers
    (HIR-Diff, DDS2M in :mod:`hsi.diffusion.operators`) invert in closed form, so their SR
    data term matches the data exactly (with ``bicubic_x`` data it is slightly mismatched)."""

    name: ClassVar[str] = "block_mean_down"

    def apply(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        _check_divisible(x, self.factor, self.name)
        c, h, w = x.shape
        s = self.factor
        blocks = np.asarray(x, dtype=np.float64).reshape(c, h // s, s, w // s, s)
        return blocks.mean(axis=(2, 4)).astype(np.float32)


# ---------------------------------------------------------------------------- composition


@dataclass(frozen=True)
class Compose(Degradation):
    """Apply ``steps`` in order with one generator (e.g. downsample, then add noise)."""

    name: ClassVar[str] = "compose"
    steps: tuple[Degradation, ...] = field(default_factory=tuple)

    @property
    def scale(self) -> int:  # type: ignore[override]
        return math.prod(s.scale for s in self.steps)

    def apply(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        for step in self.steps:
            x = step.apply(x, rng)
        return x

    def spec(self) -> dict[str, Any]:
        return {"name": self.name, "steps": [s.spec() for s in self.steps]}


_SHORT: list[tuple[str, Callable[[re.Match[str]], dict[str, Any]]]] = [
    (r"gaussian(\d+(?:\.\d+)?)", lambda m: {"name": "gaussian", "sigma": float(m[1])}),
    (r"blind(?:_gaussian)?", lambda m: {"name": "blind_gaussian"}),
    (r"noniid(?:_gaussian)?", lambda m: {"name": "noniid_gaussian"}),
    (r"case([1-5])", lambda m: {"name": "case", "case": int(m[1])}),
    (r"mixture", lambda m: {"name": "case", "case": 5}),
    (r"bicubic_x(\d+)", lambda m: {"name": "bicubic_down", "factor": int(m[1])}),
    (r"gaussian_blur_x(\d+)", lambda m: {"name": "gaussian_blur_down", "factor": int(m[1])}),
    (r"block_mean_x(\d+)", lambda m: {"name": "block_mean_down", "factor": int(m[1])}),
]


def degradation_names() -> list[str]:
    """Registered degradation names (plus ``compose``)."""
    return sorted([*_REGISTRY, "compose"])


def build_degradation(spec: str | dict[str, Any] | Degradation) -> Degradation:
    """A degradation from a spec dict, a short string (``gaussian30``, ``blind``, ``complex``,
    ``case1``..``case5``, ``bicubic_x4``, ``block_mean_x4``) or a Degradation (returned as
    is)."""
    if isinstance(spec, Degradation):
        return spec
    if isinstance(spec, str):
        key = spec.strip().lower()
        for pattern, make in _SHORT:
            m = re.fullmatch(pattern, key)
            if m:
                return build_degradation(make(m))
        spec = {"name": key}
    if not isinstance(spec, dict) or "name" not in spec:
        raise ConfigError(
            f"a degradation is a name or a dict with 'name', got {spec!r}; known: "
            f"{', '.join(degradation_names())}"
        )
    args = {k: v for k, v in spec.items() if k != "name"}
    name = str(spec["name"]).lower()
    if name == "compose":
        steps = args.pop("steps", None)
        if not isinstance(steps, (list, tuple)) or not steps or args:
            raise ConfigError("compose takes one key besides name: a non-empty 'steps' list")
        return Compose(tuple(build_degradation(s) for s in steps))
    if name not in _REGISTRY:
        raise ConfigError(
            f"unknown degradation {spec['name']!r}; known: {', '.join(degradation_names())} "
            "(or gaussian<sigma>, blind, case1..case5, bicubic_x<scale>)"
        )
    cls = _REGISTRY[name]
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(args) - known)
    if unknown:
        raise ConfigError(
            f"degradation {name!r} does not take {', '.join(unknown)}; it takes: "
            f"{', '.join(sorted(known)) or 'no arguments'}"
        )
    for key, value in list(args.items()):
        if isinstance(value, list):
            args[key] = tuple(value)
    try:
        return cls(**args)
    except TypeError as exc:  # a wrong type in a config value
        raise ConfigError(f"degradation {name!r}: {exc}") from None


def degradation_scale(spec: str | dict[str, Any] | Degradation) -> int:
    """Spatial downsampling factor of a degradation (1 for pure noise)."""
    return int(build_degradation(spec).scale)
