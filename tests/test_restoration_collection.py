"""Restoration over a scene collection (holdout: collection) on tiny generated collections:
the split by the card's test lists (disjoint, seeded, recorded), training crops from training
scenes only, per-scene min-max scaling, the evaluation centre crop, the scene-cache memory
bound, and one fit + test through RestorationTask on an ICVL-format collection."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import scipy.io
import test_restoration_task  # noqa: F401  (registers the _infra_tiny_denoiser test model)
import torch

from hsi.data import cards, registry
from hsi.data.registry import DatasetCard, get_card
from hsi.data.restoration import GroupedEpochSampler, RestorationDataModule, Scaling
from hsi.errors import ConfigError, DataError
from hsi.tasks import RestorationTask

BANDS = 4
TRAIN_LIKE = [f"s{k}.mat" for k in range(7)]  # on no test list: training + validation
GAUSS = ["g0.mat", "g1.mat"]
COMPLEX = ["c0.mat"]

CARD = f"""\
name: tinyset
title: Tiny generated collection
kind: restoration
sensor: none (generated)
folder: tinyset
shape: {{height: 30, width: 30, bands: {BANDS}}}
wavelengths_nm: [400, 500, 600, 700]
forms:
  - name: mat
    image: {{glob: "*.mat", variable: rad, layout: hwb}}
files: {{}}
test_scenes:
  gaussian: {GAUSS}
  complex: {COMPLEX}
