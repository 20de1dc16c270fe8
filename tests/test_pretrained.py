"""Shipped pretrained weights: export/load round trip, the index's errors, create_model(
pretrained=...), ``hsi predict --ckpt <tag>``, and the shipped weights against their cards."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import rasterio
import torch
import yaml

import hsi
from hsi import pretrained
from hsi.data.cube import SpectralCube
from hsi.data.patches import pad_cube
from hsi.data.preprocessing import Preprocessor
from hsi.data.protocols import random_split
from hsi.data.writers import write_geotiff
from hsi.errors import ConfigError, DataError
from hsi.inference import classify_cube, scene_main
from hsi.pretrained.cli import main as pretrained_main
from hsi.tasks.classification import ClassificationTask

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "checkpoints"
BANDS, PCA, CLASSES, PATCH = 24, 16, 3, 9


# --------------------------------------------------------------------------------------
# a tiny trained-looking checkpoint, exported
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("pretrained")
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    task = ClassificationTask(
        model="hybridsn",
        model_kwargs={"dropout": 0.2},
        in_bands=PCA,
        num_classes=CLASSES,
        patch_size=PATCH,
    )
    task.preprocessing = Preprocessor(PCA).fit(rng.normal(size=(200, BANDS))).state_dict()
    task.data_description = {
        "dataset": "toy",
        "image_path": "/somewhere/local/toy.tif",
        "class_names": ["water", "forest", "urban"],
        "patch_size": PATCH,
        "pad_mode": "reflect",
        "wavelengths": np.linspace(400.0, 2400.0, BANDS).tolist(),
        "split_file": "splits/toy.json",
        "split": {"protocol": "disjoint", "counts": {"train": {"water": 3}}},
        "leaky": False,
    }
    ckpt = task.export_checkpoint(root / "tiny.ckpt")
    fp32 = pretrained.export_weights(ckpt, root / "tiny32.pt", dtype="float32", tag="toy")
    fp16 = pretrained.export_weights(ckpt, root / "tiny16.pt", dtype="float16", tag="toy")
    return {"root": root, "task": task, "ckpt": ckpt, "fp32": fp32, "fp16": fp16}


def _index(directory: Path, rows: list[dict]) -> None:
    (directory / "index.yaml").write_text(yaml.safe_dump({"format_version": 1, "weights": rows}))


def _row(path: Path, tag: str = "toy", model: str = "hybridsn") -> dict:
    return {
        "model": model,
        "tag": tag,
        "file": path.name,
        "sha256": pretrained.sha256_of(path),
        "dataset": "toy",
        "protocol": "disjoint",
        "leaky": False,
        "split_file": None,
        "metrics": {"OA": 50.0},
    }


def _plain_types_only(value: object) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain_types_only(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_plain_types_only(v) for v in value)
    return value is None or isinstance(value, (str, int, float, bool, torch.Tensor))


def test_export_round_trip_gives_identical_logits(tiny: dict) -> None:
    weights = pretrained.load_weights(tiny["fp32"])
    model = weights.build()
    assert not model.training
    x = torch.randn(5, PCA, PATCH, PATCH)
    with torch.no_grad():
        assert torch.equal(model(x), tiny["task"].net.eval()(x))
    assert weights.class_names == ["water", "forest", "urban"]
    assert weights.model_kwargs == {
        "dropout": 0.2,
        "in_bands": PCA,
        "num_classes": CLASSES,
        "patch_size": PATCH,
    }
    # the local data path is not shipped; preprocessing is, unchanged
    assert "image_path" not in weights.data
    assert weights.preprocessing == tiny["task"].preprocessing
    pre = weights.preprocessor()
    pixels = np.random.default_rng(1).normal(size=(4, BANDS))
    original = Preprocessor.from_state_dict(tiny["task"].preprocessing)
    np.testing.assert_array_equal(pre.transform_pixels(pixels), original.transform_pixels(pixels))


def test_fp16_weights_are_the_rounded_fp32_weights(tiny: dict) -> None:
    half = pretrained.load_weights(tiny["fp16"])
    assert half.dtype == "float16"
    assert all(t.dtype == torch.float16 for t in half.state_dict.values())
    model = half.build()
    assert all(p.dtype == torch.float32 for p in model.parameters())  # computes in fp32
    for name, param in tiny["task"].net.state_dict().items():
        torch.testing.assert_close(model.state_dict()[name], param.half().float(), rtol=0, atol=0)
    assert tiny["fp16"].stat().st_size < 0.6 * tiny["fp32"].stat().st_size


def test_weight_file_loads_with_weights_only_and_holds_plain_types(tiny: dict) -> None:
    payload = torch.load(tiny["fp16"], map_location="cpu", weights_only=True)
    assert payload["format"] == "hsi-pretrained" and payload["model"] == "hybridsn"
    assert _plain_types_only(payload)
    assert payload["data"]["split"]["counts"]["train"]["water"] == 3
    assert payload["source"]["checkpoint"] == "tiny.ckpt"
    assert "optimizer_states" not in payload
    assert pretrained.is_weight_file(tiny["fp16"])
    assert not pretrained.is_weight_file(tiny["ckpt"])  # a Lightning .ckpt is not one


def test_export_records_the_shipped_split_file_not_the_run_folder(tiny: dict) -> None:
    assert pretrained.load_weights(tiny["fp32"]).data["split_file"] == "splits/toy.json"
    out = pretrained.export_weights(
        tiny["ckpt"], tiny["root"] / "moved.pt", dtype="float32", split_file="splits/other.json"
    )
    assert pretrained.load_weights(out).data["split_file"] == "splits/other.json"


def test_export_refuses_what_is_not_a_fit_checkpoint(tiny: dict, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not a checkpoint written by `hsi fit`"):
        pretrained.export_weights(tiny["fp16"], tmp_path / "x.pt")
    with pytest.raises(DataError, match="not found"):
        pretrained.export_weights(tmp_path / "missing.ckpt", tmp_path / "x.pt")
    with pytest.raises(ConfigError, match="dtype"):
        pretrained.export_weights(tiny["ckpt"], tmp_path / "x.pt", dtype="int8")


def test_export_command_measures_the_shipped_file_and_its_float32_source(
    tiny: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(1)
    labels = rng.integers(1, CLASSES + 1, size=(12, 10))
    cube = SpectralCube(rng.normal(size=(BANDS, 12, 10)).astype(np.float32))
    scene = SimpleNamespace(cube=cube, labels=labels, fingerprint="f" * 64)
    monkeypatch.setattr("hsi.data.registry.load_dataset", lambda name, root=None: scene)
    split_file = random_split(labels, train=0.3, val=0.1, seed=0).save(tmp_path / "split.json")
    out = tmp_path / "collection"
    argv = ["export", "--ckpt", str(tiny["ckpt"]), "--tag", "toy", "--dtype", "float16"]
    assert pretrained_main([*argv, "--split", str(split_file), "--out", str(out)]) == 0
    row = yaml.safe_load((out / "index.yaml").read_text())["weights"][0]
    net = tiny["task"].net
    assert row["parameters"] == sum(p.numel() for p in net.parameters())
    shipped = pretrained.evaluate_weights(pretrained.load_weights(out / row["file"]))
    source = pretrained.evaluate_weights(
        net,
        split_file=split_file,
        data=tiny["task"].data_description,
        preprocessing=tiny["task"].preprocessing,
    )
    test_part = json.loads(split_file.read_text())["parts"]["test"]
    assert row["test_pixels"] == shipped["pixels"] == len(test_part)
    for key in ("OA", "AA", "kappa"):
        assert row["metrics"][key] == round(shipped[key], 4)
        assert row["metrics_fp32"][key] == round(source[key], 4)
    assert row["vs_fp32"]["pixels"] == 12 * 10


# --------------------------------------------------------------------------------------
# the index: names, verification, errors
# --------------------------------------------------------------------------------------


@pytest.fixture
def collection(tiny: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A checkpoints folder with one weight, made the active one via $HSI_CHECKPOINTS."""
    shutil.copy(tiny["fp16"], tmp_path / "hybridsn_toy.pt")
    _index(tmp_path, [_row(tmp_path / "hybridsn_toy.pt")])
    monkeypatch.setenv("HSI_CHECKPOINTS", str(tmp_path))
    return tmp_path


