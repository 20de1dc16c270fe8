"""The spectral-cube data layer: cube type, readers/writers, registry, protocols, patches."""

from hsi.data.cube import SpectralCube
from hsi.data.datamodule import HyperspectralPatchDataModule
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