"""


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path):
    """No test may see a user's data root or cache."""
    monkeypatch.delenv("HSI_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


def _scene(k: int, height: int, width: int) -> np.ndarray:
    """(H, W, B) smooth cube whose range differs per scene: offset 100 k, amplitude 10 (k+1)."""
    r, c = np.mgrid[0:height, 0:width]
    planes = [np.sin(r / 5 + b + k) + np.cos(c / 6 - b) for b in range(BANDS)]
    return (np.stack(planes, -1) * 10 * (k + 1) + 100 * k).astype(np.float32)


@pytest.fixture
def tinyset(tmp_path, monkeypatch) -> dict[str, np.ndarray]:
    """The tinyset card (two test lists) and its 10 scenes of varied sizes under tmp_path."""
    card_path = tmp_path / "cards" / "tinyset.yaml"
    card_path.parent.mkdir()
    card_path.write_text(CARD)
    card = cards._parse_card(card_path)
    real_get_card = registry.get_card

    def get(name):
        return card if isinstance(name, DatasetCard) or name == "tinyset" else real_get_card(name)

    monkeypatch.setattr(registry, "get_card", get)
    folder = tmp_path / "tinyset"
    folder.mkdir()
    written = {}
    for k, name in enumerate(TRAIN_LIKE + GAUSS + COMPLEX):
        rad = _scene(k, 24 + k % 3 * 2, 26 + k % 2 * 4)
        scipy.io.savemat(folder / name, {"rad": rad})
        written[name] = rad.transpose(2, 0, 1)  # (bands, H, W), as hsi reads it
    return written


def _dm(tmp_path: Path, **kw) -> RestorationDataModule:
    args = dict(
        dataset="tinyset",
        root=str(tmp_path),
        holdout="collection",
        test_list="gaussian",
        val_scenes=2,
        cache_scenes=2,
        scaling="minmax_scene",
        degradation="gaussian30",
        crop_size=8,
        crops_per_epoch=24,
        batch_size=4,
    )
    args.update(kw)
    return RestorationDataModule(**args)


# ---------------------------------------------------------------------------- the split


def test_split_by_card_lists_is_disjoint_seeded_and_recorded(tmp_path, tinyset) -> None:
    dm = _dm(tmp_path)
    parts = dm.describe()["scenes"]
    train, val, test = (set(parts[p]) for p in ("train", "val", "test"))
    assert parts["test"] == GAUSS  # the card's list, in its order
    assert len(val) == 2 and not (train & val) and not (train & test) and not (val & test)
    # scenes on the other test list neither train nor validate (HSDT's complex model starts
    # from the Gaussian one, so the complex test scenes must never have trained it)
    assert train | val == set(TRAIN_LIKE)
    assert dm.describe()["test_list"] == "gaussian" and dm.in_bands == BANDS
    assert dm.wavelengths == [400.0, 500.0, 600.0, 700.0]
    assert _dm(tmp_path).describe()["scenes"] == parts  # the same seed, the same split
    vals = {tuple(_dm(tmp_path, seed=s).describe()["scenes"]["val"]) for s in range(6)}
    assert len(vals) > 1  # the seed picks the validation scenes
    complex_dm = _dm(tmp_path, test_list="complex")
    assert complex_dm.describe()["scenes"]["test"] == COMPLEX
    assert set(complex_dm.describe()["scenes"]["train"]) <= set(TRAIN_LIKE)


def test_training_crops_come_from_training_scenes_only(tmp_path, tinyset) -> None:
    dm = _dm(tmp_path)
    dm.setup()
    train = set(dm.collection.parts["train"])
    ds = dm.train_dataset()
    seen = set()
    for key in range(3 * len(ds)):  # three epochs of crops
        name, r, c = ds.crop_box(key)
        assert name in train
        _, h, w = tinyset[name].shape
        assert 0 <= r and r + 8 <= h and 0 <= c and c + 8 <= w
        seen.add(name)
    assert seen == train  # every training scene serves crops over the epochs
    item = ds[5]
    assert item["input"].shape == item["target"].shape == (BANDS, 8, 8)
    # training noise is new every epoch, the same in every run
    torch.testing.assert_close(ds[5]["input"], _dm(tmp_path).train_dataset()[5]["input"])
    assert not torch.equal(ds[5]["input"], ds[5 + len(ds)]["input"])


# ---------------------------------------------------------------------------- scaling


def test_minmax_scene_scales_every_cube_by_itself(tmp_path, tinyset) -> None:
    dm = _dm(tmp_path, augment=False)
    ds = dm.train_dataset()
    name, r, c = ds.crop_box(0)
    raw = tinyset[name]
    lo, hi = float(raw.min()), float(raw.max())
    expected = (raw[:, r : r + 8, c : c + 8] - lo) / (hi - lo)
    np.testing.assert_allclose(ds[0]["target"].numpy(), expected, rtol=1e-5, atol=1e-6)
    for name in dm.collection.parts["train"]:
        cube = ds.cache.get(name)
        assert float(cube.min()) == 0.0 and float(cube.max()) == pytest.approx(1.0)
    test = dm.eval_dataset("test")
    for i in range(len(test)):  # each test image by its own range, not the training scenes'
        clean = test.clean(i)
        assert float(clean.min()) == 0.0 and float(clean.max()) == pytest.approx(1.0)
    # a checkpoint stores the rule; applying it without a cube's own range is refused
    assert dm.scaling.state_dict() == {"method": "minmax_scene", "lo": [], "hi": []}
    with pytest.raises(ConfigError, match="own min and max"):
        Scaling.from_state_dict(dm.scaling.state_dict()).apply(raw)


def test_global_minmax_is_fitted_on_training_scenes_streaming(tmp_path, tinyset) -> None:
    dm = _dm(tmp_path, scaling="minmax")
    dm.setup()
    train = dm.collection.parts["train"]
    assert dm.collection.loads == len(train)  # one read per training scene, nothing else
    assert dm.scaling.lo[0] == pytest.approx(min(float(tinyset[n].min()) for n in train))
    assert dm.scaling.hi[0] == pytest.approx(max(float(tinyset[n].max()) for n in train))
    # the test scenes are brighter than every training scene: they were not fitted on
    everything = max(float(a.max()) for a in tinyset.values())
    assert dm.scaling.hi[0] < everything
    band = _dm(tmp_path, scaling="minmax_band")
    band.setup()
    for b in range(BANDS):
        assert band.scaling.lo[b] == pytest.approx(min(float(tinyset[n][b].min()) for n in train))
        assert band.scaling.hi[b] == pytest.approx(max(float(tinyset[n][b].max()) for n in train))


# ---------------------------------------------------------------------------- evaluation


def test_eval_center_crop_and_fixed_noise(tmp_path, tinyset) -> None:
    dm = _dm(tmp_path, eval_center_crop=12)
    dm.setup()
    before = dm.collection.loads
    assert dm.smallest_eval_side() == 12
    assert dm.collection.loads == before  # the crop says the side: no scene read for it
    test = dm.eval_dataset("test")
    for i, name in enumerate(GAUSS):
        raw = tinyset[name]
        _, h, w = raw.shape
        r0, c0 = (h - 12) // 2, (w - 12) // 2
        centre = raw[:, r0 : r0 + 12, c0 : c0 + 12]
        # QRNN3D crops the centre, then min-max normalises the crop
        expected = (centre - centre.min()) / (centre.max() - centre.min())
        np.testing.assert_allclose(test.clean(i), expected, rtol=1e-5, atol=1e-6)
        item = test[i]
        assert item["input"].shape == (BANDS, 12, 12)
        again = _dm(tmp_path, eval_center_crop=12).eval_dataset("test")[i]
        torch.testing.assert_close(item["input"], again["input"])  # the same noise every run
    val_loader = dm.val_dataloader()
    assert val_loader.batch_size == 1 and len(val_loader) == 2
    whole = _dm(tmp_path)  # no crop: whole scenes, each read once to learn its size
    held_out = whole.describe()["scenes"]["val"] + GAUSS
    assert whole.smallest_eval_side() == min(min(tinyset[n].shape[1:]) for n in held_out)
    with pytest.raises(ConfigError, match="eval_center_crop 40 is larger than the test scene"):
        _dm(tmp_path, eval_center_crop=40).eval_dataset("test")[0]


# ---------------------------------------------------------------------------- memory bound


def test_scene_cache_bounds_memory_and_visits_groups(tmp_path, tinyset) -> None:
    dm = _dm(tmp_path, crops_per_epoch=30)
    ds = dm.train_dataset()
    n_train = len(dm.collection.parts["train"])  # 5 scenes -> groups of 2, 2, 1
    assert ds.n_groups == 3
    sampler = dm.train_dataloader().sampler
    assert isinstance(sampler, GroupedEpochSampler)
    for epoch in range(2):
        sampler.set_epoch(epoch)
        keys = list(sampler)
        assert sorted(keys) == list(range(epoch * 30, (epoch + 1) * 30))
        before = dm.collection.loads
        names = [ds.crop_box(k)[0] for k in keys]
        groups = ds.groups(epoch)
        # consecutive crops stay inside one group of cached scenes, group after group
        blocks = ds.block_starts()
        for g, (a, b) in enumerate(zip(blocks[:-1], blocks[1:], strict=True)):
            assert set(names[a:b]) <= set(groups[g])
        # each scene is read at most once per epoch (scenes still cached from the end of
        # the last epoch are not read again), and never more than cache_scenes are held
        reads = dm.collection.loads - before
        assert reads == n_train if epoch == 0 else n_train - 2 <= reads <= n_train
        assert ds.cache.peak <= 2
    assert len({str(ds.groups(e)) for e in range(4)}) > 1  # groups are reshuffled per epoch


# ---------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("kw", "error", "match"),
    [
        (dict(dataset=None, image="x.mat"), ConfigError, "needs dataset="),
        (dict(test_images=["x.mat"]), ConfigError, "drop val_images/test_images"),
        (dict(eval_tile=8), ConfigError, "eval_tile is not used"),
        (dict(cache_scenes=0), ConfigError, "cache_scenes must be >= 1"),
        (dict(holdout="regions"), ConfigError, "test_list picks"),
        (dict(holdout="regions", test_list=None), ConfigError, "minmax_scene scales each"),
        (dict(eval_center_crop=6), ConfigError, "at least 11"),
    ],
)
def test_bad_collection_arguments_are_clear(tmp_path, kw, error, match) -> None:
    with pytest.raises(error, match=match):
        _dm(tmp_path, **kw)