def test_names_resolve_by_tag_and_by_model_slash_tag(collection: Path) -> None:
    assert pretrained.list_pretrained() == ["hybridsn/toy"]
    for ref in ("toy", "hybridsn/toy", "HybridSN/toy"):
        assert pretrained.load_weights(ref).entry.name == "hybridsn/toy"
    model = hsi.create_model("hybridsn", pretrained="toy")
    assert model.pretrained_cfg["name"] == "hybridsn/toy"
    assert model.pretrained_cfg["class_names"] == ["water", "forest", "urban"]


def test_unknown_tag_lists_the_known_ones(collection: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown pretrained weights 'tou'.*'toy'.*hybridsn/toy"):
        pretrained.load_weights("tou")
    with pytest.raises(ConfigError, match="Known: hybridsn/toy"):
        hsi.create_model("hybridsn", pretrained="salinas")


def test_sha256_mismatch_missing_and_corrupt_files_are_clear_errors(collection: Path) -> None:
    path = collection / "hybridsn_toy.pt"
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match="sha256 .* does not match .* listed for hybridsn/toy"):
        pretrained.load_weights("toy")
    # a corrupt file that the index vouches for still fails with a readable message
    path.write_bytes(b"not a torch file")
    _index(collection, [_row(path)])
    with pytest.raises(DataError, match="cannot load as hsi pretrained weights"):
        pretrained.load_weights("toy")
    path.unlink()
    with pytest.raises(DataError, match="file of pretrained weights hybridsn/toy is missing"):
        pretrained.load_weights("hybridsn/toy")


