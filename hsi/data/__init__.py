"""The spectral-cube data layer: cube type, readers/writers, registry, protocols, patches.

The Lightning data module is imported lazily, so readers and the registry load without
importing Lightning (``hsi datasets list`` starts in a fraction of a second).
"""

from typing import Any

from hsi.data.cube import SpectralCube
from hsi.data.preprocessing import Preprocessor
from hsi.data.protocols import Split, disjoint_split, make_split, random_split

__all__ = [
    "HyperspectralPatchDataModule",
    "Preprocessor",
    "SpectralCube",
    "Split",
    "disjoint_split",
    "make_split",
    "random_split",
]


def __getattr__(name: str) -> Any:
    if name == "HyperspectralPatchDataModule":
        from hsi.data.datamodule import HyperspectralPatchDataModule

        return HyperspectralPatchDataModule
    raise AttributeError(f"module 'hsi.data' has no attribute {name!r}")
