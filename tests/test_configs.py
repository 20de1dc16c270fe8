"""Every shipped config parses against the current classes (no stale or misspelt keys)."""

from __future__ import annotations

import re
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
    if printed["data"]["class_path"].endswith("RestorationDataModule"):
        _check_restoration(config, printed)
        return
    if printed["data"]["class_path"].endswith("ReducedImageDataModule"):
        # diffusion prior: selected on the held-out DDPM loss; model and data agree on k
        assert printed["model"]["class_path"] == "hsi.diffusion.prior.DiffusionPriorTask"
        assert printed["checkpoint"]["monitor"] == "val/loss"
        assert printed["checkpoint"]["mode"] == "min"
        assert printed["model"]["init_args"]["k"] == data["k"]
        assert 0 < data["val_fraction"] < 1
        return
    if printed["data"]["class_path"].endswith("DetectionDataModule"):
        # detection: best epoch on validation point AP, tested on a separate (disjoint) set
        assert printed["model"]["class_path"] == "hsi.tasks.DetectionTask"
        assert printed["checkpoint"]["monitor"] == "val/point_AP"
        assert data["val"] > 0
        if data.get("dataset"):
            # a registered benchmark: its card's own test split, never test_root
            from hsi.data.registry import get_card

            card = get_card(data["dataset"])
            assert card.kind == "detection" and data["test_root"] is None
            assert {"train", "test"} <= set(card.form().splits)
        else:
            assert data["test_root"] and data["test_root"] != data["root"]
        return
    assert data["protocol"] in ("random", "disjoint")
    # the papers' protocol is only ever used by a config that says "paper" in its name
    assert (data["protocol"] == "random" or data["pca_fit"] == "image") == ("paper" in config.stem)


def _check_restoration(config: Path, printed: dict) -> None:
    """A restoration config trains the setting its name says, selects on validation MPSNR
    and holds out evaluation data."""
    from hsi.data.degradations import build_degradation
    from hsi.models.registry import get_model_class

    data, model = printed["data"]["init_args"], printed["model"]["init_args"]
    assert printed["model"]["class_path"] == "hsi.tasks.RestorationTask"
    # training-free restorers (HIR-Diff, DDS2M) are only tested: no loss is ever minimised
    training_free = getattr(get_model_class(model["model"]), "training_free", False)
    assert printed["checkpoint"]["monitor"] == "val/MPSNR"
    assert printed["checkpoint"]["mode"] == "max"
    assert model["loss"] in ("l1", "l2")
    assert data["holdout"] in ("regions", "scenes", "collection")
    deg = build_degradation(data["degradation"])
    assert data["crop_size"] % deg.scale == 0
    stem = config.stem
    if data["holdout"] == "collection":
        # a collection tests on its card's list for the noise: complex list for complex noise
        assert data["test_list"] == ("complex" if stem.endswith("_complex") else "gaussian")
    if training_free:
        # the name says the problem; the step budget is written out, not left to a default
        assert stem.startswith("sr_" if deg.scale > 1 else "denoise_")
        assert int(model["model_kwargs"]["steps"]) >= 1
    if m := re.search(r"gaussian(\d+)$", stem):
        assert deg.spec() == {"name": "gaussian", "sigma": float(m[1])}
    elif stem.endswith("_blind"):
        assert deg.name == "blind_gaussian"
    elif stem.endswith("_complex"):
        assert deg.name == "complex"
    elif m := re.search(r"_x(\d+)$", stem):
        assert deg.scale == int(m[1]) and (training_free or model["loss"] == "l1")
    else:
        raise AssertionError(f"{config.name}: name does not say the restoration setting")


def test_there_are_configs() -> None:
    assert len(CONFIGS) >= 6