def test_weights_of_another_model_and_ambiguous_tags(collection: Path, tiny: dict) -> None:
    _index(collection, [_row(collection / "hybridsn_toy.pt", model="othernet")])
    with pytest.raises(ConfigError, match="'toy' is for othernet/toy, not model 'hybridsn'"):
        hsi.create_model("hybridsn", pretrained="toy")
    with pytest.raises(ConfigError, match="are for model 'othernet', not 'hybridsn'"):
        hsi.create_model("hybridsn", pretrained="othernet/toy")
    with pytest.raises(DataError, match="holds a 'hybridsn' model but index.yaml lists"):
        pretrained.load_weights("othernet/toy")
    shutil.copy(tiny["fp16"], collection / "b.pt")
    _index(
        collection,
        [_row(collection / "hybridsn_toy.pt"), _row(collection / "b.pt", model="othernet")],
    )
    with pytest.raises(ConfigError, match="ambiguous.*hybridsn/toy, othernet/toy"):
        pretrained.load_weights("toy")
    assert pretrained.load_weights("toy", model="hybridsn").entry.file == "hybridsn_toy.pt"


def test_create_model_pretrained_checks_kwargs(collection: Path, tiny: dict) -> None:
    same = hsi.create_model("hybridsn", pretrained="toy", num_classes=CLASSES, dropout=0.2)
    assert sum(p.numel() for p in same.parameters()) == sum(
        p.numel() for p in tiny["task"].net.parameters()
    )
    with pytest.raises(ConfigError, match=r"num_classes=5 \(weights: 3\)"):
        hsi.create_model("hybridsn", pretrained="toy", num_classes=5)
    with pytest.raises(ConfigError, match=r"dropout=0.4 \(weights: 0.2\)"):
        hsi.create_model("hybridsn", pretrained="toy", dropout=0.4)
    with pytest.raises(ConfigError, match="unknown model 'hybridnet'"):
        hsi.create_model("hybridnet", pretrained="toy")
    # a weight file path works too, without an index entry
    by_path = hsi.create_model("hybridsn", pretrained=tiny["fp32"]).eval()
    x = torch.randn(2, PCA, PATCH, PATCH)
    with torch.no_grad():
        assert torch.equal(by_path(x), tiny["task"].net.eval()(x))


