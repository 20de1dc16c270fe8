"""pyproject.toml lists hsi's packages by name (the dataset cards and checkpoints are mapped in
from folders outside hsi/), so a new subpackage that is not listed would be missing from a
built wheel while every test of an editable install still passes."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_every_subpackage_of_hsi_is_listed_in_pyproject():
    tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from 3.11")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = set(config["tool"]["setuptools"]["packages"])
    inits = (ROOT / "hsi").rglob("__init__.py")
    found = {".".join(init.parent.relative_to(ROOT).parts) for init in inits}
    assert "hsi.data.readers" in found
    assert found - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"
