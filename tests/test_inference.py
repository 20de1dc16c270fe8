"""Scene inference: dense HybridSN, classify_cube, and windowed ``hsi predict --input``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from conftest import make_scene, real
from torch import nn

from hsi.cli import main as cli_main
from hsi.data.cube import SpectralCube
from hsi.data.patches import pad_cube
from hsi.data.preprocessing import Preprocessor
from hsi.data.readers import read_cube
from hsi.data.writers import write_geotiff
from hsi.errors import DataError
from hsi.inference import classify_cube, predict_scene, scene_main
from hsi.models.hybridsn import HybridSN
from hsi.tasks.classification import ClassificationTask

BANDS, PCA, CLASSES, PATCH = 24, 16, 3, 9
HEIGHT, WIDTH = 70, 50
NODATA = -9999.0
WAVELENGTHS = np.linspace(420.0, 2400.0, BANDS)


def _per_patch_logits(model: nn.Module, padded: torch.Tensor, patch: int) -> torch.Tensor:
    """The reference: ``model.forward`` on every patch, one by one."""
    _, hp, wp = padded.shape
    height, width = hp - patch + 1, wp - patch + 1
    out = torch.empty(height, width, model.num_classes)
    with torch.no_grad():
        for i in range(height):
            patches = torch.stack([padded[:, i : i + patch, j : j + patch] for j in range(width)])
            out[i] = model(patches)
    return out.permute(2, 0, 1)


@pytest.mark.parametrize("patch", [9, 13])  # 13: a 5×5 kernel checks the flatten order
def test_forward_dense_equals_per_patch_forward(patch: int) -> None:
    torch.manual_seed(0)
    model = HybridSN(in_bands=16, num_classes=5, patch_size=patch).eval()
    n_params = sum(p.numel() for p in model.parameters())
    padded = torch.randn(2, 16, 12 + patch - 1, 10 + patch - 1)
    with torch.no_grad():
        dense = model.forward_dense(padded)
    assert dense.shape == (2, 5, 12, 10)
    for k in range(2):
        ref = _per_patch_logits(model, padded[k], patch)
        assert (dense[k] - ref).abs().max() <= 1e-4
    assert sum(p.numel() for p in model.parameters()) == n_params  # nothing added


class _PatchOnly(nn.Module):
    """A patch model without forward_dense, to exercise classify_cube's unfold path."""

    def __init__(self, net: HybridSN) -> None:
        super().__init__()
        self.inner = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)


def test_classify_cube_unfold_and_dense_paths_equal_per_patch_loop() -> None:
    torch.manual_seed(1)
    net = HybridSN(in_bands=16, num_classes=4, patch_size=PATCH)
    padded = torch.randn(16, 12 + PATCH - 1, 10 + PATCH - 1)
    net.train()  # classify_cube must switch to eval (no dropout) and restore the mode
    ref = torch.softmax(_per_patch_logits(net.eval(), padded, PATCH), dim=0)
    net.train()
    for batch_size in (7, 256):  # 7: row/column blocks that do not divide the cube
        unfold = classify_cube(_PatchOnly(net), padded, PATCH, batch_size=batch_size)
        dense = classify_cube(net, padded, PATCH, batch_size=batch_size)
        assert unfold.shape == dense.shape == (4, 12, 10)
        assert (unfold - ref).abs().max() <= 1e-5
        assert (dense - ref).abs().max() <= 1e-5
    assert net.training