# --------------------------------------------------------------------------------------
# the shipped weights
# --------------------------------------------------------------------------------------


def _shipped() -> list[pretrained.PretrainedEntry]:
    return pretrained.load_index(SHIPPED)


def test_shipped_index_files_and_cards_agree() -> None:
    entries = _shipped()
    assert {e.name for e in entries} >= {
        "hybridsn/indian_pines",
        "hybridsn/enmap_potsdam",
        "morpmamba/indian_pines_disjoint",
        "vp_hype/indian_pines_random10",
    }
    for e in entries:
        assert e.path.stat().st_size < pretrained.MAX_GIT_BYTES, e.file
        assert pretrained.sha256_of(e.path) == e.sha256, e.file
        weights = pretrained.load_weights(e.path)
        assert weights.model == e.model and weights.dtype == e.dtype
        assert weights.task == e.extra.get("task", "classification")
        assert weights.data["dataset"] == e.dataset
        # learnable parameters, without the buffers the state dict also holds
        assert e.extra["parameters"] == sum(p.numel() for p in weights.build().parameters())
        card = (SHIPPED / e.card).read_text()
        # the card states the measured numbers and how they were made and can be remade
        assert "python -m hsi.pretrained export" in card and "hsi fit --config" in card
        assert "leaky" in card.lower()
        if weights.task == "restoration":  # MPSNR, MSSIM, SAM at the card's precision
            places = {"MPSNR": 2, "MSSIM": 4, "SAM": 3}
            for key, value in [*e.metrics.items(), *e.extra["metrics_input"].items()]:
                assert f"{value:.{places[key.rsplit('_', 1)[1]]}f}" in card, (e.card, key)
            assert e.extra["test_region"] in card
            continue
        assert weights.data["leaky"] == e.leaky
        for value in e.metrics.values():
            assert f"{value:.2f}" in card, (e.card, value)
        assert e.split_file in card
        assert (REPO / e.split_file).is_file()


def test_create_model_with_the_shipped_indian_pines_weights(monkeypatch) -> None:
    monkeypatch.delenv("HSI_CHECKPOINTS", raising=False)
    model = hsi.create_model("hybridsn", pretrained="indian_pines").eval()
    # the paper's Table I model: 30 PCA bands, 16 classes, 25×25 patches, 5,122,176 params
    assert sum(p.numel() for p in model.parameters()) == 5_122_176
    assert (model.in_bands, model.num_classes, model.patch_size) == (30, 16, 25)
    cfg = model.pretrained_cfg
    assert cfg["class_names"][0] == "Alfalfa" and len(cfg["class_names"]) == 16
    assert cfg["preprocessing"]["in_bands"] == 200 and cfg["dtype"] == "float16"
    raw = torch.load(SHIPPED / "hybridsn_indian_pines.pt", weights_only=True)["state_dict"]
    for name, param in model.state_dict().items():
        assert torch.equal(param, raw[name].float())
    with pytest.raises(ConfigError, match="patch_size=11"):
        hsi.create_model("hybridsn", pretrained="hybridsn/indian_pines", patch_size=11)


