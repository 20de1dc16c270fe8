"""The EnMAP Potsdam scene: tiled (multi-file) dataset cards, and the real georeferenced tiles.

The first tests build small GeoTIFF tiles of their own, so the tiled form of the registry is
checked everywhere; the rest read the real EnMAP-Box tiles under ../shared/data and skip
(saying why) where they are absent.
"""

from __future__ import annotations

import hashlib
import io
import urllib.request
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_data_dir

from hsi.data import cards, registry
from hsi.data.registry import download_dataset, get_card, load_dataset, verify_dataset
from hsi.errors import ConfigError, DataError

rasterio = pytest.importorskip("rasterio")
from rasterio.transform import from_origin  # noqa: E402

NODATA = -32768.0


# ------------------------------------------------------------------ generated tiles


def _write_tile(path: Path, data: np.ndarray, x0: float, y0: float, nodata=None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = data if data.ndim == 3 else data[None]
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=data.shape[2],
        height=data.shape[1],
        count=data.shape[0],
        dtype="float32",
        crs="EPSG:32633",
        transform=from_origin(x0, y0, 30, 30),
        nodata=nodata,
    ) as dst:
        dst.write(data.astype(np.float32))
        for b in range(1, data.shape[0] + 1):
            dst.update_tags(b, wavelength=str(400 + 10 * b), wavelength_units="Nanometers")


# Three 4x4 tiles in a 2x2 grid of cells (origin 1000, 2000); the bottom-left cell is a gap.
_TILES = {"t_0_0": (0, 0), "t_4_0": (0, 4), "t_4_4": (4, 4)}  # name: (row, col) offset


def _tiled_card(tmp_path: Path, label_offset: tuple[float, float] = (0, 0)) -> registry.DatasetCard:
    folder = tmp_path / "root" / "tiny"
    rng = np.random.default_rng(0)
    for i, (name, (r, c)) in enumerate(_TILES.items()):
        x0, y0 = 1000 + 30 * c, 2000 - 30 * r
        _write_tile(folder / "img" / f"{name}.tif", rng.uniform(0, 1, (3, 4, 4)), x0, y0, NODATA)
        labels = np.full((4, 4), i + 1, dtype=np.float32)
        labels[0, 0] = 0
        dx, dy = label_offset
        _write_tile(folder / "gt" / f"{name}.tif", labels, x0 + dx, y0 + dy)
    names = list(_TILES)
    files = "".join(
        f"  {d}/{n}.tif: {{sha256: {registry.file_sha256(folder / d / f'{n}.tif')}}}\n"
        for d in ("img", "gt")
        for n in names
    )
    card = tmp_path / "tiny.yaml"
    card.write_text(
        "name: tiny\ntitle: Tiny\nsensor: S\nfolder: tiny\n"
        "shape: {height: 8, width: 8, bands: 3}\nclasses: [a, b, c]\nforms:\n  - name: tiles\n"
        f"    image: {{files: [{', '.join(f'img/{n}.tif' for n in names)}]}}\n"
        f"    labels: {{files: [{', '.join(f'gt/{n}.tif' for n in names)}]}}\n"
        "files:\n" + files
    )
    return cards._parse_card(card)


def test_tiled_form_mosaics_image_and_labels_on_one_grid(tmp_path):
    card = _tiled_card(tmp_path)
    form = card.form()
    assert form.image.tiled and form.image.file == "img/t_0_0.tif"
    assert len(form.files) == 6 and all(f in card.files for f in form.files)
    scene = load_dataset(card, root=tmp_path / "root")
    cube = scene.cube
    assert cube.shape == (3, 8, 8) and scene.labels.shape == (8, 8)
    assert tuple(cube.transform)[:6] == (30, 0, 1000, 0, -30, 2000)
    assert str(cube.crs) == "EPSG:32633"
    np.testing.assert_allclose(cube.wavelengths, [410, 420, 430])
    gap = np.zeros((8, 8), dtype=bool)
    gap[4:, :4] = True
    np.testing.assert_array_equal(cube.nodata_mask, gap)
    assert (scene.labels[gap] == 0).all()
    for i, (r, c) in enumerate(_TILES.values()):
        block = scene.labels[r : r + 4, c : c + 4]
        assert block[0, 0] == 0 and (block.ravel()[1:] == i + 1).all()
    assert scene.class_counts == [15, 15, 15]
    assert [p.name for p in scene.image_files] == ["t_0_0.tif", "t_4_0.tif", "t_4_4.tif"]
    # fingerprint: sha256 of the tiles' sha256s in the card's order
    joined = "".join(card.files[f].sha256 for f in form.image.files)
    assert scene.fingerprint == hashlib.sha256(joined.encode()).hexdigest()
    assert {c.status for c in verify_dataset(card, tmp_path / "root")} == {"ok"}


def test_tiled_form_needs_every_tile_and_aligned_labels(tmp_path):
    card = _tiled_card(tmp_path, label_offset=(15, 0))  # half a pixel off the image grid
    with pytest.raises(DataError, match="fraction of a pixel"):
        load_dataset(card, root=tmp_path / "root")
    (tmp_path / "root" / "tiny" / "img" / "t_4_4.tif").unlink()
    with pytest.raises(DataError, match=r"3 tiles") as err:
        load_dataset(card, root=tmp_path / "root")
    assert "found only" in str(err.value)
    statuses = {c.file: c.status for c in verify_dataset(card, tmp_path / "root")}
    assert statuses["img/t_4_4.tif"] == "missing"


def test_tiled_card_errors(tmp_path):
    base = "name: bad\ntitle: B\nsensor: S\nfolder: bad\nshape: {height: 2, width: 2, bands: 1}\n"
    base += "classes: [a]\nfiles: {a.tif: {}, b.tif: {}}\nforms:\n  - name: t\n"
    for image, match in [
        ("{file: a.tif, files: [a.tif]}", "either a 'file' or a 'files'"),
        ("{files: a.tif}", "must be a list"),
        ("{files: [a.tif, a.tif]}", "names a file twice"),
        ("{files: [a.tif, c.tif]}", "c.tif, which is not under files"),
    ]:
        path = tmp_path / "bad.yaml"
        path.write_text(base + f"    image: {image}\n    labels: {{file: b.tif}}\n")
        with pytest.raises(ConfigError, match=match):
            cards._parse_card(path)


def test_download_into_sub_folders(monkeypatch, tmp_path):
    card = _tiled_card(tmp_path)
    src = tmp_path / "root" / "tiny"
    card = replace(
        card,
        files={n: replace(s, url=f"http://example.invalid/{n}") for n, s in card.files.items()},
    )

    def fake_urlopen(url, timeout=None):
        return io.BytesIO((src / url.split("example.invalid/", 1)[1]).read_bytes())

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    paths = download_dataset(card, root=tmp_path / "fresh")
    assert len(paths) == 6 and (tmp_path / "fresh" / "tiny" / "gt" / "t_4_4.tif").is_file()


def test_enmap_potsdam_card():
    card = get_card("enmap_potsdam")
    form = card.form()
    assert card.cube_shape == (224, 192, 160)
    assert len(form.image.files) == len(form.labels.files) == 18
    assert [f.replace("images/", "labels/") for f in form.image.files] == list(form.labels.files)
    assert len(card.files) == 37 and all(s.sha256 and s.md5 and s.size for s in card.files.values())
    assert card.class_names == ["roof", "pavement", "low vegetation", "tree", "soil", "water"]
    assert card.label_values == [1, 2, 3, 4, 5, 6] and sum(card.class_counts) == 5672
    assert min(card.wavelengths_nm) == 418.24 and max(card.wavelengths_nm) == 2445.53
    assert get_card("EnMAPPotsdam") is card


# ------------------------------------------------------------------ the real scene


@pytest.fixture(scope="module")
def root() -> Path:
    path = shared_data_dir()
    if not (path / "enmap_potsdam" / "images").is_dir():
        pytest.skip(f"real EnMAP Potsdam tiles not found under {path} (set HSI_SHARED_DATA)")
    return path


@pytest.fixture(scope="module")
def scene(root):
    return load_dataset("enmap_potsdam", root=root)


def _tile_grid(paths) -> tuple[tuple[float, ...], tuple[int, int], list[tuple[int, int, int, int]]]:
    """Transform, shape and (row0, row1, col0, col1) windows the tiles imply on their own."""
    bounds, res = [], set()
    for p in paths:
        with rasterio.open(p) as src:
            bounds.append(src.bounds)
            res.add(src.res)
    assert res == {(30.0, 30.0)}
    left, top = min(b.left for b in bounds), max(b.top for b in bounds)
    right, bottom = max(b.right for b in bounds), min(b.bottom for b in bounds)
    shape = (round((top - bottom) / 30), round((right - left) / 30))
    windows = [
        tuple(round(v / 30) for v in (top - b.top, top - b.bottom, b.left - left, b.right - left))
        for b in bounds
    ]
    return (30.0, 0.0, left, 0.0, -30.0, top), shape, windows


def test_real_scene_is_georeferenced(scene):
    cube = scene.cube
    assert cube.bands == 224 and str(cube.crs) == "EPSG:32633"
    assert cube.wavelengths.min() == pytest.approx(418.24)
    assert cube.wavelengths.max() == pytest.approx(2445.53)
    np.testing.assert_allclose(cube.wavelengths, scene.card.wavelengths_nm)
    transform, shape, _ = _tile_grid(scene.image_files)
    assert tuple(cube.transform)[:6] == pytest.approx(transform)
    assert transform[2:6:3] == (364095.0, 5809965.0)
    assert (cube.height, cube.width) == shape == scene.labels.shape == (192, 160)


def test_real_scene_no_data_outside_tiles_and_labels_in_place(scene, root):
    _, _, windows = _tile_grid(scene.image_files)
    covered = np.zeros(scene.labels.shape, dtype=bool)
    for r0, r1, c0, c1 in windows:
        covered[r0:r1, c0:c1] = True
    assert covered.sum() == 18 * 32 * 32
    np.testing.assert_array_equal(scene.cube.nodata_mask, ~covered)
    assert (scene.cube.data[:, ~covered] == NODATA).all()
    assert (scene.labels[~covered] == 0).all()
    # the label mosaic is the whole-scene land-cover raster's window under the tiles
    with rasterio.open(root / "enmap_potsdam" / "enmap_landcover_unstyled.tif") as src:
        assert src.shape == (200, 330) and str(src.crs) == "EPSG:32633"
        col0 = round((scene.cube.transform.c - src.transform.c) / 30)
        row0 = round((src.transform.f - scene.cube.transform.f) / 30)
        landcover = src.read(1)[row0 : row0 + 192, col0 : col0 + 160].astype(np.int64)
    assert (row0, col0) == (0, 64)
    np.testing.assert_array_equal(np.where(covered, landcover, 0), scene.labels)
    assert scene.class_counts == list(scene.card.class_counts)


def test_real_scene_verifies(scene, root):
    checks = verify_dataset("enmap_potsdam", root)
    assert len(checks) == 37 and {c.status for c in checks} == {"ok"}
    joined = "".join(scene.card.files[f].sha256 for f in scene.card.form().image.files)
    assert scene.fingerprint == hashlib.sha256(joined.encode()).hexdigest()


def test_real_scene_disjoint_split_is_leak_free(root):
    from scipy.ndimage import maximum_filter

    from hsi.data.datamodule import HyperspectralPatchDataModule

    patch = 11
    dm = HyperspectralPatchDataModule(
        dataset="enmap_potsdam",
        root=str(root),
        protocol="disjoint",
        patch_size=patch,
        block_size=16,
        pca_components=30,
    )
    dm.setup("fit")
    labels = dm.scene.labels
    masks = {}
    for part in ("train", "val", "test"):
        idx = dm.split.indices(part)
        masks[part] = np.zeros(labels.shape, dtype=bool)
        masks[part][idx[:, 0], idx[:, 1]] = True
        assert (labels[masks[part]] > 0).all()
        assert dm.scene.cube.valid_mask[masks[part]].all()
    near_train = maximum_filter(masks["train"].astype(np.uint8), size=patch) > 0
    assert not (near_train & (masks["val"] | masks["test"])).any()
    counts = dm.split.counts(labels, dm.num_classes)
    for part in ("train", "val", "test"):
        assert all(c > 0 for c in counts[part]), (part, counts[part])
    assert dm.padded_cube.shape[0] == 30
