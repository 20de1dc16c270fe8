"""Tests for hsi.data.writers: atomic, tiled, compressed GeoTIFFs that round-trip."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.io
from affine import Affine
from conftest import real
from rasterio.crs import CRS

from hsi.data.cube import SpectralCube
from hsi.data.readers import read_cube, read_labels
from hsi.data.writers import atomic_output, write_geotiff
from hsi.errors import ConfigError, DataError

TRANSFORM = Affine(30, 0, 366015, 0, -30, 5809965)


def leftovers(directory: Path) -> list[str]:
    """Temporary or sidecar files a writer must never leave behind."""
    return sorted(
        p.name for p in directory.iterdir() if p.name.startswith(".") or p.suffix == ".xml"
    )


def sample_cube(nodata: float | None = -9999.0) -> SpectralCube:
    rng = np.random.default_rng(0)
    data = rng.random((4, 20, 40)).astype(np.float32)
    mask = np.zeros((20, 40), dtype=bool)
    mask[3:6, 10:14] = True
    return SpectralCube(
        data=data,
        wavelengths=np.array([418.24, 550.5, 865.0, 2445.53]),
        band_names=["blue", "green", "nir", "swir"],
        nodata_mask=mask,
        crs=CRS.from_epsg(32633),
        transform=TRANSFORM,
        nodata=nodata,
        metadata={"fwhm": [6.9, 7.0, 7.1, 7.2]},
    )


# --------------------------------------------------------------------------------------
# round trips
# --------------------------------------------------------------------------------------


def test_cube_round_trip(tmp_path: Path) -> None:
    cube = sample_cube()
    out = write_geotiff(tmp_path / "out" / "cube.tif", cube)  # parent is created
    assert out == tmp_path / "out" / "cube.tif" and out.is_file()
    back = read_cube(out)
    expected = cube.data.copy()
    expected[:, cube.nodata_mask] = -9999.0  # masked pixels carry the nodata value
    np.testing.assert_array_equal(back.data, expected)
    assert back.crs == cube.crs and back.transform == TRANSFORM
    assert back.nodata == -9999.0
    np.testing.assert_array_equal(back.nodata_mask, cube.nodata_mask)
    np.testing.assert_array_equal(back.wavelengths, cube.wavelengths)  # exact, not approx
    assert back.band_names == cube.band_names
    np.testing.assert_allclose(back.metadata["fwhm"], [6.9, 7.0, 7.1, 7.2])
    assert not np.shares_memory(back.data, cube.data)
    assert cube.data[0, 3, 10] != -9999.0  # the caller's cube was not modified
    assert leftovers(tmp_path / "out") == []


def test_mask_without_nodata_uses_internal_mask(tmp_path: Path) -> None:
    cube = sample_cube(nodata=None)
    back = read_cube(write_geotiff(tmp_path / "m.tif", cube))
    np.testing.assert_array_equal(back.data, cube.data)  # values untouched
    np.testing.assert_array_equal(back.nodata_mask, cube.nodata_mask)
    assert [p.name for p in tmp_path.iterdir()] == ["m.tif"]  # mask is inside the file


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_layout_compression_and_tiling(tmp_path: Path) -> None:
    big = write_geotiff(tmp_path / "big.tif", np.zeros((2, 300, 280), dtype=np.float32))
    small = write_geotiff(tmp_path / "small.tif", np.zeros((20, 40), dtype=np.int16))
    with rasterio.open(big) as src:
        assert src.block_shapes == [(256, 256)] * 2
        structure = src.tags(ns="IMAGE_STRUCTURE")
        assert structure["COMPRESSION"] == "DEFLATE" and structure["PREDICTOR"] == "3"
        assert structure["INTERLEAVE"] == "BAND"
    with rasterio.open(small) as src:
        assert src.count == 1 and src.dtypes == ("int16",)
        assert src.block_shapes == [(32, 64)]  # smallest powers of two covering 20×40
        assert src.tags(ns="IMAGE_STRUCTURE")["PREDICTOR"] == "2"
        assert src.crs is None


def test_plain_array_with_georef_tags_and_descriptions(tmp_path: Path) -> None:
    data = np.arange(2 * 5 * 6, dtype=np.uint16).reshape(2, 5, 6)
    out = write_geotiff(
        tmp_path / "a.tif",
        data,
        crs="EPSG:32633",
        transform=TRANSFORM,
        nodata=0,
        band_descriptions=["x", "y"],
        tags={"source": "test", "epoch": 3},
    )
    back = read_cube(out)
    np.testing.assert_array_equal(back.data, data)
    assert back.crs == CRS.from_epsg(32633) and back.transform == TRANSFORM
    assert back.band_names == ["x", "y"] and back.nodata == 0
    assert back.wavelengths is None
    assert back.metadata["tags"]["source"] == "test" and back.metadata["tags"]["epoch"] == "3"


def test_windowed_read_of_written_file(tmp_path: Path) -> None:
    cube = sample_cube()
    out = write_geotiff(tmp_path / "w.tif", cube)
    full = read_cube(out)
    part = read_cube(out, window=((2, 9), (5, 25)), bands=[1, 3])
    np.testing.assert_array_equal(part.data, full.data[[1, 3], 2:9, 5:25])
    assert part.transform == TRANSFORM @ Affine.translation(5, 2)
    np.testing.assert_array_equal(part.nodata_mask, full.nodata_mask[2:9, 5:25])
    np.testing.assert_array_equal(part.wavelengths, full.wavelengths[[1, 3]])


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_colormap_on_class_map(tmp_path: Path) -> None:
    classes = (np.arange(64).reshape(8, 8) % 3).astype(np.uint8)
    cmap = {0: (0, 0, 0), 1: (255, 0, 0), 2: (0, 128, 0, 255)}
    out = write_geotiff(tmp_path / "cls.tif", classes, colormap=cmap)
    with rasterio.open(out) as src:
        table = src.colormap(1)
    assert table[1] == (255, 0, 0, 255) and table[2] == (0, 128, 0, 255)
    np.testing.assert_array_equal(read_labels(out), classes)
    with pytest.raises(ConfigError, match="uint8 or uint16"):
        write_geotiff(tmp_path / "f.tif", classes.astype(np.float32), colormap=cmap)
    assert not (tmp_path / "f.tif").exists()


def test_bool_and_dtype_casts(tmp_path: Path) -> None:
    mask = np.eye(4, dtype=bool)
    back = read_cube(write_geotiff(tmp_path / "b.tif", mask))
    assert back.data.dtype == np.uint8 and back.data[0].sum() == 4
    floats = np.array([[0.0, 3.0], [7.0, 255.0]])
    assert (
        read_cube(write_geotiff(tmp_path / "u.tif", floats, dtype="uint8")).data.dtype == np.uint8
    )
    with pytest.raises(DataError, match=r"values 0\.0\.\.300\.0 do not fit in uint8"):
        write_geotiff(tmp_path / "o.tif", np.array([[0.0, 300.0]]), dtype="uint8")
    with pytest.raises(ConfigError, match="nodata=-1 cannot be stored in uint8"):
        write_geotiff(tmp_path / "n.tif", np.zeros((2, 2), np.uint8), nodata=-1)
    with pytest.raises(DataError, match="got shape"):
        write_geotiff(tmp_path / "d.tif", np.zeros((1, 2, 3, 4)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.tif", "u.tif"]


@pytest.mark.realdata
def test_real_enmap_round_trip(tmp_path: Path) -> None:
    cube = read_cube(real("enmap_potsdam/images/enmap_potsdam_tile_128_0.tif"))
    back = read_cube(write_geotiff(tmp_path / "enmap.tif", cube))
    np.testing.assert_array_equal(back.data, cube.data)
    np.testing.assert_array_equal(back.wavelengths, cube.wavelengths)
    assert back.band_names == cube.band_names and back.crs == cube.crs
    assert back.transform == cube.transform and back.nodata == -32768
    assert back.metadata["scales"] == cube.metadata["scales"]
    assert back.metadata["bbl"] == cube.metadata["bbl"]
    # the copy is tiled and compressed, the original is neither
    assert (tmp_path / "enmap.tif").stat().st_size < real(
        "enmap_potsdam/images/enmap_potsdam_tile_128_0.tif"
    ).stat().st_size


# --------------------------------------------------------------------------------------
# atomicity and refusal
# --------------------------------------------------------------------------------------


def test_existing_output_is_refused_unless_overwrite(tmp_path: Path) -> None:
    out = write_geotiff(tmp_path / "x.tif", np.zeros((3, 3), np.uint8))
    before = out.read_bytes()
    with pytest.raises(DataError, match=r"x\.tif already exists; pass overwrite=True.*--overwrite"):
        write_geotiff(out, np.ones((3, 3), np.uint8))
    assert out.read_bytes() == before
    write_geotiff(out, np.ones((3, 3), np.uint8), overwrite=True)
    assert read_cube(out).data.sum() == 9
    assert leftovers(tmp_path) == []


def test_failure_mid_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []

    def boom(self, *args, **kwargs):
        seen.extend(p.name for p in tmp_path.iterdir())
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(rasterio.io.DatasetWriter, "write", boom)
    with pytest.raises(RuntimeError, match="disk on fire"):
        write_geotiff(tmp_path / "cube.tif", sample_cube())
    # the temporary file existed while writing, and is gone now, as is the final file
    assert len(seen) == 1 and seen[0].startswith(".cube.tif.") and seen[0].endswith(".partial")
    assert list(tmp_path.iterdir()) == []


def test_failure_keeps_previous_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = write_geotiff(tmp_path / "keep.tif", np.zeros((4, 4), np.uint8))
    before = out.read_bytes()

    def boom(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(rasterio.io.DatasetWriter, "write", boom)
    with pytest.raises(KeyboardInterrupt):
        write_geotiff(out, np.ones((4, 4), np.uint8), overwrite=True)
    assert out.read_bytes() == before
    assert leftovers(tmp_path) == []


def test_atomic_output_for_other_writers(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    with atomic_output(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".report.json.")
        assert tmp.suffix == ".partial"
        tmp.write_text('{"ok": true}')
        assert not target.exists()  # nothing visible until the block succeeds
    assert target.read_text() == '{"ok": true}'
    with pytest.raises(ValueError, match="bad"):
        with atomic_output(target, overwrite=True) as tmp:
            tmp.write_text("half")
            raise ValueError("bad")
    assert target.read_text() == '{"ok": true}'
    with pytest.raises(DataError, match="already exists"):
        with atomic_output(target):
            pass
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_unwritable_directory_is_named(tmp_path: Path) -> None:
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("I am a file")
    with pytest.raises(DataError, match="cannot create output directory .*not_a_dir"):
        write_geotiff(blocker / "sub" / "c.tif", np.zeros((2, 2), np.uint8))
    if os.geteuid() == 0:
        return  # root writes anywhere; the file-as-parent case above covers the message
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(DataError, match=f"cannot write to directory {locked}"):
            write_geotiff(locked / "c.tif", np.zeros((2, 2), np.uint8))
    finally:
        locked.chmod(0o700)