def test_create_model_with_the_shipped_vp_hype_weights_without_a_text_encoder(
    monkeypatch,
) -> None:
    """The class-name embeddings travel in the file: no MiniLM is needed to rebuild them."""
    import hsi.nn.text_prompts as tp

    monkeypatch.delenv("HSI_CHECKPOINTS", raising=False)
    monkeypatch.setattr(tp, "text_encoder_available", lambda: False)
    model = hsi.create_model("vp_hype", pretrained="indian_pines_random10").eval()
    # the config's model: 15 PCA bands, 16 classes, 15x15 patches, 1,145,744 parameters
    assert sum(p.numel() for p in model.parameters()) == 1_145_744
    assert (model.in_bands, model.num_classes, model.patch_size) == (15, 16, 15)
    raw = torch.load(SHIPPED / "vp_hype_indian_pines_random10.pt", weights_only=True)
    assert raw["model_kwargs"]["text_encoder"] == "auto"
    assert model.has_text_embeddings  # MiniLM's vectors, read from the file
    assert torch.equal(model.text_embeddings, raw["state_dict"]["text_embeddings"])
    assert model.pretrained_cfg["class_names"] == raw["model_kwargs"]["class_names"]
    assert model.pretrained_cfg["preprocessing"]["in_bands"] == 200
    with torch.no_grad():
        logits = model(torch.randn(2, 15, 15, 15))
    assert logits.shape == (2, 16) and torch.isfinite(logits).all()


def test_create_model_with_the_shipped_morpmamba_weights(monkeypatch) -> None:
    monkeypatch.delenv("HSI_CHECKPOINTS", raising=False)
    model = hsi.create_model("morpmamba", pretrained="indian_pines_disjoint").eval()
    # the config's model: 15 PCA bands, 16 classes, 5x5 patches, 67,064 parameters
    assert sum(p.numel() for p in model.parameters()) == 67_064
    assert model.pretrained_cfg["dtype"] == "float32"
    assert model.pretrained_cfg["preprocessing"]["in_bands"] == 200
    raw = torch.load(SHIPPED / "morpmamba_indian_pines_disjoint.pt", weights_only=True)[
        "state_dict"
    ]
    for name, param in model.state_dict().items():
        assert torch.equal(param, raw[name])
    with torch.no_grad():
        probs = model(torch.randn(3, 15, 5, 5)).softmax(-1)
    assert probs.shape == (3, 16) and torch.allclose(probs.sum(-1), torch.ones(3))
    with pytest.raises(ConfigError, match="is for hybridsn/enmap_potsdam, not model 'morpmamba'"):
        hsi.create_model("morpmamba", pretrained="enmap_potsdam")


def _indian_pines_like_scene(path: Path, height: int = 14, width: int = 11) -> Path:
    """A 200-band GeoTIFF on the scale of Indian Pines (the weights' band statistics)."""
    pre = pretrained.load_weights("indian_pines").preprocessor()
    rng = np.random.default_rng(0)
    data = pre.mean[:, None, None] + pre.std[:, None, None] * rng.normal(size=(200, height, width))
    cube = SpectralCube(data.astype(np.float32), nodata=-1.0)
    return write_geotiff(
        path,
        cube,
        crs="EPSG:32616",
        transform=(20.0, 0.0, 600000.0, 0.0, -20.0, 4500000.0),
    )


