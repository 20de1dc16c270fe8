"""Scene prediction over 2 CPU processes (gloo) equals the single-process map."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from conftest import make_scene

from hsi.data.cube import SpectralCube
from hsi.data.preprocessing import Preprocessor
from hsi.data.writers import write_geotiff
from hsi.inference import predict_scene, scene_main
from hsi.inference.distributed import launched_world, predict_scene_distributed
from hsi.tasks.classification import ClassificationTask

BANDS, PCA, CLASSES, PATCH = 20, 16, 3, 9
HEIGHT, WIDTH, TILE = 45, 38, 16  # 3×3 windows: uneven over 2 ranks, ragged edges
NODATA = -9999.0
CRS = "EPSG:32633"
TRANSFORM = (30.0, 0.0, 500000.0, 0.0, -30.0, 5000000.0)

pytestmark = pytest.mark.skipif(
    not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
    reason="torch.distributed with the gloo backend is needed",
)


@pytest.fixture(scope="module")
def scene_and_ckpt(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A small GeoTIFF with a no-data corner (one window has no data) and a checkpoint."""
    root = tmp_path_factory.mktemp("distributed")
    cube, _ = make_scene(height=HEIGHT, width=WIDTH, bands=BANDS, classes=CLASSES, seed=5)
    data = np.ascontiguousarray(cube.transpose(2, 0, 1))
    nodata = np.zeros((HEIGHT, WIDTH), dtype=bool)
    nodata[:17, :17] = True  # the first 16×16 window holds no data: skipped
    data[:, nodata] = NODATA
    scene = write_geotiff(
        root / "scene.tif",
        SpectralCube(data, nodata=NODATA),
        crs=CRS,
        transform=TRANSFORM,
    )
    torch.manual_seed(0)
    task = ClassificationTask(model="hybridsn", in_bands=PCA, num_classes=CLASSES, patch_size=PATCH)
    task.preprocessing = Preprocessor(PCA).fit(data[:, ~nodata].T).state_dict()
    task.data_description = {"class_names": ["a", "b", "c"], "pad_mode": "reflect"}
    ckpt = task.export_checkpoint(root / "model.ckpt")
    single = root / "single" / "map.tif"
    predict_scene(ckpt, scene, single, tile=TILE, confidence=True, progress=False)
    return {"root": root, "scene": scene, "ckpt": ckpt, "single": single, "nodata": nodata}


def test_two_processes_equal_single_process(scene_and_ckpt: dict) -> None:
    s = scene_and_ckpt
    out_dir = s["root"] / "ddp"
    out = out_dir / "map.tif"
    summary = predict_scene_distributed(
        s["ckpt"],
        s["scene"],
        out,
        devices=2,
        accelerator="cpu",
        strategy="ddp_spawn",  # the ddp launcher would re-run pytest's command line
        tile=TILE,
        batch_size=64,
        confidence=True,
        progress=False,
    )
    assert summary is not None and summary["world_size"] == 2
    assert summary["windows_per_rank"] == [5, 4]  # rank r took windows r, r + 2, ...
    assert summary["windows"] == 9 and summary["skipped_windows"] == 1
    assert summary["valid_pixels"] == int((~s["nodata"]).sum())
    with rasterio.open(s["scene"]) as src:
        crs, transform = src.crs, src.transform
    with rasterio.open(s["single"]) as ref, rasterio.open(out) as dst:
        assert dst.crs == crs and dst.transform == transform
        assert dst.profile == ref.profile and dst.tags() == ref.tags()
        assert dst.colormap(1) == ref.colormap(1)
        assert dst.descriptions == ref.descriptions
        np.testing.assert_array_equal(dst.read(1), ref.read(1))
    conf_ref = s["single"].with_name("map_confidence.tif")
    with rasterio.open(conf_ref) as ref, rasterio.open(out_dir / "map_confidence.tif") as dst:
        np.testing.assert_allclose(dst.read(1), ref.read(1), atol=1e-6)
    # the outputs only: no shard directory, no .partial file
    assert sorted(p.name for p in out_dir.iterdir()) == ["map.png", "map.tif", "map_confidence.tif"]


def test_scene_main_parses_devices_and_detects_torchrun(
    scene_and_ckpt: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--devices/--num-nodes/--accelerator reach predict_scene_distributed (not run here)."""
    import hsi.inference.distributed as dist

    calls: list[dict] = []

    def fake(*args: object, **kwargs: object) -> None:
        calls.append(kwargs)
        return None  # as on a rank other than 0: nothing printed

    monkeypatch.setattr(dist, "predict_scene_distributed", fake)
    s = scene_and_ckpt
    args = ["--ckpt", str(s["ckpt"]), "--input", str(s["scene"]), "--output", "x.tif"]
    assert scene_main([*args, "--devices", "4", "--num-nodes", "2", "--accelerator", "cpu"]) == 0
    assert calls[-1]["devices"] == 4 and calls[-1]["num_nodes"] == 2
    assert calls[-1]["accelerator"] == "cpu"

    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "x")
    monkeypatch.setenv("WORLD_SIZE", "8")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert launched_world() == (4, 2)
    assert scene_main(args) == 0
    assert calls[-1]["devices"] == 4 and calls[-1]["num_nodes"] == 2
    assert not Path("x.tif").exists()
