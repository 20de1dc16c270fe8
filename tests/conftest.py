"""Shared fixtures: small generated scenes, and the real data under ../shared/data."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """Where the real scenes live: $HSI_SHARED_DATA, else ../shared/data beside the repo."""
    env = os.environ.get("HSI_SHARED_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


def real(relative: str) -> Path:
    """A file or folder under the real-data root; skips the test (with the reason) if absent."""
    path = shared_data_dir() / relative
    if not path.exists():
        pytest.skip(f"real data not found at {path}: set HSI_SHARED_DATA or add ../shared/data")
    return path


@pytest.fixture
def shared_data() -> Path:
    path = shared_data_dir()
    if not (path / "indian_pines" / "Indian_pines_corrected.mat").is_file():
        pytest.skip(f"real data not found at {path} (set HSI_SHARED_DATA to its folder)")
    return path


def make_scene(
    height: int = 40, width: int = 36, bands: int = 24, classes: int = 4, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """A learnable toy scene: classes are quadrant-like fields with distinct spectra.

    Returns ``cube`` as (H, W, B) float32 (the MATLAB layout) and ``labels`` (H, W) uint8,
    with a border of unlabelled pixels.
    """
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:height, 0:width]
    labels = (1 + (rows * 2 // height) * 2 + (cols * 2 // width)).astype(np.uint8)
    labels = np.where(labels > classes, classes, labels).astype(np.uint8)
    labels[:2] = 0
    signatures = rng.uniform(0.2, 1.0, size=(classes + 1, bands))
    cube = signatures[labels] + 0.05 * rng.standard_normal((height, width, bands))
    return cube.astype(np.float32), labels


@pytest.fixture
def one_thread():
    """Torch on one thread for the test, restored after: tiny tensors gain nothing from
    threads, and on a shared 2-core machine they cost a lot. Use it per module with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def dead_pid() -> int:
    """The pid of a process that has exited: the owner of a stale lock file."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid
