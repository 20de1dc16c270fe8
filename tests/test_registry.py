"""Dataset cards and the registry: parsing, locating, loading, verifying, downloading, CLI."""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import yaml
from conftest import real

from hsi.data import cards, registry
from hsi.data.datasets_cli import datasets_main
from hsi.data.registry import (
    cards_dir,
    download_dataset,
    get_card,
    list_datasets,
    load_dataset,
    load_scene,
    locate_files,
    resolve_root,
    verify_dataset,
)
from hsi.errors import ConfigError, DataError

EXPECTED = {
    "indian_pines",
    "salinas",
    "salinas_a",
    "pavia_university",
    "pavia_centre",
    "ksc",
    "botswana",
    "whu_hi_longkou",
    "whu_hi_honghu",
    "whu_hi_hanchuan",
    "houston2013",
    "enmap_potsdam",
    # restoration cards (kind: restoration)
    "icvl",
    "cave",
    "harvard",
    "chikusei",
    "washington_dc_mall",
    "jasper_ridge",
    # detection benchmarks (kind: detection)
    "spod",
}
RESTORATION = {"icvl", "cave", "harvard", "chikusei", "washington_dc_mall", "jasper_ridge"}
DETECTION = {"spod"}


def _shared_data() -> Path | None:
    env = os.environ.get("HSI_SHARED_DATA")
    cands = [Path(env)] if env else []
    cands.append(Path(__file__).resolve().parents[1].parent / "shared" / "data")
    for c in cands:
        if (c / "indian_pines").is_dir():
            return c
    return None