def test_bad_collections_are_clear(tmp_path, tinyset) -> None:
    with pytest.raises(ConfigError, match="no test_scenes split 'noisy'"):
        _dm(tmp_path, test_list="noisy").setup()
    with pytest.raises(ConfigError, match="several test lists; name one with test_list"):
        _dm(tmp_path, test_list=None).setup()
    with pytest.raises(DataError, match="too few for 7 validation scenes"):
        _dm(tmp_path, val_scenes=7).setup()
    (tmp_path / "tinyset" / "g1.mat").unlink()
    with pytest.raises(DataError, match="1 of the 2 'gaussian' test scenes are missing"):
        _dm(tmp_path).setup()


# ---------------------------------------------------------------------------- end to end


def _write_mat73(path: Path, rad: np.ndarray) -> None:
    """MATLAB v7.3 (HDF5, column-major) as ICVL's files come; ``rad`` is H x W x B."""
    import h5py

    with h5py.File(path, "w") as f:
        f.create_dataset("rad", data=np.ascontiguousarray(rad.T)).attrs["MATLAB_class"] = np.bytes_(
            "single"
        )


def test_center_crop_of_a_v73_scene_is_read_through_a_window(tmp_path, monkeypatch) -> None:
    """QRNN3D scores the central 512 x 512 of 1392 x 1300 ICVL scenes: only that window (and
    one band, for the size) is read from the v7.3 file, and it equals cropping the whole."""
    from hsi.data import readers

    folder = tmp_path / "icvl"
    folder.mkdir()
    rng = np.random.default_rng(1)
    gauss = list(get_card("icvl").test_scenes["gaussian"])
    scenes = {}
    for name in [*gauss, *(f"train_{k}.mat" for k in range(4))]:
        scenes[name] = (rng.random((20, 23, 31)) * 4000).astype(np.float32)
        _write_mat73(folder / name, scenes[name])
    calls = []
    real_read = readers.read_cube

    def spy(path, *args, **kw):
        calls.append((Path(path).name, kw.get("window"), kw.get("bands")))
        return real_read(path, *args, **kw)

    monkeypatch.setattr(readers, "read_cube", spy)
    dm = _dm(tmp_path, dataset="icvl", degradation="gaussian50", eval_center_crop=12)
    dm.setup("test")
    test = dm.eval_dataset("test")
    for i, name in enumerate(gauss[:2]):
        calls.clear()
        got = test.clean(i)
        centre = scenes[name].transpose(2, 0, 1)[:, 4:16, 5:17]  # (20 - 12) // 2, (23 - 12) // 2
        expected = (centre - centre.min()) / (centre.max() - centre.min())
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
        reads = [(w, b) for n, w, b in calls if n == name]
        assert reads and all(w is not None or b == [0] for w, b in reads), reads
        assert ((4, 16), (5, 17)) in [w for w, _ in reads]


