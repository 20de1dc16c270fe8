"""The restoration data module: builds the protocol's parts (held-out regions, scenes or a
collection), fits the scaling on the training part and serves the datasets of
:mod:`~hsi.data.restoration.crops` and :mod:`~hsi.data.restoration.collection`."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from typing import Any, Literal

import lightning as L
import numpy as np
from torch.utils.data import DataLoader, Sampler

from hsi.data.cube import SpectralCube
from hsi.data.degradations import Degradation, build_degradation
from hsi.data.restoration.collection import (
    GroupedEpochSampler,
    _CollectionCrops,
    _CollectionImages,
    _SceneCollection,
)
from hsi.data.restoration.crops import (
    EpochSampler,
    _EvalImages,
    _TrainCrops,
)
from hsi.data.restoration.regions import Region, _center_box, _strip_regions
from hsi.data.restoration.scaling import Scaling
from hsi.data.restoration.sources import load_clean_cube
from hsi.errors import ConfigError, DataError

log = logging.getLogger(__name__)

_MIN_EVAL_SIDE = 11  # SSIM's 11x11 window


class RestorationDataModule(L.LightningDataModule):
    """Denoising / super-resolution data from clean cubes.

    Args:
        dataset: a registry name (its labels are ignored), or ``None`` with ``image``.
        image: a cube file (any format ``read_cube`` reads); a relative path not found in
            the working directory is looked up under the data root.
        root: data root (else ``$HSI_DATA``).
        image_variable, layout: .mat variable and axis order of ``image``.
        pixels_shape: ``[rows, cols]`` when ``image`` holds a ``bands x pixels`` matrix
            (Jasper Ridge's ``Y``: ``[100, 100]``).
        bands: 0-based bands to keep (e.g. to drop dead bands).
        degradation: spec of :func:`hsi.data.degradations.build_degradation`
            (``gaussian30``, ``blind``, ``complex``, ``bicubic_x4``, or a dict).
        test_degradations: specs to test under *instead of* ``degradation`` (which still
            makes the training and validation inputs), one test set per spec over the same
            held-out images, e.g. ``[case1, case2, case3, case4, case5]``: QRNN3D and HSDT
            train one complex-noise model and report it per ICVL noise case. Each case has
            its own fixed noise (see :meth:`test_datasets`); ``test_dataloader`` then
            returns one loader per spec, in this order, and the task reports each.
            All must have the scale of ``degradation``. ``None``: test under ``degradation``.
        holdout: ``regions`` (strips of the scene), ``scenes`` (``val_images``/``test_images``)
            or ``collection`` (the scenes of a collection card such as ``icvl``).
        val_fraction, test_fraction: strip widths for ``holdout=regions``.
        val_images, test_images: held-out scene files for ``holdout=scenes``.
        test_list: for ``holdout=collection``, which of the card's ``test_scenes`` lists is
            the test set (ICVL: ``gaussian``, 50 scenes, or ``complex``, 51 scenes, QRNN3D's
            lists); may be left out when the card has one list. Scenes on *any* of the card's
            lists never train (QRNN3D trains on the 100 ICVL scenes on neither list, and HSDT's
            complex-noise model starts from its Gaussian one).
        val_scenes: for ``holdout=collection``, scenes drawn with ``seed`` from the training
            scenes to validate on (checkpoint selection); they never train. The papers
            validate on test images; this keeps the test set unseen.
        cache_scenes: for ``holdout=collection``, scenes held at once for training crops.
            Memory bound: ``cache_scenes`` x one scene per loader process (``max(1,
            num_workers)`` of them; an ICVL scene is ~220 MB as float32), plus about one more
            scene while the reader loads one. A larger cache mixes more scenes into
            consecutive batches, at that memory cost (see :class:`_CollectionCrops`).
        scaling: ``minmax`` (global, default), ``minmax_band``, ``minmax_scene`` (collections:
            each cube by its own min and max, as the papers do) or ``none``; global scalings are
            fitted on training data only (for a collection, streaming one scene at a time).
        crop_size: side of the training crops (high-resolution pixels; HSDT/QRNN3D: 64).
        crops_per_epoch: training crops drawn per epoch.
        eval_tile: evaluate held-out parts in tiles of this side (``None``: whole parts;
            not with a collection).
        eval_center_crop: evaluate only the central square of this side of each held-out
            image (QRNN3D/HSDT test on the central 512 x 512 of each ICVL scene); ``None``:
            whole images.
        band_window: train on random windows of this many contiguous bands (``None``: all
            bands). HSDT's authors train on 31-band ICVL crops and run the same network on
            other band counts (``model_kwargs: {flex: true}``); windows make a training step
            on a 200-band scene ~6x cheaper. Validation and test still use every band, so
            the model must accept any band count; the task's ``in_bands`` becomes the window.
        augment: random flips/rotations of training crops.
        seed: seeds crops, augmentation, noise and the choice of validation scenes.
        batch_size, num_workers: loader settings (evaluation of whole parts, and of every
            collection image, uses batch 1).
    """

    def __init__(
        self,
        dataset: str | None = "indian_pines",
        image: str | None = None,
        root: str | None = None,
        image_variable: str | None = None,
        layout: str | None = None,
        pixels_shape: list[int] | None = None,
        bands: list[int] | None = None,
        degradation: str | dict[str, Any] = "gaussian30",
        test_degradations: list[str | dict[str, Any]] | None = None,
        holdout: Literal["regions", "scenes", "collection"] = "regions",
        val_fraction: float = 0.15,
        test_fraction: float = 0.25,
        val_images: list[str] | None = None,
        test_images: list[str] | None = None,
        test_list: str | None = None,
        val_scenes: int = 5,
        cache_scenes: int = 4,
        scaling: Literal["minmax", "minmax_band", "minmax_scene", "none"] = "minmax",
        crop_size: int = 64,
        crops_per_epoch: int = 1000,
        eval_tile: int | None = None,
        eval_center_crop: int | None = None,
        band_window: int | None = None,
        augment: bool = True,
        seed: int = 0,
        batch_size: int = 16,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        if (dataset is None) == (image is None):
            raise ConfigError("give exactly one of dataset=<registry name> or image=<file>")
        self.degradation = build_degradation(degradation)
        self.scale = int(self.degradation.scale)
        self.test_degradations = self._build_test_degradations(test_degradations)
        if crop_size < 1 or crop_size % self.scale:
            raise ConfigError(
                f"crop_size {crop_size} must be a positive multiple of the scale {self.scale}"
            )
        if holdout == "regions":
            if not (0 < val_fraction < 1 and 0 < test_fraction < 1):
                raise ConfigError("val_fraction and test_fraction must lie in (0, 1)")
            if val_fraction + test_fraction >= 0.9:
                raise ConfigError("val_fraction + test_fraction leaves under 10% for training")
            if val_images or test_images:
                raise ConfigError("val_images/test_images need holdout: scenes")
        elif holdout == "scenes":
            if not val_images or not test_images:
                raise ConfigError("holdout: scenes needs val_images and test_images (files)")
        elif holdout == "collection":
            self._check_collection_args(
                dataset, val_images, test_images, val_scenes, cache_scenes, eval_tile
            )
        else:
            raise ConfigError(
                f"holdout must be 'regions', 'scenes' or 'collection', got {holdout!r}"
            )
        if holdout != "collection" and test_list is not None:
            raise ConfigError("test_list picks a collection's test scenes: use holdout: collection")
        if holdout != "collection" and scaling == "minmax_scene":
            raise ConfigError(
                "scaling minmax_scene scales each scene of a collection by itself; with "
                f"holdout {holdout} use minmax (fitted on the training part)"
            )
        if crops_per_epoch < 1 or batch_size < 1:
            raise ConfigError("crops_per_epoch and batch_size must be >= 1")
        if band_window is not None and band_window < 1:
            raise ConfigError(f"band_window must be >= 1 (or null: all bands), got {band_window}")
        if eval_tile is not None and eval_tile % self.scale:
            raise ConfigError(f"eval_tile {eval_tile} must be a multiple of the scale {self.scale}")
        if eval_center_crop is not None and (
            eval_center_crop < _MIN_EVAL_SIDE or eval_center_crop % self.scale
        ):
            raise ConfigError(
                f"eval_center_crop {eval_center_crop} must be at least {_MIN_EVAL_SIDE} (the "
                f"SSIM window) and a multiple of the scale {self.scale}"
            )
        self.dataset, self.image, self.root = dataset, image, root
        self.image_variable, self.layout, self.pixels_shape = image_variable, layout, pixels_shape
        self.bands = bands
        self.degradation_spec = self.degradation.spec()
        self.holdout = holdout
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.val_images, self.test_images = list(val_images or []), list(test_images or [])
        self.test_list, self.val_scenes, self.cache_scenes = test_list, val_scenes, cache_scenes
        self.scaling_method = scaling
        self.crop_size, self.crops_per_epoch, self.eval_tile = crop_size, crops_per_epoch, eval_tile
        self.eval_center_crop = eval_center_crop
        self.band_window = band_window
        self.augment, self.seed = augment, seed
        self.batch_size, self.num_workers = batch_size, num_workers
        self.cubes: list[np.ndarray] | None = None
        self.collection: _SceneCollection | None = None
        self.sources: list[str] = []
        self.regions: dict[str, list[Region]] = {}
        self.scaling: Scaling | None = None
        self.wavelengths: list[float] | None = None
        self._n_bands = 0

    def _build_test_degradations(
        self, specs: Sequence[str | dict[str, Any]] | None
    ) -> list[Degradation]:
        """The test degradations, checked: each builds, has the training scale (one model
        restores one scale) and differs from the others (a repeated case would be reported
        twice under one name). Sets the labels and specs the task reports them by."""
        self.test_degradation_names: list[str] = []
        if specs is None:
            return []
        if isinstance(specs, (str, dict)) or not specs:
            raise ConfigError(
                "test_degradations must be a non-empty list of degradation specs (e.g. "
                f"[case1, case2, case3, case4, case5]) or null, got {specs!r}"
            )
        built: list[Degradation] = []
        seen: dict[str, str] = {}
        for k, spec in enumerate(specs):
            try:
                d = build_degradation(spec)
            except ConfigError as exc:
                raise ConfigError(f"test_degradations[{k}] {spec!r}: {exc}") from None
            label = spec.strip().lower() if isinstance(spec, str) else d.describe()
            label = label.replace(" ", "")
            if int(d.scale) != self.scale:
                raise ConfigError(
                    f"test_degradations[{k}] {label} has scale {d.scale} but degradation "
                    f"{self.degradation.describe()} has scale {self.scale}; a model restores "
                    "one scale, so test it under degradations of the scale it was trained for"
                )
            key = json.dumps(d.spec(), sort_keys=True)
            if key in seen:
                raise ConfigError(
                    f"test_degradations lists {seen[key]} and {label}, the same degradation "
                    f"({d.describe()}); list each once"
                )
            seen[key] = label
            built.append(d)
            self.test_degradation_names.append(label)
        return built

    @property
    def test_degradation_specs(self) -> list[dict[str, Any]]:
        """The specs of ``test_degradations``, in order (what the task's report records)."""
        return [d.spec() for d in self.test_degradations]

    def _noise_key(self, k: int) -> int | None:
        """Extra seed of test degradation ``k``: none when it is ``degradation`` itself (its
        test set is then exactly the one a run without ``test_degradations`` scores), else
        a digest of its spec, so each case's noise is fixed, differs from the others', and
        does not depend on the order or the rest of the list."""
        spec = self.test_degradations[k].spec()
        if spec == self.degradation_spec:
            return None
        digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).digest()
        return int.from_bytes(digest[:4], "little")

    @staticmethod
    def _check_collection_args(
        dataset: str | None,
        val_images: list[str] | None,
        test_images: list[str] | None,
        val_scenes: int,
        cache_scenes: int,
        eval_tile: int | None,
    ) -> None:
        if dataset is None:
            raise ConfigError(
                "holdout: collection needs dataset=<a restoration card with several scenes, "
                "e.g. icvl>, not image="
            )
        if val_images or test_images:
            raise ConfigError(
                "holdout: collection takes its test scenes from the card (test_list) and draws "
                "val_scenes from the rest; drop val_images/test_images"
            )
        if val_scenes < 1 or cache_scenes < 1:
            raise ConfigError(
                f"val_scenes and cache_scenes must be >= 1, got {val_scenes} and {cache_scenes}"
            )
        if eval_tile is not None:
            raise ConfigError(
                "eval_tile is not used with holdout: collection; evaluate each held-out scene "
                "whole or its central square (eval_center_crop)"
            )

    # ---- facts the task needs ----------------------------------------------------------
    @property
    def task_kind(self) -> str:
        """``super_resolution`` when the degradation downsamples, else ``denoising``."""
        return "super_resolution" if self.scale > 1 else "denoising"

    @property
    def in_bands(self) -> int:
        """Bands of a training input: the cube's, or ``band_window`` when set."""
        self.setup()
        bands = self._n_bands
        if self.band_window is None:
            return bands
        if self.band_window > bands:
            raise ConfigError(f"band_window {self.band_window} exceeds the cube's {bands} bands")
        return self.band_window

    # ---- loading and splitting ---------------------------------------------------------
    def _load(self, **kw: Any) -> SpectralCube:
        return load_clean_cube(
            root=self.root,
            variable=self.image_variable,
            layout=self.layout,
            pixels_shape=self.pixels_shape,
            bands=self.bands,
            **kw,
        )

    def setup(self, stage: str | None = None) -> None:
        if self.cubes is not None or self.collection is not None:
            return
        if self.holdout == "collection":
            self._setup_collection()
            return
        main = self._load(dataset=self.dataset, image=self.image)
        raw = [np.asarray(main.data, dtype=np.float32)]
        self.sources = [main.source]
        self.wavelengths = None if main.wavelengths is None else main.wavelengths.tolist()
        if self.holdout == "regions":
            parts = _strip_regions(
                0, main.height, main.width, self.val_fraction, self.test_fraction, self.scale
            )
            self.regions = {k: [v] for k, v in parts.items()}
        else:
            self.regions = {"train": [self._whole(0, main)], "val": [], "test": []}
            for part, files in (("val", self.val_images), ("test", self.test_images)):
                for f in files:
                    cube = self._load(image=f)
                    if cube.bands != main.bands:
                        raise DataError(
                            f"{cube.source} has {cube.bands} bands, the training scene "
                            f"{main.bands}; held-out scenes must come from the same sensor"
                        )
                    raw.append(np.asarray(cube.data, dtype=np.float32))
                    self.sources.append(cube.source)
                    self.regions[part].append(self._whole(len(raw) - 1, cube))
        small = [
            f"{part} {r.height}x{r.width}"
            for part in ("val", "test")
            for r in self.regions[part]
            if min(r.height, r.width) < _MIN_EVAL_SIDE
        ]
        if small:
            raise ConfigError(
                f"held-out images must be at least {_MIN_EVAL_SIDE} pixels a side (the SSIM "
                f"window), got {', '.join(small)}; raise val_fraction/test_fraction"
            )
        train_pixels = [raw[r.scene][:, r.r0 : r.r1, r.c0 : r.c1] for r in self.regions["train"]]
        self.scaling = Scaling.fit(self.scaling_method, train_pixels)
        self.cubes = [self.scaling.apply(c) for c in raw]
        self._n_bands = int(self.cubes[0].shape[0])
        log.info(
            "restoration data: %s, %d bands, regions %s, scaling %s, degradation %s",
            ", ".join(self.sources),
            self.cubes[0].shape[0],
            {k: [r.as_dict() for r in v] for k, v in self.regions.items()},
            self.scaling.method,
            self.degradation.describe(),
        )

    def _split_collection(self, scenes: Any) -> dict[str, list[str]]:
        """Test: the card's ``test_list``; validation: ``val_scenes`` drawn with the seed
        from the scenes on none of the card's lists; training: the rest of those."""
        card = scenes.card
        if not card.test_scenes:
            raise ConfigError(
                f"{card.name} lists no test scenes (test_scenes in its card), so holdout: "
                "collection has nothing to test on; add the papers' list to the card, or use "
                "holdout: scenes with val_images/test_images"
            )
        test_list = self.test_list
        if test_list is None:
            if len(card.test_scenes) != 1:
                raise ConfigError(
                    f"{card.name} has several test lists; name one with test_list "
                    f"({', '.join(card.test_scenes)})"
                )
            test_list = next(iter(card.test_scenes))
        test = scenes.split(test_list).scene_names  # every listed scene must be present
        listed = {n for names in card.test_scenes.values() for n in names}
        rest = [n for n in scenes.scene_names if n not in listed]
        if len(rest) <= self.val_scenes:
            raise DataError(
                f"{card.name}: {len(rest)} scenes under {scenes.paths[0].parent} are on none of "
                f"its test lists, too few for {self.val_scenes} validation scenes and training; "
                "add the training scenes or lower val_scenes"
            )
        pick = np.random.default_rng([self.seed, 11]).choice(len(rest), self.val_scenes, False)
        val = [rest[i] for i in sorted(pick.tolist())]
        train = [n for n in rest if n not in set(val)]
        self.test_list = test_list
        return {"train": train, "val": val, "test": list(test)}

    def _setup_collection(self) -> None:
        from hsi.data.registry import RestorationScenes, load_dataset

        scenes = load_dataset(str(self.dataset), root=self.root)
        if not isinstance(scenes, RestorationScenes):
            raise ConfigError(
                f"{self.dataset} is a labelled (classification) scene; holdout: collection "
                "needs a restoration card with several scenes (e.g. icvl)"
            )
        card = scenes.card
        if self.bands is not None:
            bad = [b for b in self.bands if not 0 <= int(b) < card.bands]
            if bad:
                raise ConfigError(f"bands {bad} do not exist in {card.name} ({card.bands} bands)")
        collection = _SceneCollection(scenes, self._split_collection(scenes), self.bands)
        self._n_bands = len(self.bands) if self.bands is not None else card.bands
        wl = card.wavelengths_nm
        if wl is not None:
            self.wavelengths = [float(wl[int(b)]) for b in (self.bands or range(len(wl)))]
        self.sources = [str(scenes.paths[0].parent)]
        self.scaling = self._fit_collection_scaling(collection)
        self.collection = collection
        log.info(
            "restoration data: %s, %d bands, %d training / %d validation (%s) / %d test scenes "
            "(%s list), scaling %s, degradation %s",
            self.sources[0],
            self._n_bands,
            *(len(collection.parts[p]) for p in ("train", "val")),
            ", ".join(collection.parts["val"]),
            len(collection.parts["test"]),
            self.test_list,
            self.scaling.method,
            self.degradation.describe(),
        )

    def _fit_collection_scaling(self, collection: _SceneCollection) -> Scaling:
        """The per-scene rule, or a global scaling fitted on the training scenes streaming:
        one scene at a time, summarised by its per-band min and max."""
        if self.scaling_method == "minmax_scene":
            return Scaling.per_scene()
        summaries = []
        for name in collection.parts["train"]:
            flat = collection.read(name)
            flat = flat.reshape(flat.shape[0], -1)
            summaries.append(np.stack([flat.min(axis=1), flat.max(axis=1)], -1)[:, None, :])
        return Scaling.fit(self.scaling_method, summaries)

    def _whole(self, index: int, cube: SpectralCube) -> Region:
        s = self.scale
        return Region(index, 0, cube.height // s * s, 0, cube.width // s * s)

    # ---- loaders -----------------------------------------------------------------------
    def train_dataset(self) -> _TrainCrops | _CollectionCrops:
        self.setup()
        assert self.scaling is not None
        if self.collection is not None:
            return _CollectionCrops(
                self.collection,
                self.scaling,
                self.crop_size,
                self.crops_per_epoch,
                self.degradation,
                self.seed,
                self.augment,
                self.band_window,
                self.cache_scenes,
            )
        assert self.cubes is not None
        return _TrainCrops(
            self.cubes,
            self.regions["train"],
            self.crop_size,
            self.crops_per_epoch,
            self.degradation,
            self.seed,
            self.augment,
            self.band_window,
        )

    def eval_dataset(self, part: str, case: int | None = None) -> _EvalImages | _CollectionImages:
        """The fixed degraded images of ``part`` (``val``/``test``) under ``degradation``, or
        with ``case`` = k under ``test_degradations[k]`` (same images, their own noise)."""
        self.setup()
        assert self.scaling is not None
        degradation, noise_key = self.degradation, None
        if case is not None:
            degradation, noise_key = self.test_degradations[case], self._noise_key(case)
        if self.collection is not None:
            return _CollectionImages(
                self.collection,
                part,
                self.scaling,
                degradation,
                self.seed,
                self.eval_center_crop,
                self.scale,
                noise_key,
            )
        assert self.cubes is not None
        regions = self.regions[part]
        if self.eval_center_crop is not None:
            regions = [_center_box(r, self.eval_center_crop, f"{part} part") for r in regions]
        return _EvalImages(
            self.cubes, regions, degradation, self.seed, part, self.eval_tile, noise_key
        )

    def test_datasets(self) -> list[_EvalImages | _CollectionImages]:
        """One test set per ``test_degradations`` entry, in order, over the same held-out
        images; image ``i`` of case ``k`` draws its noise from ``(seed, part, i, key_k)``,
        where ``key_k`` is a digest of the case's spec (none for ``degradation`` itself):
        fixed run to run, different between cases. Empty without ``test_degradations``."""
        return [self.eval_dataset("test", k) for k in range(len(self.test_degradations))]

    def train_dataloader(self) -> DataLoader:
        ds = self.train_dataset()
        if isinstance(ds, _CollectionCrops):
            sampler: Sampler[int] = GroupedEpochSampler(ds.block_starts(), self.seed)
        else:
            sampler = EpochSampler(len(ds), self.seed)
        return DataLoader(
            ds,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            drop_last=False,
        )

    def _eval_loader(self, part: str, case: int | None = None) -> DataLoader:
        ds = self.eval_dataset(part, case)
        # A collection's images are scored one at a time, as the papers do: a batch of
        # 512 x 512 x 31 images through a 3-D network would need many GB.
        sizes = {(b.height, b.width) for b in ds.boxes} if isinstance(ds, _EvalImages) else set()
        same_size = len(sizes) == 1
        return DataLoader(
            ds,
            batch_size=self.batch_size if same_size else 1,
            shuffle=False,
            num_workers=self.num_workers,
        )

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader | list[DataLoader]:
        """The test loader, or with ``test_degradations`` one per entry, in order."""
        if not self.test_degradations:
            return self._eval_loader("test")
        return [self._eval_loader("test", k) for k in range(len(self.test_degradations))]

    def smallest_eval_side(self) -> int:
        """Smallest side (high-resolution pixels) of a validation/test image."""
        self.setup()
        sides = []
        for part in ("val", "test"):
            ds = self.eval_dataset(part)
            if isinstance(ds, _CollectionImages):
                sides += [ds.side(i) for i in range(len(ds))]
            else:
                sides += [min(b.height, b.width) for b in ds.boxes]
        return min(sides)

    # ---- what a report and a checkpoint need ------------------------------------------
    def describe(self) -> dict[str, Any]:
        self.setup()
        assert self.scaling is not None
        out = {
            "dataset": self.dataset or "custom",
            "sources": list(self.sources),
            "bands": self.bands,
            "holdout": self.holdout,
            "regions": {k: [r.as_dict() for r in v] for k, v in self.regions.items()},
            "scaling": self.scaling.method,
            "degradation": self.degradation_spec,
            "scale": self.scale,
            "crop_size": self.crop_size,
            "band_window": self.band_window,
            "crops_per_epoch": self.crops_per_epoch,
            "eval_tile": self.eval_tile,
            "eval_center_crop": self.eval_center_crop,
            "seed": self.seed,
            "wavelengths": self.wavelengths,
        }
        if self.test_degradations:
            out["test_degradations"] = dict(
                zip(self.test_degradation_names, self.test_degradation_specs, strict=True)
            )
        if self.collection is not None:
            out.update(
                test_list=self.test_list,
                val_scenes=self.val_scenes,
                cache_scenes=self.cache_scenes,
                scenes={k: list(v) for k, v in self.collection.parts.items()},
            )
        return out
