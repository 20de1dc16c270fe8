"""Tests for hsi.data.readers: every format to the same bands × height × width cube.

Synthetic files are generated in tmp_path in each format's real on-disk layout (MATLAB
v5 and v7.3, ENVI bsq/bil/bip with hand-written headers, GeoTIFFs written with
rasterio); the real scenes under ../shared/data are used when present and skipped
with a reason otherwise.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import rasterio
import scipy.io
from affine import Affine
from conftest import real
from rasterio.crs import CRS
from rasterio.windows import Window

from hsi.data.cube import SpectralCube
from hsi.data.readers import (
    mat_variables,
    read_cube,
    read_envi_header,
    read_labels,
    read_pixels_matrix,
)
from hsi.errors import ConfigError, DataError, HsiError

# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------


ENMAP_TILE = "enmap_potsdam/images/enmap_potsdam_tile_128_0.tif"


def cube_hwb(h: int = 6, w: int = 5, b: int = 4, dtype: str = "float64") -> np.ndarray:
    """A height × width × bands array whose values encode their position."""
    r, c, k = np.meshgrid(np.arange(h), np.arange(w), np.arange(b), indexing="ij")
    return (r * 100 + c * 10 + k).astype(dtype)


def write_mat73(path: Path, variables: dict[str, np.ndarray]) -> None:
    """Write a MATLAB v7.3 file the way MATLAB does: a 512-byte MAT header in the HDF5
    userblock and every array stored transposed (column-major) with ``MATLAB_class``."""
    classes = {"float64": "double", "float32": "single", "bool": "logical"}
    with h5py.File(path, "w", userblock_size=512) as f:
        for name, arr in variables.items():
            stored = arr.astype(np.uint8) if arr.dtype == bool else arr
            ds = f.create_dataset(name, data=np.ascontiguousarray(stored.T))
            ds.attrs["MATLAB_class"] = np.bytes_(classes.get(arr.dtype.name, arr.dtype.name))
    text = (
        b"MATLAB 7.3 MAT-file, Platform: GLNXA64, "
        b"Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
    )
    header = text.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM"
    with open(path, "r+b") as f:
        f.write(header.ljust(512, b"\x00"))


def write_envi(
    base: Path,
    cube_bhw: np.ndarray,
    interleave: str,
    *,
    byte_order: int = 0,
    offset: int = 0,
    binary_suffix: str = ".img",
    extra: str = "",
) -> tuple[Path, Path]:
    """Write an ENVI header + binary by hand (no GDAL), return (hdr, binary)."""
    codes = {"uint8": 1, "int16": 2, "int32": 3, "float32": 4, "float64": 5, "uint16": 12}
    b, h, w = cube_bhw.shape
    order = {"bsq": (0, 1, 2), "bil": (1, 0, 2), "bip": (1, 2, 0)}[interleave]
    arr = np.transpose(cube_bhw, order)
    arr = arr.astype(arr.dtype.newbyteorder(">" if byte_order else "<"))
    binary = base.with_suffix(binary_suffix) if binary_suffix else base
    with open(binary, "wb") as f:
        f.write(b"\x00" * offset)
        f.write(np.ascontiguousarray(arr).tobytes())
    hdr = base.with_suffix(".hdr")
    hdr.write_text(
        "ENVI\n"
        "description = {test cube\n  written by hand}\n"
        f"samples = {w}\nlines   = {h}\nbands   = {b}\n"
        f"header offset = {offset}\nfile type = ENVI Standard\n"
        f"data type = {codes[cube_bhw.dtype.name]}\ninterleave = {interleave}\n"
        f"byte order = {byte_order}\n{extra}"
    )
    return hdr, binary


def write_tif(path: Path, data: np.ndarray, **kwargs) -> Path:
    profile = {
        "driver": "GTiff",
        "count": data.shape[0],
        "height": data.shape[1],
        "width": data.shape[2],
        "dtype": data.dtype.name,
        "crs": CRS.from_epsg(32633),
        "transform": Affine(30, 0, 366015, 0, -30, 5809965),
    }
    band_tags = kwargs.pop("band_tags", None)
    ns_tags = kwargs.pop("ns_tags", None)
    tags = kwargs.pop("tags", None)
    profile.update(kwargs)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        for i, t in enumerate(band_tags or [], start=1):
            dst.update_tags(i, **t)
        for ns, t in (ns_tags or {}).items():
            dst.update_tags(ns=ns, **t)
        if tags:
            dst.update_tags(**tags)
    return path


# --------------------------------------------------------------------------------------
# MATLAB
# --------------------------------------------------------------------------------------


def test_mat_v5_hwb_is_transposed_to_bhw(tmp_path: Path) -> None:
    arr = cube_hwb()
    scipy.io.savemat(tmp_path / "c.mat", {"cube": arr, "note": "text", "scalar": 3.0})
    cube = read_cube(tmp_path / "c.mat")
    assert isinstance(cube, SpectralCube)
    assert cube.shape == (4, 6, 5)
    for k in range(4):
        np.testing.assert_array_equal(cube.data[k], arr[:, :, k])
    assert cube.data.flags.c_contiguous
    assert cube.metadata["variable"] == "cube" and cube.metadata["format"] == "mat-v5"
    assert cube.band_names == ["band_1", "band_2", "band_3", "band_4"]


def test_mat_v73_equals_v5(tmp_path: Path) -> None:
    arr = cube_hwb(7, 5, 3)
    gt = (np.arange(35).reshape(7, 5) % 4).astype(np.float64)
    scipy.io.savemat(tmp_path / "v5.mat", {"img": arr, "gt": gt})
    write_mat73(tmp_path / "v73.mat", {"img": arr, "gt": gt})
    # The generated file is a genuine v7.3 file as far as scipy is concerned.
    assert scipy.io.matlab.matfile_version(str(tmp_path / "v73.mat")) == (2, 0)
    with h5py.File(tmp_path / "v73.mat") as f:
        assert f["img"].shape == (3, 5, 7)  # h5py sees MATLAB's array transposed

    v5, v73 = read_cube(tmp_path / "v5.mat"), read_cube(tmp_path / "v73.mat")
    assert v73.shape == v5.shape == (3, 7, 5)
    np.testing.assert_array_equal(v73.data, v5.data)
    assert v73.metadata["format"] == "mat-v7.3"
    assert mat_variables(tmp_path / "v73.mat") == mat_variables(tmp_path / "v5.mat")
    assert mat_variables(tmp_path / "v73.mat")["img"] == ((7, 5, 3), "float64")
    np.testing.assert_array_equal(read_labels(tmp_path / "v73.mat"), gt.astype(np.int64))
    # Windowed/band reads slice the HDF5 dataset in its transposed order correctly.
    part = read_cube(tmp_path / "v73.mat", window=((1, 4), (2, 5)), bands=[2, 0])
    np.testing.assert_array_equal(part.data, v5.data[[2, 0], 1:4, 2:5])


def test_pixels_matrix_runs_down_the_columns_in_v5_and_v73(tmp_path: Path) -> None:
    """Unmixing releases (Jasper Ridge's ``Y``) store bands x pixels, pixels in MATLAB
    column-major order: pixel (row r, col c) is column c * rows + r."""
    cube = cube_hwb(4, 3, 5).transpose(2, 0, 1)  # (bands, rows, cols)
    y = cube.transpose(0, 2, 1).reshape(5, 12)  # column-major flattening of each band
    assert np.array_equal(y[:, 1 * 4 + 2], cube[:, 2, 1])
    sizes = {"nRow": np.array([[4.0]]), "nCol": np.array([[3.0]])}
    scipy.io.savemat(tmp_path / "v5.mat", {"Y": y, **sizes})
    write_mat73(tmp_path / "v73.mat", {"Y": y, **sizes})
    for name in ("v5.mat", "v73.mat"):
        out = read_pixels_matrix(tmp_path / name, "Y", shape=(4, 3))
        np.testing.assert_array_equal(out.data, cube)
        assert out.metadata["layout"] == "pixels"
    # Without its name, the one matrix is found (the 1 x 1 nRow and nCol are no candidates).
    found = read_pixels_matrix(tmp_path / "v5.mat", shape=(4, 3))
    assert found.metadata["variable"] == "Y"
    scipy.io.savemat(tmp_path / "bare.mat", {"Y": y})
    with pytest.raises(DataError, match="nRow=4, pixels_shape 6"):
        read_pixels_matrix(tmp_path / "v5.mat", "Y", shape=(6, 2))
    with pytest.raises(DataError, match=r"expected \(bands, 10\) for 5x2 pixels"):
        read_pixels_matrix(tmp_path / "bare.mat", shape=(5, 2))


def test_mat_v73_logical_labels(tmp_path: Path) -> None:
    target = np.zeros((4, 6), dtype=bool)
    target[1, 2] = True
    write_mat73(tmp_path / "t.mat", {"map": target, "data": cube_hwb(4, 6, 3)})
    labels = read_labels(tmp_path / "t.mat")
    assert labels.dtype == np.int64 and labels.shape == (4, 6)
    assert labels.sum() == 1 and labels[1, 2] == 1


def test_mat_variable_selection_errors(tmp_path: Path) -> None:
    p = tmp_path / "two.mat"
    scipy.io.savemat(p, {"a": cube_hwb(), "b": cube_hwb(3, 3, 3), "s": {"x": 1}})
    with pytest.raises(DataError, match=r"several candidate cube arrays \(a, b\).*variable="):
        read_cube(p)
    with pytest.raises(DataError, match=r"no variable 'zz'.*a 6×5×4 float64.*variable="):
        read_cube(p, "zz")
    with pytest.raises(DataError, match=r"'s' is a struct, not a numeric array"):
        read_cube(p, "s")
    assert read_cube(p, "b").shape == (3, 3, 3)
    q = tmp_path / "flat.mat"
    scipy.io.savemat(q, {"Y": np.ones((10, 20))})
    with pytest.raises(DataError, match=r"no 3-D numeric array.*Y 10×20"):
        read_cube(q)


def test_mat_labels_pick_integer_valued_2d(tmp_path: Path) -> None:
    p = tmp_path / "gt.mat"
    gt = np.array([[0, 1, 2], [2, 1, 0]], dtype=np.float64)
    scipy.io.savemat(p, {"abund": np.full((2, 3), 0.5), "gt": gt, "cube": cube_hwb(2, 3, 4)})
    labels = read_labels(p)
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(labels, gt)
    with pytest.raises(DataError, match="non-integer values"):
        read_labels(p, "abund")


def test_corrupt_mat(tmp_path: Path) -> None:
    p = tmp_path / "bad.mat"
    p.write_bytes(b"this is not a MATLAB file at all" * 10)
    with pytest.raises(DataError, match=r"bad\.mat: not a readable MATLAB file"):
        read_cube(p)


# --------------------------------------------------------------------------------------
# NumPy, layouts, dispatch errors
# --------------------------------------------------------------------------------------


def test_npy_layouts(tmp_path: Path) -> None:
    arr = cube_hwb(4, 3, 5, "float32")
    np.save(tmp_path / "hwb.npy", arr)
    np.save(tmp_path / "bhw.npy", np.transpose(arr, (2, 0, 1)))
    a = read_cube(tmp_path / "hwb.npy")
    b = read_cube(tmp_path / "bhw.npy", layout="bhw")
    assert a.shape == b.shape == (5, 4, 3)
    np.testing.assert_array_equal(a.data, b.data)
    assert not isinstance(a.data, np.memmap) and a.data.flags.writeable
    sub = read_cube(tmp_path / "hwb.npy", window=Window(1, 2, 2, 2), bands=[4, 1])
    np.testing.assert_array_equal(sub.data, a.data[[4, 1], 2:4, 1:3])
    assert sub.band_names == ["band_5", "band_2"]
    with pytest.raises(ConfigError, match="not a permutation"):
        read_cube(tmp_path / "hwb.npy", layout="hwx")
    with pytest.raises(ConfigError, match="variable= applies to .mat"):
        read_cube(tmp_path / "hwb.npy", "cube")


def test_npy_errors(tmp_path: Path) -> None:
    np.save(tmp_path / "s.npy", np.array([["a", "b"], ["c", "d"]]))
    with pytest.raises(DataError, match=r"s\.npy: holds <U1 values, not numbers"):
        read_cube(tmp_path / "s.npy")
    np.save(tmp_path / "two.npy", np.ones((3, 4)))
    with pytest.raises(DataError, match=r"not a 3-D cube"):
        read_cube(tmp_path / "two.npy")
    (tmp_path / "trunc.npy").write_bytes((tmp_path / "two.npy").read_bytes()[:100])
    with pytest.raises(DataError, match=r"trunc\.npy: not a readable \.npy"):
        read_cube(tmp_path / "trunc.npy")


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "cube.mat"
    with pytest.raises(DataError, match="file not found") as info:
        read_cube(missing)
    assert str(missing) in str(info.value)
    assert "\n" not in str(info.value)


def test_unknown_suffix_lists_supported(tmp_path: Path) -> None:
    p = tmp_path / "table.csv"
    p.write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match=r"unsupported file type '\.csv'.*\.mat.*\.npy.*\.hdr"):
        read_cube(p)


def test_bad_window_and_bands(tmp_path: Path) -> None:
    np.save(tmp_path / "c.npy", cube_hwb(4, 4, 3))
    with pytest.raises(DataError, match=r"outside the 4×4 image"):
        read_cube(tmp_path / "c.npy", window=((0, 5), (0, 2)))
    with pytest.raises(DataError, match=r"band indices \[3\] out of range for 3 bands"):
        read_cube(tmp_path / "c.npy", bands=[0, 3])
    with pytest.raises(ConfigError, match="window="):
        read_cube(tmp_path / "c.npy", window="top-left")


# --------------------------------------------------------------------------------------
# labels
# --------------------------------------------------------------------------------------


def test_labels_float_whole_numbers_and_errors(tmp_path: Path) -> None:
    np.save(tmp_path / "ok.npy", np.array([[0.0, 3.0], [1.0, 2.0]], dtype=np.float32))
    labels = read_labels(tmp_path / "ok.npy")
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(labels, [[0, 3], [1, 2]])
    np.save(tmp_path / "frac.npy", np.array([[0.0, 0.5]]))
    with pytest.raises(DataError, match=r"non-integer values \(e\.g\. 0\.5\)"):
        read_labels(tmp_path / "frac.npy")
    np.save(tmp_path / "nan.npy", np.array([[0.0, np.nan]]))
    with pytest.raises(DataError, match="NaN"):
        read_labels(tmp_path / "nan.npy")
    np.save(tmp_path / "cube.npy", np.zeros((3, 4, 5)))
    with pytest.raises(DataError, match="must be 2-D"):
        read_labels(tmp_path / "cube.npy")


def test_labels_geotiff_window(tmp_path: Path) -> None:
    lab = (np.arange(48).reshape(1, 6, 8) % 7).astype(np.float32)
    write_tif(tmp_path / "lab.tif", lab)
    labels = read_labels(tmp_path / "lab.tif", window=((1, 5), (2, 8)))
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(labels, lab[0, 1:5, 2:8])


# --------------------------------------------------------------------------------------
# GeoTIFF
# --------------------------------------------------------------------------------------


def test_geotiff_window_and_bands(tmp_path: Path) -> None:
    data = np.random.default_rng(0).random((5, 20, 24)).astype(np.float32)
    p = write_tif(tmp_path / "c.tif", data)
    full = read_cube(p)
    np.testing.assert_array_equal(full.data, data)
    assert full.transform == Affine(30, 0, 366015, 0, -30, 5809965)
    for window in (Window(4, 3, 10, 8), ((3, 11), (4, 14))):
        part = read_cube(p, window=window, bands=[3, 1])
        np.testing.assert_array_equal(part.data, full.data[[3, 1], 3:11, 4:14])
        assert part.transform == Affine(30, 0, 366015 + 4 * 30, 0, -30, 5809965 - 3 * 30)
        assert part.crs == full.crs
        assert part.band_names == ["band_4", "band_2"]
    with pytest.raises(ConfigError, match="applies to .mat/.npy"):
        read_cube(p, layout="hwb")


def test_geotiff_nodata_mask_needs_all_bands(tmp_path: Path) -> None:
    data = np.ones((3, 4, 5), dtype=np.int16)
    data[1] = -9999  # a whole bad band, as in EnMAP L2A: must not mask every pixel
    data[:, 2, 3] = -9999  # a real no-data pixel
    cube = read_cube(write_tif(tmp_path / "n.tif", data, nodata=-9999))
    assert cube.nodata == -9999
    expected = np.zeros((4, 5), dtype=bool)
    expected[2, 3] = True
    np.testing.assert_array_equal(cube.nodata_mask, expected)


def test_geotiff_nan_nodata(tmp_path: Path) -> None:
    data = np.ones((2, 3, 3), dtype=np.float32)
    data[:, 0, 0] = np.nan
    data[0, 1, 1] = np.nan  # NaN in one band only: still a pixel with data
    cube = read_cube(write_tif(tmp_path / "nan.tif", data, nodata=np.nan))
    assert np.isnan(cube.nodata)
    assert cube.nodata_mask.sum() == 1 and cube.nodata_mask[0, 0]


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("band_um", [450.0, 550.0, 650.0]),
        ("envi_nm", [401.5, 502.5, 603.5]),
        ("default_list", [1000.0, 1100.0, 1200.0]),
        ("band_upper_nounits", [1500.0, 1600.0, 1700.0]),
    ],
)
def test_geotiff_wavelength_sources(tmp_path: Path, kind: str, expected: list[float]) -> None:
    data = np.zeros((3, 2, 2), dtype=np.float32)
    kwargs: dict = {}
    if kind == "band_um":
        kwargs["band_tags"] = [
            {"wavelength": str(w / 1000), "wavelength_units": "Micrometers"} for w in expected
        ]
    elif kind == "envi_nm":
        kwargs["ns_tags"] = {
            "ENVI": {
                "wavelength": "{" + ", ".join(map(str, expected)) + "}",
                "wavelength_units": "Nanometers",
            }
        }
    elif kind == "default_list":
        kwargs["tags"] = {"wavelength": "{1.0, 1.1, 1.2}", "wavelength_units": "um"}
    else:  # upper-case key and no units: micrometres guessed from the magnitude
        kwargs["band_tags"] = [{"WAVELENGTH": str(w / 1000)} for w in expected]
    cube = read_cube(write_tif(tmp_path / f"{kind}.tif", data, **kwargs))
    np.testing.assert_allclose(cube.wavelengths, expected)
    sub = read_cube(tmp_path / f"{kind}.tif", bands=[2, 0])
    np.testing.assert_allclose(sub.wavelengths, [expected[2], expected[0]])


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_geotiff_scales_descriptions_and_no_georef(tmp_path: Path) -> None:
    p = tmp_path / "plain.tif"
    with rasterio.open(
        p, "w", driver="GTiff", count=2, height=3, width=4, dtype="uint16"
    ) as dst:  # no CRS, no transform
        dst.write(np.ones((2, 3, 4), dtype=np.uint16))
        dst.scales = (0.0001, 0.001)
        dst.offsets = (0.0, -0.1)
        dst.set_band_description(1, "blue")
    cube = read_cube(p)
    assert cube.crs is None and cube.transform is None
    assert cube.metadata["scales"] == [0.0001, 0.001]
    assert cube.metadata["offsets"] == [0.0, -0.1]
    assert cube.band_names == ["blue", "band_2"]
    assert cube.nodata_mask is None  # nothing declares no-data


def test_truncated_geotiff_is_a_data_error(tmp_path: Path) -> None:
    data = np.random.default_rng(1).random((4, 64, 64)).astype(np.float32)
    good = write_tif(tmp_path / "good.tif", data)
    blob = good.read_bytes()
    for frac in (0.5, 0.9):
        bad = tmp_path / f"trunc_{frac}.tif"
        bad.write_bytes(blob[: int(len(blob) * frac)])
        with pytest.raises(DataError) as info:
            read_cube(bad)
        msg = str(info.value)
        assert str(bad) in msg and "truncated or corrupt" in msg and "\n" not in msg
    junk = tmp_path / "junk.tif"
    junk.write_bytes(b"II*\x00" + b"\xff" * 64)
    with pytest.raises(DataError, match=r"junk\.tif: cannot open as a raster"):
        read_cube(junk)


def test_mosaic_of_tiles(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    left = rng.random((3, 4, 5)).astype(np.float32)
    right = rng.random((3, 4, 5)).astype(np.float32)
    a = write_tif(tmp_path / "a.tif", left, nodata=-1.0)
    b = write_tif(
        tmp_path / "b.tif",
        right,
        nodata=-1.0,
        transform=Affine(30, 0, 366015 + 150, 0, -30, 5809965),
    )
    cube = read_cube([b, a], bands=[2, 0])
    np.testing.assert_array_equal(cube.data, np.concatenate([left, right], axis=2)[[2, 0]])
    assert cube.transform == Affine(30, 0, 366015, 0, -30, 5809965)
    assert cube.crs == CRS.from_epsg(32633) and cube.nodata == -1.0
    assert not cube.nodata_mask.any()
    # a gap between tiles is no-data
    c = write_tif(
        tmp_path / "c.tif",
        right,
        nodata=-1.0,
        transform=Affine(30, 0, 366015 + 300, 0, -30, 5809965),
    )
    gap = read_cube([a, c])
    assert gap.width == 15
    assert gap.nodata_mask[:, 5:10].all() and not gap.nodata_mask[:, :5].any()
    other = write_tif(tmp_path / "utm32.tif", right, crs=CRS.from_epsg(32632))
    with pytest.raises(DataError, match=r"utm32\.tif: CRS EPSG:32632 differs"):
        read_cube([a, other])
    fewer = write_tif(tmp_path / "two_bands.tif", right[:2])
    with pytest.raises(DataError, match=r"two_bands\.tif: 2 bands but a\.tif has 3"):
        read_cube([a, fewer])


# --------------------------------------------------------------------------------------
# ENVI
# --------------------------------------------------------------------------------------

MAP_INFO = (
    "map info = {UTM, 1.000, 1.000, 366015.0, 5809965.0, 3.0e+01, 3.0e+01, "
    "33, North, WGS-84, units=Meters}\n"
)


@pytest.mark.parametrize(
    ("interleave", "byte_order", "offset", "dtype"),
    [("bsq", 0, 0, "float32"), ("bil", 1, 128, "int16"), ("bip", 0, 64, "uint16")],
)
def test_envi_round_trip(
    tmp_path: Path, interleave: str, byte_order: int, offset: int, dtype: str
) -> None:
    data = np.transpose(cube_hwb(6, 7, 3, dtype), (2, 0, 1)).copy()
    data[:, 0, 0] = 9  # a no-data pixel (all bands equal the ignore value)
    extra = (
        "wavelength units = Micrometers\n"
        "wavelength = {\n 0.450, 0.550,\n 0.650 }\n"
        "fwhm = {0.01, 0.01, 0.02}\n"
        "band names = {Blue, Green, Red}\n"
        "data ignore value = 9\n" + MAP_INFO
    )
    hdr, binary = write_envi(
        tmp_path / "scene", data, interleave, byte_order=byte_order, offset=offset, extra=extra
    )
    for path in (hdr, binary):  # the header or the binary beside it
        cube = read_cube(path)
        np.testing.assert_array_equal(cube.data, data)
        assert cube.data.dtype == np.dtype(dtype) and cube.data.dtype.isnative
        np.testing.assert_allclose(cube.wavelengths, [450, 550, 650])
        np.testing.assert_allclose(cube.metadata["fwhm"], [10, 10, 20])
        assert cube.band_names == ["Blue", "Green", "Red"]
        assert cube.nodata == 9 and cube.nodata_mask.sum() == 1 and cube.nodata_mask[0, 0]
        assert cube.crs == CRS.from_epsg(32633)
        assert cube.transform == Affine(30, 0, 366015, 0, -30, 5809965)
    part = read_cube(hdr, window=((2, 5), (1, 6)), bands=[2, 0])
    np.testing.assert_array_equal(part.data, data[[2, 0], 2:5, 1:6])
    assert part.transform == Affine(30, 0, 366045, 0, -30, 5809905)
    assert part.band_names == ["Red", "Blue"]
    np.testing.assert_allclose(part.wavelengths, [650, 450])
    # GDAL's own ENVI driver agrees on pixels and georeference.
    with rasterio.open(binary) as src:
        np.testing.assert_array_equal(src.read(), data)
        assert src.transform == cube.transform


def test_envi_rotation_and_wkt_match_gdal(tmp_path: Path) -> None:
    data = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    wkt = CRS.from_epsg(3035).to_wkt()
    extra = (
        "map info = {Lambert Azimuthal, 2.5, 3.0, 4321000.0, 3210000.0, 30.0, 20.0, "
        "units=Meters, rotation=30.0}\n"
        f"coordinate system string = {{{wkt}}}\n"
    )
    hdr, binary = write_envi(tmp_path / "rot", data, "bsq", binary_suffix=".dat", extra=extra)
    cube = read_cube(hdr)
    assert cube.crs == CRS.from_epsg(3035)
    with rasterio.open(binary) as src:
        assert cube.transform.almost_equals(src.transform)


def test_envi_header_parser(tmp_path: Path) -> None:
    hdr, _ = write_envi(
        tmp_path / "h", np.zeros((2, 2, 2), np.uint8), "bsq", extra="Band Names = {a,\n b}\n"
    )
    header = read_envi_header(hdr)
    assert header["samples"] == "2" and header["interleave"] == "bsq"
    assert header["description"] == "test cube\n  written by hand"
    assert header["band names"] == "a,\n b"
    (tmp_path / "x.hdr").write_text("samples = 3\n")
    with pytest.raises(DataError, match="not an ENVI header"):
        read_envi_header(tmp_path / "x.hdr")


def test_envi_errors(tmp_path: Path) -> None:
    data = np.ones((3, 4, 5), dtype=np.float32)
    hdr, binary = write_envi(tmp_path / "t", data, "bsq")
    binary.write_bytes(binary.read_bytes()[:100])
    with pytest.raises(
        DataError, match=r"t\.img: holds 100 bytes but t\.hdr describes 240.*truncated"
    ):
        read_cube(hdr)
    binary.unlink()
    with pytest.raises(DataError, match=r"binary file is missing \(looked for t, t\.img"):
        read_cube(hdr)
    hdr2, _ = write_envi(tmp_path / "c", data, "bsq")
    hdr2.write_text(hdr2.read_text().replace("data type = 4", "data type = 6"))
    with pytest.raises(DataError, match="data type 6 is not supported"):
        read_cube(hdr2)
    hdr3, _ = write_envi(tmp_path / "m", data, "bsq")
    hdr3.write_text(hdr3.read_text().replace("lines   = 4\n", ""))
    with pytest.raises(DataError, match="lacks 'lines = ...'"):
        read_cube(hdr3)


def test_envi_labels(tmp_path: Path) -> None:
    lab = (np.arange(20).reshape(1, 4, 5) % 3).astype(np.uint8)
    hdr, _ = write_envi(tmp_path / "cls", lab, "bsq", extra="file type = ENVI Classification\n")
    labels = read_labels(hdr, window=((1, 3), (0, 5)))
    np.testing.assert_array_equal(labels, lab[0, 1:3])
    assert labels.dtype == np.int64


def test_all_errors_are_hsi_errors(tmp_path: Path) -> None:
    """The CLI prints HsiError without a traceback, so every user error must be one."""
    assert issubclass(DataError, HsiError) and issubclass(ConfigError, HsiError)


# --------------------------------------------------------------------------------------
# real data (skipped with a reason when ../shared/data is absent)
# --------------------------------------------------------------------------------------


@pytest.mark.realdata
def test_real_indian_pines_mat_equals_npy() -> None:
    mat = read_cube(real("indian_pines/Indian_pines_corrected.mat"))
    npy = read_cube(real("indian_pines/Indian_pines_corrected.npy"))
    assert mat.shape == npy.shape == (200, 145, 145)
    np.testing.assert_array_equal(mat.data, npy.data)
    labels = read_labels(real("indian_pines/Indian_pines_gt.mat"))
    assert labels.shape == (145, 145) and labels.dtype == np.int64
    assert set(np.unique(labels)) == set(range(17))  # 16 classes + 0 (unlabelled)
    assert int((labels > 0).sum()) == 10249
    np.testing.assert_array_equal(labels, read_labels(real("indian_pines/Indian_pines_gt.npy")))


@pytest.mark.realdata
def test_real_sandiego_v73_equals_v5() -> None:
    v73 = real("target_detection/alt_sandiego_v73/Sandiego.mat")
    v5 = real("target_detection/sandiego.mat")
    a, b = read_cube(v73), read_cube(v5)
    assert a.shape == b.shape == (189, 100, 100)
    np.testing.assert_array_equal(a.data, b.data)
    np.testing.assert_array_equal(read_labels(v73), read_labels(v5))
    assert mat_variables(v73)["hsi"] == ((100, 100, 189), "float64")


@pytest.mark.realdata
def test_real_enmap_tile() -> None:
    cube = read_cube(real(ENMAP_TILE))
    assert cube.shape == (224, 32, 32)
    assert cube.crs.to_epsg() == 32633
    assert cube.transform == Affine(30, 0, 366015, 0, -30, 5809965)
    assert cube.nodata == -32768
    assert cube.wavelengths[0] == pytest.approx(418.24)
    assert cube.wavelengths[-1] == pytest.approx(2445.53)
    # VNIR (bands 1-91) and SWIR (92-224) detectors overlap: 993.08 nm is followed by 902.26.
    assert np.all(np.diff(cube.wavelengths[:91]) > 0) and np.all(np.diff(cube.wavelengths[91:]) > 0)
    assert cube.wavelengths[90] == pytest.approx(993.083) and cube.wavelengths[91] < 910
    assert cube.metadata["scales"][0] == pytest.approx(1e-4)
    assert cube.metadata["bbl"].count(0) == 6  # six bad bands filled with -32768...
    assert not cube.nodata_mask.any()  # ...which must not mark every pixel as no-data
    assert cube.band_names[0].startswith("band 1")
    part = read_cube(real(ENMAP_TILE), window=Window(8, 4, 16, 12), bands=[0, 100, 223])
    np.testing.assert_array_equal(part.data, cube.data[[0, 100, 223], 4:16, 8:24])
    assert part.transform == Affine(30, 0, 366015 + 240, 0, -30, 5809965 - 120)
    np.testing.assert_allclose(part.wavelengths, cube.wavelengths[[0, 100, 223]])


@pytest.mark.realdata
def test_real_enmap_mosaic() -> None:
    names = ["96_0", "128_0", "96_32", "128_32"]
    paths = [real(f"enmap_potsdam/images/enmap_potsdam_tile_{n}.tif") for n in names]
    mosaic = read_cube(paths)
    assert mosaic.shape == (224, 64, 64)
    assert mosaic.transform == Affine(30, 0, 365055, 0, -30, 5809965)
    assert mosaic.crs.to_epsg() == 32633 and mosaic.nodata == -32768
    tiles = {n: read_cube(p).data for n, p in zip(names, paths, strict=True)}
    np.testing.assert_array_equal(mosaic.data[:, :32, :32], tiles["96_0"])
    np.testing.assert_array_equal(mosaic.data[:, :32, 32:], tiles["128_0"])
    np.testing.assert_array_equal(mosaic.data[:, 32:, 32:], tiles["128_32"])
    assert mosaic.wavelengths[0] == pytest.approx(418.24)
    assert not mosaic.nodata_mask.any()


@pytest.mark.realdata
def test_real_enmap_truncated_copy(tmp_path: Path) -> None:
    copy = tmp_path / "enmap_truncated.tif"
    shutil.copyfile(real(ENMAP_TILE), copy)
    with open(copy, "r+b") as f:
        f.truncate(copy.stat().st_size // 2)
    with pytest.raises(DataError, match="enmap_truncated.tif: reading the pixels failed"):
        read_cube(copy)


@pytest.mark.realdata
def test_real_enmap_labels() -> None:
    labels = read_labels(real("enmap_potsdam/labels/enmap_potsdam_tile_128_0.tif"))
    assert labels.shape == (32, 32) and labels.dtype == np.int64
    assert labels.min() >= 0 and labels.max() <= 6
