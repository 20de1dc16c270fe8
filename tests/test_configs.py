"""Every shipped config parses against the current classes (no stale or misspelt keys)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from hsi.cli import main

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").rglob("*.yaml"))


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_config_parses(config: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["fit", "--config", str(config), "--print_config"])
    assert exc.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    data = printed["data"]["init_args"]
    assert data["protocol"] in ("random", "disjoint")
    # the papers' protocol is only ever used by a config that says "paper" in its name
    assert (data["protocol"] == "random" or data["pca_fit"] == "image") == ("paper" in config.stem)


def test_there_are_configs() -> None:
    assert len(CONFIGS) >= 6
