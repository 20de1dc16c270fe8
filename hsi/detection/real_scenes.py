"""The real small-target scenes with pixel-level target maps, read from a local folder.

ABU (Airport-Beach-Urban; Kang et al., "Hyperspectral anomaly detection with attribute and
edge-preserving filters", IEEE TGRS 2017; AVIRIS and ROSIS), the AVIRIS San Diego airport
scene (planes) and the HYDICE urban scene (vehicles), as the anomaly/target-detection
literature distributes them: one ``.mat`` per scene with ``data`` (H×W×B) and ``map``
(H×W, 1 on target pixels). Nothing is downloaded: the files are found under ``root``, else
``$HSI_DATA/target_detection``, and their sha256 is checked against this manifest.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hsi.data.cube import SpectralCube
from hsi.data.readers import read_cube, read_labels
from hsi.errors import DataError

FOLDER = "target_detection"

# name -> (file, sha256, (height, width, bands)); the shapes and checksums are those of the
# files in the OT-AD repository snapshot (github jiojio0505/OT-AD @dd4a580).
SCENES: dict[str, tuple[str, str, tuple[int, int, int]]] = {
    "abu_airport_1": (
        "abu-airport-1.mat",
        "5de3c0b74593552e21e88ee280d02c4acae60bd48a013d72bd28ef63815485f5",
        (100, 100, 205),
    ),  # noqa: E501
    "abu_airport_2": (
        "abu-airport-2.mat",
        "7121476e700001e76191d6ee6bc6f2d5f680c0fe49186b61a57f10fcac7718b9",
        (100, 100, 205),
    ),  # noqa: E501
    "abu_airport_3": (
        "abu-airport-3.mat",
        "97b574be2de8c1ae3158b60b4aa34676c59a218398fc096c0dcdf125a6c74495",
        (100, 100, 205),
    ),  # noqa: E501
    "abu_airport_4": (
        "abu-airport-4.mat",
        "c10cb987f0a75ad5834da2be35e2cfe740660fd9094521dd6d047de535a2a72b",
        (100, 100, 191),
    ),  # noqa: E501
    "abu_beach_1": (
        "abu-beach-1.mat",
        "b1fa88474fbc06f2e654e4452d8f7f98757c199197e2b7fec1977a5c5753fcb0",
        (150, 150, 188),
    ),  # noqa: E501
    "abu_beach_2": (
        "abu-beach-2.mat",
        "3ec5f0c5c36b2f98a41f9d9e69946e9f3e6fdbeee0f42b3e402485a4efd9bb80",
        (100, 100, 193),
    ),  # noqa: E501
    "abu_beach_3": (
        "abu-beach-3.mat",
        "56622ebe89aa1a37aced4b41286eb0a045677553f637c63f90c8222f1027f576",
        (100, 100, 188),
    ),  # noqa: E501
    "abu_urban_1": (
        "abu-urban-1.mat",
        "951d8d9c405d7ae200634dfd5244586545c01a561b1028f0e65e09e562523942",
        (100, 100, 204),
    ),  # noqa: E501
    "abu_urban_2": (
        "abu-urban-2.mat",
        "ed900cbde844582dd51943f920eac47c3a4e7f4cf3e0ae7612fdfb80b7ee7807",
        (100, 100, 207),
    ),  # noqa: E501
    "abu_urban_3": (
        "abu-urban-3.mat",
        "a4e4ef3c512b72510f5852300a5050e9e544f80abb021d79ee04921c2070598b",
        (100, 100, 191),
    ),  # noqa: E501
    "abu_urban_4": (
        "abu-urban-4.mat",
        "6d6b81c9688f883a9ca59ff99ebc8053c5be1a14099960c460ba420d8507e676",
        (100, 100, 205),
    ),  # noqa: E501
    "abu_urban_5": (
        "abu-urban-5.mat",
        "16a50cfca9d6c4783adfd663e9d1e5e948ddaad950912b58577a604c86eb64c5",
        (100, 100, 205),
    ),  # noqa: E501
    "san_diego": (
        "sandiego.mat",
        "6830b031438366acbcf3d20f35a5589f969783471a6fd987b792954c51283b01",
        (100, 100, 189),
    ),  # noqa: E501
    "hydice_urban": (
        "hydice.mat",
        "095875682b1f5da092c64ebf4b40493d4d9071aa6a7856c8821cc986051422c7",
        (80, 100, 162),
    ),  # noqa: E501
}


@dataclass
class TargetScene:
    """A real scene: its cube (bands × H × W) and its H×W target map (0 background)."""

    name: str
    cube: SpectralCube
    target_map: np.ndarray


def list_target_scenes() -> list[str]:
    return sorted(SCENES)


def scenes_root(root: str | os.PathLike | None = None) -> Path:
    """The folder holding the scene files: ``root``, else ``$HSI_DATA/target_detection``."""
    if root is not None:
        return Path(root)
    env = os.environ.get("HSI_DATA")
    if env:
        return Path(env) / FOLDER
    raise DataError(
        "no folder for the target scenes: pass root=... or set HSI_DATA to the folder that "
        f"holds {FOLDER}/"
    )


def load_target_scene(
    name: str, root: str | os.PathLike | None = None, verify: bool = True
) -> TargetScene:
    """Read one scene by name (``list_target_scenes()``), checking its sha256 by default."""
    key = name.lower().replace("-", "_")
    if key not in SCENES:
        raise DataError(f"unknown target scene {name!r}; known: {', '.join(list_target_scenes())}")
    filename, sha256, shape = SCENES[key]
    path = scenes_root(root) / filename
    if not path.is_file():
        raise DataError(f"{path} not found: put {filename} in {path.parent} (no download)")
    if verify:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != sha256:
            raise DataError(f"{path}: sha256 {digest} is not the manifest's {sha256}")
    cube = read_cube(path, variable="data", layout="hwb")
    target_map = read_labels(path, variable="map")
    if (cube.data.shape[1], cube.data.shape[2], cube.data.shape[0]) != shape:
        raise DataError(f"{path}: cube shape {cube.data.shape} (bands first), expected {shape}")
    if target_map.shape != shape[:2]:
        raise DataError(f"{path}: target map {target_map.shape} for an image of {shape[:2]}")
    return TargetScene(key, cube, target_map)