def test_icvl_collection_fits_and_tests_on_the_gaussian_list(tmp_path) -> None:
    """The ICVL card as shipped: QRNN3D's 50-scene Gaussian list tests, the rest train."""
    folder = tmp_path / "icvl"
    folder.mkdir()
    rng = np.random.default_rng(0)
    gauss = list(get_card("icvl").test_scenes["gaussian"])
    for name in [*gauss, *(f"train_{k}.mat" for k in range(5))]:
        _write_mat73(folder / name, (rng.random((16, 18, 31)) * 4000).astype(np.float32))
    dm = _dm(
        tmp_path, dataset="icvl", degradation="gaussian50", crops_per_epoch=8, eval_center_crop=12
    )
    out = tmp_path / "run"
    task = RestorationTask(model="_infra_tiny_denoiser", lr=1e-2, report_dir=str(out))
    trainer = L.Trainer(
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=out,
    )
    trainer.fit(task, datamodule=dm)
    assert np.isfinite(float(trainer.callback_metrics["val/MPSNR"]))
    trainer.test(task, datamodule=dm)
    report = json.loads((out / "restoration_report.json").read_text())
    assert report["test_images"] == 50
    data = report["data"]
    assert data["holdout"] == "collection" and data["test_list"] == "gaussian"
    assert data["scenes"]["test"] == gauss and data["eval_center_crop"] == 12
    assert len(data["scenes"]["train"]) == 3 and len(data["scenes"]["val"]) == 2
    assert not set(data["scenes"]["train"]) & set(gauss)
    assert data["scaling"] == "minmax_scene" and task.scaling["method"] == "minmax_scene"
    # the metrics measure something: restored and degraded inputs are scored alike
    assert np.isfinite(report["metrics"]["MPSNR"])
    assert np.isfinite(report["reference"]["metrics"]["MPSNR"])