SHARED = _shared_data()
needs_shared = pytest.mark.skipif(
    SHARED is None,
    reason="real data not found (../shared/data or $HSI_SHARED_DATA); Indian Pines/Salinas-A "
    "loading is tested only where it exists",
)


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path):
    """No test may see a user's data root or cache."""
    monkeypatch.delenv("HSI_DATA", raising=False)
    monkeypatch.delenv("HSI_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


# ---------------------------------------------------------------------------- cards


def test_every_card_parses_and_is_consistent():
    names = list_datasets()
    assert set(names) == EXPECTED
    raw_names = []
    for path in sorted(cards_dir().glob("*.yaml")):
        raw = yaml.safe_load(path.read_text())
        raw_names.append(raw["name"])
        card = get_card(raw["name"])
        assert card.name == path.stem
        assert card.num_classes == len(card.class_names) == len(card.label_values)
        assert len(set(card.label_values)) == card.num_classes
        assert card.ignore_label not in card.label_values
        if card.class_counts is not None:
            assert len(card.class_counts) == card.num_classes
        assert card.forms, card.name
        for form in card.forms:
            for f in form.files:
                assert f in card.files, f"{card.name}: {f} missing from files"
        for spec in card.files.values():
            if spec.sha256:
                assert len(spec.sha256) == 64 and int(spec.sha256, 16) >= 0
            if spec.md5:
                assert len(spec.md5) == 32 and int(spec.md5, 16) >= 0
        assert card.wavelengths_nm is None or len(card.wavelengths_nm) == card.bands
        for key in ("source_url", "licence", "citation", "notes"):
            assert getattr(card, key), f"{card.name}: {key} is empty"
    assert len(raw_names) == len(set(raw_names))


def test_aliases_are_unique_and_resolve():
    owner: dict[str, str] = {}
    for n in list_datasets():
        card = get_card(n)
        for a in (card.name, *card.aliases):
            key = cards._squash(a)
            assert owner.setdefault(key, n) == n, f"alias {a} used by {owner[key]} and {n}"
            assert get_card(a).name == n


def test_card_shapes_and_class_facts():
    ip = get_card("indian_pines")
    assert ip.cube_shape == (200, 145, 145)
    assert ip.class_names[0] == "Alfalfa" and ip.class_names[-1] == "Stone-Steel-Towers"
    assert sum(ip.class_counts) == 10249
    sa = get_card("salinas_a")
    assert sa.label_values == [1, 10, 11, 12, 13, 14]
    assert sa.class_names[1] == "Corn_senesced_green_weeds"
    assert sa.label_map == {1: 1, 10: 2, 11: 3, 12: 4, 13: 5, 14: 6, 0: 0}
    assert sum(get_card("salinas").class_counts) == 54129
    assert sum(get_card("pavia_university").class_counts) == 42776
    assert get_card("whu_hi_longkou").cube_shape == (270, 550, 400)
    assert get_card("whu_hi_honghu").num_classes == 22
    assert get_card("whu_hi_hanchuan").cube_shape == (274, 1217, 303)
    assert get_card("houston2013").cube_shape == (144, 349, 1905)
    assert get_card("salinas").files["Salinas_corrected.mat"].md5 == (
        "485d8802f4a6b4ebc0767d48dd0da06b"
    )


@pytest.mark.parametrize("spelling", ["Indian-Pines", "INDIAN_PINES", "IndianPines", "ip"])
def test_name_variants_accepted(spelling):
    assert get_card(spelling).name == "indian_pines"


def test_unknown_name_suggests_closest():
    with pytest.raises(ConfigError) as err:
        get_card("indian_pine")
    msg = str(err.value)
    assert "did you mean indian_pines" in msg
    assert "salinas_a" in msg and "houston2013" in msg
    with pytest.raises(ConfigError, match="known datasets"):
        get_card("no_such_scene_at_all")


def test_bad_card_is_a_clear_config_error(tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text(
        "name: broken\ntitle: B\nsensor: S\nfolder: b\nshape: {height: 2, width: 2, bands: 3}\n"
        "classes: [a, b]\nclass_counts: [1]\nforms:\n  - name: mat\n"
        "    image: {file: x.mat}\n    labels: {file: y.mat}\nfiles:\n  x.mat: {}\n  y.mat: {}\n"
    )
    with pytest.raises(ConfigError, match="class_counts needs 2"):
        cards._parse_card(bad)
    bad.write_text(bad.read_text().replace("class_counts: [1]\n", "").replace("  y.mat: {}\n", ""))
    with pytest.raises(ConfigError, match="y.mat, which is not under files"):
        cards._parse_card(bad)


# ---------------------------------------------------------------------------- data root


def test_resolve_root_order(monkeypatch, tmp_path):
    assert resolve_root() == (tmp_path / "xdg-cache" / "hsi").resolve()
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert resolve_root() == (Path.home() / ".cache" / "hsi").resolve()
    monkeypatch.setenv("HSI_DATA", str(tmp_path / "env-root"))
    assert resolve_root() == (tmp_path / "env-root").resolve()
    assert resolve_root(tmp_path / "arg") == (tmp_path / "arg").resolve()


def test_cache_root_order(monkeypatch, tmp_path):
    """Derived data (converted benchmarks) never goes into the data root: $HSI_CACHE, else
    $XDG_CACHE_HOME/hsi, else ~/.cache/hsi, whatever $HSI_DATA says."""
    monkeypatch.setenv("HSI_DATA", str(tmp_path / "data"))
    assert registry.cache_root() == (tmp_path / "xdg-cache" / "hsi").resolve()
    monkeypatch.setenv("HSI_CACHE", str(tmp_path / "mine"))
    assert registry.cache_root() == (tmp_path / "mine").resolve()
    monkeypatch.delenv("HSI_CACHE")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert registry.cache_root() == (Path.home() / ".cache" / "hsi").resolve()


def test_missing_files_message_names_files_folder_and_command(tmp_path):
    with pytest.raises(DataError) as err:
        locate_files("indian_pines", root=tmp_path)
    msg = str(err.value)
    for f in (
        "Indian_pines_corrected.mat",
        "Indian_pines_gt.mat",
        "Indian_pines_corrected.npy",
        "Indian_pines_gt.npy",
    ):
        assert f in msg
    assert str(tmp_path.resolve() / "indian_pines") in msg
    assert "hsi datasets download indian_pines" in msg
    assert msg.count("\n") <= 3

    # A scene without download URLs points at its source page instead.
    with pytest.raises(DataError) as err:
        locate_files("whu_hi_longkou", root=tmp_path)
    assert "rsidea.whu.edu.cn" in str(err.value) and "WHU_Hi_LongKou_gt.mat" in str(err.value)

    with pytest.raises(ConfigError, match="forms are: mat, npy"):
        locate_files("indian_pines", root=tmp_path, form="tif")


def test_partial_files_are_reported(tmp_path):
    folder = tmp_path / "salinas"
    folder.mkdir()
    (folder / "Salinas_gt.mat").write_bytes(b"x")
    with pytest.raises(DataError, match="found only Salinas_gt.mat"):
        locate_files("salinas", root=tmp_path)


# ---------------------------------------------------------------------------- real data


@needs_shared
def test_indian_pines_both_forms_identical():
    mat = load_dataset("indian_pines", root=SHARED, form="mat")
    npy = load_dataset("indian_pines", root=SHARED, form="npy")
    assert mat.form == "mat" and npy.form == "npy"
    assert mat.cube.shape == (200, 145, 145)
    np.testing.assert_array_equal(mat.cube.data, npy.cube.data)
    np.testing.assert_array_equal(mat.labels, npy.labels)
    assert mat.labels.dtype == np.int64 and mat.labels.shape == (145, 145)
    assert mat.num_classes == 16 and mat.class_names == get_card("indian_pines").class_names
    assert mat.class_counts == list(get_card("indian_pines").class_counts)
    assert int(mat.labels.max()) == 16 and int((mat.labels == 0).sum()) == 10776
    # Default form is the first complete one.
    assert load_dataset("Indian-Pines", root=SHARED).form == "mat"
    # Fingerprint = sha256 of the image file, computed lazily once.
    assert mat.fingerprint == get_card("indian_pines").files["Indian_pines_corrected.mat"].sha256
    assert mat.fingerprint != npy.fingerprint


@needs_shared
def test_indian_pines_verify_ok():
    checks = {c.file: c for c in verify_dataset("indian_pines", root=SHARED)}
    assert checks["Indian_pines_corrected.mat"].status == "ok"
    assert checks["Indian_pines_gt.mat"].status == "ok"
    assert checks["Indian_pines_gt.npy"].status == "ok"
    assert checks["Indian_pines_corrected.mat"].algorithm == "sha256"


@needs_shared
def test_salinas_a_sparse_ids_become_contiguous():
    scene = load_dataset("salinas_a", root=SHARED)
    assert scene.cube.shape == (204, 83, 86)
    assert scene.num_classes == 6
    assert sorted(np.unique(scene.labels).tolist()) == [0, 1, 2, 3, 4, 5, 6]
    assert scene.class_counts == [391, 1343, 616, 1525, 674, 799]
    assert scene.class_names[0] == "Brocoli_green_weeds_1"
    assert scene.class_names[5] == "Lettuce_romaine_7wk"


@needs_shared
def test_hsi_data_env_is_honoured(monkeypatch):
    monkeypatch.setenv("HSI_DATA", str(SHARED))
    assert locate_files("salinas_a").image.name == "SalinasA_corrected.mat"


# ---------------------------------------------------------------------------- generated files


def _write_salinas(folder: Path, bands: int = 204) -> np.ndarray:
    """Files in the format of the GIC Salinas pair (v5 .mat, H x W x B uint16)."""
    folder.mkdir(parents=True, exist_ok=True)
    cube = np.zeros((512, 217, bands), dtype=np.uint16)
    cube[0, 0, :] = np.arange(bands, dtype=np.uint16)
    gt = np.zeros((512, 217), dtype=np.uint8)
    gt[0, :16] = np.arange(1, 17)
    gt[1, :3] = 16
    scipy.io.savemat(
        folder / "Salinas_corrected.mat", {"salinas_corrected": cube}, do_compression=True
    )
    scipy.io.savemat(folder / "Salinas_gt.mat", {"salinas_gt": gt})
    return gt


def test_salinas_generated_file_loads_through_registry(tmp_path):
    gt = _write_salinas(tmp_path / "salinas")
    scene = load_dataset("salinas", root=tmp_path)
    assert scene.cube.shape == (204, 512, 217)
    assert scene.cube.data[:, 0, 0].tolist() == list(range(204))
    np.testing.assert_array_equal(scene.labels, gt.astype(np.int64))
    assert scene.class_counts == [1] * 15 + [4]
    assert scene.class_names[-1] == "Vinyard_vertical_trellis"
    # Only an md5 is known for the cube: it reports a mismatch, not "ok".
    checks = {c.file: c for c in verify_dataset("salinas", root=tmp_path)}
    assert checks["Salinas_corrected.mat"].status == "mismatch"
    assert checks["Salinas_corrected.mat"].algorithm == "md5"
    assert checks["Salinas_gt.mat"].status == "mismatch"  # sha256 of our generated gt


def test_wrong_band_count_is_a_clear_error(tmp_path):
    _write_salinas(tmp_path / "salinas", bands=224)
    with pytest.raises(DataError) as err:
        load_dataset("salinas", root=tmp_path)
    msg = str(err.value)
    assert "card says 204 bands" in msg and "Salinas_corrected.mat has 224" in msg
    assert "uncorrected" in msg


def test_label_shape_and_values_checked(tmp_path):
    folder = tmp_path / "salinasA"
    folder.mkdir()
    cube = np.ones((83, 86, 204), dtype=np.int16)
    scipy.io.savemat(folder / "SalinasA_corrected.mat", {"salinasA_corrected": cube})
    gt = np.zeros((83, 86), dtype=np.uint8)
    gt[0, 0] = 2  # not a Salinas-A class id
    scipy.io.savemat(folder / "SalinasA_gt.mat", {"salinasA_gt": gt})
    with pytest.raises(DataError, match="label values 2 that the card does not define"):
        load_dataset("salinas_a", root=tmp_path)
    scipy.io.savemat(folder / "SalinasA_gt.mat", {"salinasA_gt": np.zeros((86, 83), np.uint8)})
    with pytest.raises(DataError, match="look transposed"):
        load_dataset("salinas_a", root=tmp_path)


def test_load_scene_custom_files(tmp_path):
    cube = np.arange(4 * 5 * 3, dtype=np.float32).reshape(4, 5, 3)
    labels = np.zeros((4, 5), dtype=np.int32)
    labels[0, 0], labels[1, 1], labels[2, 2] = 3, 7, 7
    np.save(tmp_path / "img.npy", cube)
    np.save(tmp_path / "gt.npy", labels)
    scene = load_scene(tmp_path / "img.npy", tmp_path / "gt.npy")
    assert scene.name == "custom" and scene.card is None
    assert scene.cube.shape == (3, 4, 5)
    assert scene.class_names == ["class_3", "class_7"]
    assert scene.class_counts == [1, 2]
    named = load_scene(tmp_path / "img.npy", tmp_path / "gt.npy", class_names=list("abcdefg"))
    assert named.labels[1, 1] == 7 and named.num_classes == 7
    with pytest.raises(DataError, match="exceed the 2 class names"):
        load_scene(tmp_path / "img.npy", tmp_path / "gt.npy", class_names=["a", "b"])
    np.save(tmp_path / "gt_bad.npy", np.zeros((5, 4), np.int32))
    with pytest.raises(DataError, match="labels in gt_bad.npy are 5x4"):
        load_scene(tmp_path / "img.npy", tmp_path / "gt_bad.npy")
    assert len(scene.fingerprint) == 64


# ---------------------------------------------------------------------------- download


class _FakeResponse(io.BytesIO):
    pass


def _no_network(*args, **kwargs):
    raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")


def test_download_offline_fails_fast(monkeypatch, tmp_path):
    monkeypatch.setattr(urllib.request, "urlopen", _no_network)
    with pytest.raises(DataError) as err:
        download_dataset("indian_pines", root=tmp_path)
    msg = str(err.value)
    assert "Indian_pines_corrected.mat" in msg and "Indian_pines_gt.mat" in msg
    assert str(tmp_path.resolve() / "indian_pines") in msg
    assert not list((tmp_path / "indian_pines").glob("*.partial"))
    # A scene without URLs fails before any network access.
    with pytest.raises(DataError, match="no download URL"):
        download_dataset("houston2013", root=tmp_path)


def test_download_success_and_checksum_mismatch(monkeypatch, tmp_path):
    payload = {"a.mat": b"cube-bytes", "b.mat": b"label-bytes"}
    card = cards._parse_card(_fake_card(tmp_path, payload))
    monkeypatch.setattr(registry, "get_card", lambda name: card)
    seen = []

    def fake_urlopen(url, timeout=None):
        seen.append(url)
        return _FakeResponse(payload[url.rsplit("/", 1)[1]])

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    root = tmp_path / "root"
    paths = download_dataset("fake", root=root)
    assert [p.name for p in paths] == ["a.mat", "b.mat"]
    assert (root / "fake" / "a.mat").read_bytes() == b"cube-bytes"
    assert not list((root / "fake").glob("*.partial"))
    assert len(seen) == 2
    # Present and verified: not downloaded again.
    download_dataset("fake", root=root)
    assert len(seen) == 2

    payload["a.mat"] = b"something else"
    (root / "fake" / "a.mat").unlink()
    with pytest.raises(DataError, match="sha256 is .* expected"):
        download_dataset("fake", root=root)
    assert not (root / "fake" / "a.mat").exists()
    assert not list((root / "fake").glob("*.partial"))


def _fake_card(tmp_path: Path, payload: dict[str, bytes]) -> Path:
    path = tmp_path / "fake.yaml"
    files = "".join(
        f"  {n}: {{sha256: {hashlib.sha256(b).hexdigest()}, size: {len(b)}, "
        f"url: 'http://example.invalid/{n}'}}\n"
        for n, b in payload.items()
    )
    path.write_text(
        "name: fake\ntitle: Fake\nsensor: S\nfolder: fake\n"
        "shape: {height: 2, width: 2, bands: 3}\nclasses: [a]\nforms:\n  - name: mat\n"
        "    image: {file: a.mat}\n    labels: {file: b.mat}\nfiles:\n" + files
    )
    return path


# ---------------------------------------------------------------------------- CLI


def test_cli_list_info_and_errors(tmp_path, capsys):
    assert datasets_main(["list", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "indian_pines" in out and "145x145x200" in out and "whu_hi_honghu" in out
    assert datasets_main(["info", "salinas-a"]) == 0
    out = capsys.readouterr().out
    assert "file label 10" in out and "SalinasA_gt.mat" in out
    assert datasets_main(["info", "indian_pine"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "did you mean indian_pines" in err
    assert datasets_main([]) == 2
    assert datasets_main(["bogus"]) == 2


@needs_shared
def test_cli_list_and_verify_real_root(tmp_path, capsys):
    assert datasets_main(["list", "--root", str(SHARED)]) == 0
    rows = {ln.split()[0]: ln.split() for ln in capsys.readouterr().out.splitlines()[2:]}
    assert rows["indian_pines"][1] == "classification"
    assert rows["indian_pines"][4:] == ["yes", "mat"]
    assert rows["salinas_a"][4:] == ["yes", "mat"]
    assert rows["salinas"][4] == "no"
    assert rows["jasper_ridge"][1:] == ["restoration", "100x100x198", "-", "yes", "R198"]
    assert rows["icvl"][4] == "no"
    assert datasets_main(["verify", "indian_pines", "--root", str(SHARED)]) == 0
    out = capsys.readouterr().out
    assert out.count(" ok ") == 4
    # A corrupted copy is a mismatch: exit code 1.
    folder = tmp_path / "indian_pines"
    folder.mkdir()
    shutil.copy(SHARED / "indian_pines" / "Indian_pines_gt.mat", folder)
    with open(folder / "Indian_pines_gt.mat", "r+b") as fh:
        fh.seek(200)
        fh.write(b"\x00\x01")
    assert datasets_main(["verify", "indian_pines", "--root", str(tmp_path)]) == 1
    assert "mismatch" in capsys.readouterr().out


def test_cli_download_offline(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(urllib.request, "urlopen", _no_network)
    assert datasets_main(["download", "salinas", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "Salinas_corrected.mat" in err and str(tmp_path.resolve() / "salinas") in err


# ---------------------------------------------------------------------------- restoration cards


def _write_mat73(path: Path, **arrays: np.ndarray) -> None:
    """A MATLAB v7.3 file as MATLAB writes it: HDF5, arrays stored transposed (column-major),
    each tagged with its MATLAB class (the form ICVL's ``rad`` files come in)."""
    import h5py

    with h5py.File(path, "w") as f:
        for name, arr in arrays.items():
            ds = f.create_dataset(name, data=np.ascontiguousarray(arr.T))
            ds.attrs["MATLAB_class"] = np.bytes_("double")


def _write_jasper(folder: Path, rows: int = 100, cols: int = 100, bands: int = 198) -> np.ndarray:
    """A Jasper-Ridge-format file: ``Y`` bands x pixels, pixels down the columns, nRow/nCol."""
    rng = np.random.default_rng(0)
    cube = rng.integers(0, 5000, size=(bands, rows, cols)).astype(np.uint16)
    y = cube.transpose(0, 2, 1).reshape(bands, rows * cols)  # column-major pixel order
    folder.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(
        folder / "jasperRidge2_R198.mat",
        {"Y": y, "nRow": np.array([[rows]]), "nCol": np.array([[cols]])},
    )
    return cube


def test_restoration_cards_have_kind_and_no_labels():
    for n in list_datasets():
        card = get_card(n)
        kind = "restoration" if n in RESTORATION else "classification"
        assert card.kind == ("detection" if n in DETECTION else kind)
        if card.kind == "restoration":
            assert not card.has_labels and card.num_classes == 0
            assert all(f.labels is None for f in card.forms)
            assert card.wavelength_range_nm is not None
    icvl = get_card("icvl")
    assert icvl.cube_shape == (31, 1392, 1300)
    assert icvl.wavelengths_nm == tuple(float(w) for w in range(400, 701, 10))
    gauss, complex_ = icvl.test_scenes["gaussian"], icvl.test_scenes["complex"]
    assert len(gauss) == 50 and len(complex_) == 51 and not set(gauss) & set(complex_)
    assert "Lehavim_0910-1717.mat" in gauss
    assert get_card("chikusei").cube_shape == (128, 2517, 2335)
    assert get_card("washington_dc_mall").cube_shape == (191, 1208, 307)
    assert get_card("cave").cube_shape == (31, 512, 512)
    assert get_card("harvard").cube_shape == (31, 1040, 1392)
    jr = get_card("jasper_ridge")
    assert jr.cube_shape == (198, 100, 100) and jr.form().image.pixels_shape == (100, 100)
    assert jr.files["jasperRidge2_R198.mat"].sha256.startswith("0e4118a6")
    # Cards without files to hand have no checksums: none may be invented.
    for n in ("icvl", "cave", "harvard", "chikusei", "washington_dc_mall"):
        assert all(spec.checksum is None for spec in get_card(n).files.values())


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ("kind: restoration\nclasses: [a]\nforms:\n  - image: {file: a.mat}\n", "no classes"),
        (
            "kind: restoration\nforms:\n  - image: {file: a.mat}\n    labels: {file: a.mat}\n",
            "has no labels",
        ),
        ("kind: segmentation\nforms:\n  - image: {file: a.mat}\n", "kind 'segmentation'"),
        (
            "classes: [a]\nforms:\n  - image: {glob: '*.mat'}\n    labels: {file: a.mat}\n",
            "either a 'file'",
        ),
        (
            "classes: [a]\ntest_scenes: [a.mat]\nforms:\n  - image: {file: a.mat}\n"
            "    labels: {file: a.mat}\n",
            "restoration cards",
        ),
        ("kind: restoration\nforms:\n  - image: {file: a.mat, layout: pixels}\n", "pixels_shape"),
    ],
)
def test_bad_restoration_card_is_a_clear_config_error(tmp_path, body, match):
    path = tmp_path / "bad.yaml"
    path.write_text(
        "name: bad\ntitle: Bad\nsensor: S\nfolder: bad\nshape: {height: 2, width: 2, bands: 3}\n"
        + body
        + "files: {a.mat: {}}\n"
    )
    with pytest.raises(ConfigError, match=match):
        cards._parse_card(path)


_DETECTION_FORM = (
    "classes: [a, b]\nforms:\n  - format: spod\n    splits:\n"
    "      train: {annotations: annotations/train.json, images: train}\n"
)


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (_DETECTION_FORM.replace("classes: [a, b]\n", ""), "missing keys ['classes']"),
        (_DETECTION_FORM + "ignore_label: 0\n", "no per-pixel labels, so no ignore_label"),
        (_DETECTION_FORM.replace("[a, b]", "{1: a}"), "non-empty list of category names"),
        (_DETECTION_FORM.replace("format: spod", "format: voc"), "format 'voc' is not one of"),
        (_DETECTION_FORM.replace("train:", "val:"), "at least 'train'"),
        (_DETECTION_FORM.replace("images: train", "images: imgs"), "keeps annotations/train"),
        (_DETECTION_FORM.replace("images: train}", "images: train, count: 0}"), "count must"),
        (
            _DETECTION_FORM + "      extra: {annotations: annotations/extra.json, images: extra}\n",
            "has the splits train, test",
        ),
        (
            _DETECTION_FORM.replace("format: spod", "format: spod\n    image: {file: a.mat}"),
            "has 'format' and 'splits', not ['image']",
        ),
        (_DETECTION_FORM + "source_url: {a: b}\n", "source_url must be"),
    ],
)
def test_bad_detection_card_is_a_clear_config_error(tmp_path, body, match):
    path = tmp_path / "bad.yaml"
    path.write_text(
        "name: bad\ntitle: Bad\nsensor: S\nfolder: bad\nkind: detection\n"
        "shape: {height: 2, width: 2, bands: 3}\n" + body
    )
    with pytest.raises(ConfigError, match=re.escape(match)):
        cards._parse_card(path)


def test_detection_card_without_files_lists_its_annotations_unverified(tmp_path):
    """No checksums known (as for ICVL): the annotation files still show in `verify`."""
    path = tmp_path / "bench.yaml"
    path.write_text(
        "name: bench\ntitle: B\nsensor: S\nfolder: B_1\nkind: detection\n"
        "shape: {height: 2, width: 2, bands: 3}\n"
        + _DETECTION_FORM
        + "source_url: [https://a.example/x, https://b.example/y]\n"
    )
    card = cards._parse_card(path)
    assert card.kind == "detection" and not card.has_labels and card.num_classes == 2
    assert list(card.files) == ["annotations/train.json"]
    assert card.files["annotations/train.json"].checksum is None
    assert card.source_url == "https://a.example/x or https://b.example/y"
    (tmp_path / "B_1" / "annotations").mkdir(parents=True)
    (tmp_path / "B_1" / "annotations" / "train.json").write_text("{}")
    (check,) = verify_dataset(card, tmp_path)
    assert check.status == "unverified" and check.path is not None
    assert locate_files(card, tmp_path).image == tmp_path.resolve() / "B_1/annotations/train.json"


def test_icvl_format_collection_loads_lazily(tmp_path):
    folder = tmp_path / "icvl"
    folder.mkdir()
    rng = np.random.default_rng(1)
    gauss = get_card("icvl").test_scenes["gaussian"]
    written = {}
    for name in [*gauss, "extra_train_scene.mat"]:
        rad = rng.random((6, 5, 31))  # MATLAB H x W x B, tiny stand-in for 1392 x 1300 x 31
        _write_mat73(folder / name, rad=rad, bands=np.arange(400, 701, 10, dtype=float)[None])
        written[name] = rad
    scenes = load_dataset("icvl", root=tmp_path)
    assert isinstance(scenes, registry.RestorationScenes)
    assert len(scenes) == 51 and scenes.scene_names == sorted(written)
    cube = scenes.load("Lehavim_0910-1717")
    assert cube.shape == (31, 6, 5)
    np.testing.assert_allclose(cube.data, written["Lehavim_0910-1717.mat"].transpose(2, 0, 1))
    assert cube.wavelengths is not None and cube.wavelengths[0] == 400.0
    test = scenes.split("gaussian")
    assert test.scene_names == list(gauss)
    with pytest.raises(DataError, match="collection of 51 scenes"):
        _ = scenes.cube
    with pytest.raises(DataError, match="restoration dataset"):
        _ = scenes.labels
    with pytest.raises(DataError, match=r"51 of the 51 'complex' test scenes are missing"):
        scenes.split("complex")
    with pytest.raises(ConfigError, match="no test_scenes split 'noisy'"):
        scenes.split("noisy")
    # A scene with another band count is not an ICVL scene.
    _write_mat73(folder / "zz_wrong.mat", rad=rng.random((6, 5, 30)))
    with pytest.raises(DataError, match="card says 31 bands, zz_wrong.mat has 30"):
        load_dataset("icvl", root=tmp_path).load("zz_wrong.mat")


def test_collection_is_not_picked_from_the_bare_root(tmp_path):
    _write_mat73(tmp_path / "stray.mat", rad=np.zeros((4, 4, 31)))
    with pytest.raises(DataError) as err:
        load_dataset("icvl", root=tmp_path)
    msg = str(err.value)
    assert "*.mat" in msg and str(tmp_path.resolve() / "icvl") in msg


def test_jasper_format_file_and_label_requests(tmp_path):
    cube = _write_jasper(tmp_path / "jasper_ridge")
    scenes = load_dataset("jasper_ridge", root=tmp_path)
    assert scenes.form == "R198"
    np.testing.assert_array_equal(scenes.cube.data, cube)
    for attr in ("labels", "class_names", "num_classes"):
        with pytest.raises(DataError, match="jasper_ridge is a restoration dataset"):
            getattr(scenes, attr)
    # A classification data module cannot use it, and says why.
    from hsi.data.datamodule import HyperspectralPatchDataModule

    dm = HyperspectralPatchDataModule(dataset="jasper_ridge", root=str(tmp_path))
    with pytest.raises(DataError, match="no labels or classes"):
        _ = dm.class_names
    # nRow/nCol in the file must agree with the card.
    _write_jasper(tmp_path / "other" / "jasper_ridge", rows=50, cols=200)
    with pytest.raises(DataError, match="nRow=50, the jasper_ridge card's pixels_shape 100"):
        _ = load_dataset("jasper_ridge", root=tmp_path / "other").cube


def test_restoration_download_offline_names_files_and_folder(monkeypatch, tmp_path):
    monkeypatch.setattr(urllib.request, "urlopen", _no_network)
    with pytest.raises(DataError) as err:
        download_dataset("jasper_ridge", root=tmp_path)
    msg = str(err.value)
    assert "jasperRidge2_R198.mat" in msg and str(tmp_path.resolve() / "jasper_ridge") in msg
    assert not list((tmp_path / "jasper_ridge").glob("*.partial"))
    with pytest.raises(DataError, match=r"by hand.*\*\.mat.*" + str(tmp_path.resolve() / "icvl")):
        download_dataset("icvl", root=tmp_path)
    with pytest.raises(DataError, match="no download URL for dc.tif"):
        download_dataset("washington_dc_mall", root=tmp_path)


def test_cli_info_shows_kind_and_test_scenes(tmp_path, capsys):
    assert datasets_main(["info", "icvl", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "kind:        restoration" in out and "test_scenes gaussian: 50 files" in out
    assert "classes" not in out.split("folder:")[0]
    assert datasets_main(["info", "indian_pines"]) == 0
    assert "kind:        classification" in capsys.readouterr().out
    assert datasets_main(["list", "--root", str(tmp_path)]) == 0
    rows = {ln.split()[0]: ln.split() for ln in capsys.readouterr().out.splitlines()[2:]}
    assert rows["icvl"][1:4] == ["restoration", "1392x1300x31", "-"]
    assert rows["ksc"][1:4] == ["classification", "512x614x176", "13"]


@pytest.mark.realdata
def test_jasper_ridge_real_file_through_registry_and_datamodule():
    folder = real("jasper_ridge")
    root = folder.parent
    scenes = load_dataset("jasper_ridge", root=root)
    cube = scenes.cube
    assert cube.shape == (198, 100, 100) and cube.data.dtype == np.uint16
    # Same pixels through restoration's image= path (read_pixels_matrix without the card).
    from hsi.data.restoration import RestorationDataModule, load_clean_cube

    direct = load_clean_cube(
        image=str(folder / "jasperRidge2_R198.mat"), variable="Y", pixels_shape=[100, 100]
    )
    np.testing.assert_array_equal(cube.data, direct.data)
    # Both released forms hold the same Y.
    other = load_dataset("jasper_ridge", root=root, form="with_A_M").cube
    np.testing.assert_array_equal(cube.data, other.data)
    checks = {c.file: c.status for c in verify_dataset("jasper_ridge", root)}
    assert checks == {"jasperRidge2_R198.mat": "ok", "jasperRidge2_R198_with_A_M.mat": "ok"}

    dm = RestorationDataModule(
        dataset="jasper_ridge", root=str(root), crop_size=32, crops_per_epoch=2, batch_size=2
    )
    assert dm.in_bands == 198
    batch = next(iter(dm.train_dataloader()))
    assert batch["input"].shape == batch["target"].shape == (2, 198, 32, 32)
    assert 0.0 <= float(batch["target"].min()) and float(batch["target"].max()) <= 1.0