# --------------------------------------------------------------------------------------
# end to end: checkpoint + GeoTIFF scene -> predict_scene
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("inference")
    cube, _ = make_scene(height=HEIGHT, width=WIDTH, bands=BANDS, classes=CLASSES, seed=3)
    data = np.ascontiguousarray(cube.transpose(2, 0, 1))  # (bands, H, W)
    nodata = np.zeros((HEIGHT, WIDTH), dtype=bool)
    nodata[:34, :33] = True  # covers the first 32×32 window: skipped without the model
    nodata[60:, 45:] = True
    data[:, nodata] = NODATA
    scene = write_geotiff(
        root / "scene.tif",
        SpectralCube(data, wavelengths=WAVELENGTHS, nodata=NODATA),
        crs="EPSG:32633",
        transform=(30.0, 0.0, 500000.0, 0.0, -30.0, 5000000.0),
    )
    torch.manual_seed(0)
    task = ClassificationTask(model="hybridsn", in_bands=PCA, num_classes=CLASSES, patch_size=9)
    task.preprocessing = Preprocessor(PCA).fit(data[:, ~nodata].T).state_dict()
    task.data_description = {
        "class_names": ["water", "forest", "urban"],
        "pad_mode": "reflect",
        "wavelengths": None,
        "patch_size": PATCH,
        "dataset": "toy",
    }
    ckpt = task.export_checkpoint(root / "model.ckpt")
    loaded = ClassificationTask.load_from_checkpoint(ckpt, map_location="cpu").eval()
    assert loaded.data_description["class_names"] == ["water", "forest", "urban"]

    # the reference map: the whole scene in one classify_cube call
    whole = read_cube(scene)
    valid = whole.valid_mask
    z = loaded.get_preprocessor().transform_cube(whole.data.astype(np.float32), valid)
    probs = classify_cube(loaded.net, pad_cube(z, PATCH // 2, "reflect"), PATCH)
    ref_map = (probs.argmax(0).numpy() + 1).astype(np.uint8)
    ref_map[~valid] = 0
    return {
        "root": root,
        "scene": scene,
        "data": data,
        "nodata": nodata,
        "task": task,
        "ckpt": ckpt,
        "ref_map": ref_map,
        "ref_probs": probs.numpy(),
    }


def test_predict_scene_windows_equal_whole_scene(setup: dict) -> None:
    out = setup["root"] / "maps" / "map.tif"  # the directory is created
    summary = predict_scene(
        setup["ckpt"],
        setup["scene"],
        out,
        tile=32,
        batch_size=64,
        probabilities=True,
        confidence=True,
        progress=False,
    )
    with rasterio.open(setup["scene"]) as src:
        crs, transform = src.crs, src.transform
    with rasterio.open(out) as dst:
        assert dst.crs == crs and dst.transform == transform
        assert dst.count == 1 and dst.dtypes[0] == "uint8" and dst.nodata == 0
        assert dst.profile["tiled"] and dst.compression is not None
        assert json.loads(dst.tags()["class_names"]) == ["water", "forest", "urban"]
        assert "1=water" in dst.descriptions[0]
        assert dst.colormap(1)[2][:3] != (0, 0, 0)
        classes = dst.read(1)
    assert (classes[setup["nodata"]] == 0).all()
    assert (classes[~setup["nodata"]] >= 1).all()
    np.testing.assert_array_equal(classes, setup["ref_map"])

    side = {k: Path(v) for k, v in summary["outputs"].items()}
    assert side["confidence"].name == "map_confidence.tif"
    assert side["quicklook"].name == "map.png" and side["quicklook"].stat().st_size > 0
    with rasterio.open(side["probabilities"]) as src:
        assert src.count == CLASSES and src.transform == transform and src.crs == crs
        assert list(src.descriptions) == ["water", "forest", "urban"]
        probs = src.read()
    valid = ~setup["nodata"]
    np.testing.assert_allclose(probs[:, valid].sum(axis=0), 1.0, atol=1e-5)
    np.testing.assert_allclose(probs[:, valid], setup["ref_probs"][:, valid], atol=1e-5)
    assert np.isnan(probs[:, ~valid]).all()
    with rasterio.open(side["confidence"]) as src:
        np.testing.assert_allclose(src.read(1)[valid], probs[:, valid].max(axis=0), atol=1e-6)

    assert summary["pixels"] == HEIGHT * WIDTH
    assert summary["valid_pixels"] == int(valid.sum())
    assert summary["windows"] == 6 and summary["skipped_windows"] == 1
    assert sum(summary["class_histogram"].values()) == int(valid.sum())
    assert summary["pixels_per_second"] > 0
    assert not list(out.parent.glob(".*partial*"))


def test_tiles_smaller_than_the_halo_and_mosaics_give_the_same_map(setup: dict) -> None:
    root = setup["root"]
    out = root / "small_tiles.tif"
    predict_scene(setup["ckpt"], setup["scene"], out, tile=3, quicklook=False, progress=False)
    with rasterio.open(out) as src:
        np.testing.assert_array_equal(src.read(1), setup["ref_map"])

    # the same scene as four GeoTIFF tiles (with a gap-free 2×2 layout)
    data, tiles = setup["data"], []
    with rasterio.open(setup["scene"]) as src:
        transform = src.transform
    x0, y0 = transform.c, transform.f
    for r0, r1 in ((0, 40), (40, HEIGHT)):
        for c0, c1 in ((0, 20), (20, WIDTH)):
            tiles.append(
                write_geotiff(
                    root / f"tile_{r0}_{c0}.tif",
                    data[:, r0:r1, c0:c1],
                    crs="EPSG:32633",
                    transform=(30.0, 0.0, x0 + 30.0 * c0, 0.0, -30.0, y0 - 30.0 * r0),
                    nodata=NODATA,
                )
            )
    out = root / "mosaic.tif"
    predict_scene(setup["ckpt"], tiles[::-1], out, tile=32, quicklook=False, progress=False)
    with rasterio.open(out) as src:
        assert src.transform == transform
        np.testing.assert_array_equal(src.read(1), setup["ref_map"])


def test_existing_output_is_refused_without_overwrite(setup: dict) -> None:
    out = setup["root"] / "exists.tif"
    out.write_bytes(b"keep me")
    with pytest.raises(DataError, match="--overwrite"):
        predict_scene(setup["ckpt"], setup["scene"], out, quicklook=False, progress=False)
    assert out.read_bytes() == b"keep me"
    predict_scene(
        setup["ckpt"], setup["scene"], out, overwrite=True, quicklook=False, progress=False
    )
    with rasterio.open(out) as src:
        np.testing.assert_array_equal(src.read(1), setup["ref_map"])


def test_wrong_band_count_and_wavelengths_are_refused_before_any_output(setup: dict) -> None:
    root = setup["root"] / "refused"
    root.mkdir()
    bad = write_geotiff(root / "bad.tif", setup["data"][:20], crs="EPSG:32633")
    out = root / "map.tif"
    with pytest.raises(DataError, match=r"20 bands.*model\.ckpt.*24-band"):
        predict_scene(setup["ckpt"], bad, out, progress=False)

    task = setup["task"]
    task.data_description = dict(task.data_description, wavelengths=(WAVELENGTHS + 20.0).tolist())
    try:
        ckpt = task.export_checkpoint(root / "shifted.ckpt")
    finally:
        task.data_description = dict(task.data_description, wavelengths=None)
    with pytest.raises(DataError, match=r"420\.0-2400\.0 nm.*440\.0-2420\.0 nm"):
        predict_scene(ckpt, setup["scene"], out, progress=False)
    assert sorted(p.name for p in root.iterdir()) == ["bad.tif", "shifted.ckpt"]


def test_interrupted_run_leaves_no_file(setup: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    import hsi.inference.predict

    calls = []

    def boom(*args: object, **kwargs: object) -> torch.Tensor:
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return classify_cube(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(hsi.inference.predict, "classify_cube", boom)
    root = setup["root"] / "interrupted"
    with pytest.raises(KeyboardInterrupt):
        predict_scene(
            setup["ckpt"],
            setup["scene"],
            root / "map.tif",
            tile=32,
            confidence=True,
            progress=False,
        )
    assert list(root.iterdir()) == []


def test_scene_values_unlike_training_warn(setup: dict) -> None:
    root = setup["root"] / "scaled"
    data = setup["data"][:, 40:, :20] * 10000.0  # e.g. reflectance ×10000 instead of 0..1
    scene = write_geotiff(root / "scaled.tif", data.astype(np.float32), crs="EPSG:32633")
    with pytest.warns(UserWarning, match="unlike the training data"):
        predict_scene(setup["ckpt"], scene, root / "map.tif", quicklook=False, progress=False)


def test_scene_main_exit_codes(setup: dict, capsys: pytest.CaptureFixture[str]) -> None:
    out = setup["root"] / "cli" / "map.tif"
    args = ["--ckpt", str(setup["ckpt"]), "--input", str(setup["scene"]), "--output", str(out)]
    assert scene_main([*args, "--tile", "64", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "pixels/s" in printed and "water" in printed
    assert out.is_file() and out.with_suffix(".png").is_file()

    assert scene_main([*args, "--no-progress"]) == 2  # exists, no --overwrite
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "--overwrite" in err

    assert scene_main([*args, "--overwrite", "--ckpt", str(setup["root"] / "missing.ckpt")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err

    # `hsi predict --input ...` dispatches here from the main CLI
    assert cli_main(["predict", *args, "--overwrite", "--no-quicklook", "--no-progress"]) == 0


@pytest.mark.realdata
def test_real_enmap_tiles_map_keeps_the_mosaic_georeference(tmp_path: Path) -> None:
    """Three real EnMAP tiles in, one map out on exactly the tiles' mosaic grid."""
    folder = real("enmap_potsdam/images")
    tiles = [folder / f"enmap_potsdam_tile_{n}.tif" for n in ("128_0", "128_32", "96_32")]
    mosaic = read_cube(tiles)
    torch.manual_seed(0)
    task = ClassificationTask(model="hybridsn", in_bands=15, num_classes=6, patch_size=9)
    pixels = mosaic.data[:, mosaic.valid_mask].T.astype(np.float64)
    task.preprocessing = Preprocessor(15).fit(pixels[::7]).state_dict()
    task.data_description = {
        "class_names": ["roof", "pavement", "low vegetation", "tree", "soil", "water"],
        "pad_mode": "reflect",
        "wavelengths": mosaic.wavelengths.tolist(),
        "patch_size": 9,
    }
    ckpt = task.export_checkpoint(tmp_path / "enmap.ckpt")
    out = tmp_path / "enmap_map.tif"
    predict_scene(ckpt, tiles, out, tile=32, progress=False, quicklook=False)
    with rasterio.open(out) as dst:
        assert dst.crs == mosaic.crs and dst.transform == mosaic.transform
        assert (dst.height, dst.width) == (mosaic.height, mosaic.width)
        classes = dst.read(1)
    assert np.array_equal(classes == 0, ~mosaic.valid_mask)
    assert set(np.unique(classes[mosaic.valid_mask])) <= set(range(1, 7))