def test_predict_with_a_shipped_tag_on_a_small_geotiff(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.delenv("HSI_CHECKPOINTS", raising=False)
    scene = _indian_pines_like_scene(tmp_path / "scene.tif")
    out = tmp_path / "map.tif"
    args = ["--input", str(scene), "--output", str(out), "--no-progress", "--tile", "8"]
    assert scene_main(["--ckpt", "indian_pines", *args]) == 0
    assert "classified 14×11 pixels" in capsys.readouterr().out
    with rasterio.open(out) as dst:
        classes = dst.read(1)
        tags = dst.tags()
        assert str(dst.crs) == "EPSG:32616"
    assert "hybridsn/indian_pines" in tags["hsi_checkpoint"]
    assert json.loads(tags["class_names"])[0] == "Alfalfa"
    # the same map by hand: stored preprocessing, reflect padding, the model on the scene
    model = hsi.create_model("hybridsn", pretrained="indian_pines").eval()
    pre = Preprocessor.from_state_dict(model.pretrained_cfg["preprocessing"])
    with rasterio.open(scene) as src:
        data = src.read().astype(np.float32)
    padded = pad_cube(pre.transform_cube(data), 12, "reflect")
    expected = classify_cube(model, padded, 25).argmax(0).numpy() + 1
    np.testing.assert_array_equal(classes, expected)

    # the weight file's path gives the same map (the model/tag spelling resolves as the
    # tag does: test_names_resolve_by_tag_and_by_model_slash_tag)
    out2 = tmp_path / "map2.tif"
    argv2 = ["--input", str(scene), "--output", str(out2), "--no-progress", "--no-quicklook"]
    assert scene_main(["--ckpt", str(SHIPPED / "hybridsn_indian_pines.pt"), *argv2]) == 0
    with rasterio.open(out2) as dst:
        np.testing.assert_array_equal(dst.read(1), classes)
    capsys.readouterr()

    # MorpMamba's weights (5x5 patches) map the same scene, georeferenced the same way
    out3 = tmp_path / "map3.tif"
    argv3 = ["--input", str(scene), "--output", str(out3), "--no-progress", "--no-quicklook"]
    assert scene_main(["--ckpt", "indian_pines_disjoint", *argv3]) == 0
    with rasterio.open(out3) as dst:
        morp_classes = dst.read(1)
        assert str(dst.crs) == "EPSG:32616"
        assert "morpmamba/indian_pines_disjoint" in dst.tags()["hsi_checkpoint"]
    morp = hsi.create_model("morpmamba", pretrained="indian_pines_disjoint").eval()
    morp_pre = Preprocessor.from_state_dict(morp.pretrained_cfg["preprocessing"])
    padded = pad_cube(morp_pre.transform_cube(data), 2, "reflect")
    expected = classify_cube(morp, padded, 5).argmax(0).numpy() + 1
    np.testing.assert_array_equal(morp_classes, expected)
    capsys.readouterr()

    # an unknown name: a readable error naming both readings and the known weights
    assert scene_main(["--ckpt", "indian_pine", *argv2, "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert "checkpoint not found, and not the name of shipped weights" in err
    assert "hybridsn/indian_pines" in err and "Traceback" not in err
    # the EnMAP weights refuse a 200-band scene by band count
    assert scene_main(["--ckpt", "enmap_potsdam", *argv2, "--overwrite"]) == 2
    assert "224-band" in capsys.readouterr().err


# --------------------------------------------------------------------------------------
# real data: the shipped weights reproduce their cards
# --------------------------------------------------------------------------------------


def _card_metrics(card: Path) -> dict[str, float]:
    """OA/AA/kappa from the card's 'Shipped weights (float16)' table row."""
    row = next(line for line in card.read_text().splitlines() if "shipped file" in line)
    values = [float(v) for v in re.findall(r"\d+\.\d+", row)]
    return dict(zip(("OA", "AA", "kappa"), values[:3], strict=True))


@pytest.mark.realdata
@pytest.mark.parametrize(
    "name",
    [
        "hybridsn/indian_pines",
        "hybridsn/enmap_potsdam",
        "morpmamba/indian_pines_disjoint",
        "vp_hype/indian_pines_random10",
    ],
)
def test_shipped_weights_reproduce_their_card_on_the_real_split(
    name: str, shared_data: Path, monkeypatch
) -> None:
    monkeypatch.delenv("HSI_CHECKPOINTS", raising=False)
    weights = pretrained.load_weights(name)
    entry = weights.entry
    result = pretrained.evaluate_weights(weights, root=shared_data, batch_size=512)
    assert result["pixels"] == entry.extra["test_pixels"]
    card = _card_metrics(SHIPPED / entry.card)
    for key in ("OA", "AA", "kappa"):
        assert result[key] == pytest.approx(entry.metrics[key], abs=1e-3)
        assert result[key] == pytest.approx(card[key], abs=5e-3)
