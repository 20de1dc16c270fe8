"""LightningDataModule that turns one labelled scene into patch batches.

Data flows one way: scene (registry or user files) → split (protocol, seeded, saved) →
preprocessing fitted on training pixels → padded cube → patches on demand.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
from torch.utils.data import DataLoader

from hsi.data.patches import PatchDataset, pad_cube
from hsi.data.preprocessing import Preprocessor
from hsi.data.protocols import Split, make_split, split_summary
from hsi.errors import ConfigError, DataError

log = logging.getLogger(__name__)


class HyperspectralPatchDataModule(L.LightningDataModule):
    """Patch classification data from one labelled hyperspectral scene.

    Args:
        dataset: a registry name (``hsi datasets list``), or ``None`` with ``image`` and
            ``labels`` for your own files.
        root: data root for registry datasets (else ``$HSI_DATA``, else the user cache).
        image, labels: paths of a custom scene (any format ``read_cube`` reads).
        image_variable, labels_variable: variable names inside .mat files (auto if None).
        class_names: class names for a custom scene (labels 1..N).
        protocol: ``disjoint`` (leak-free, default) or ``random`` (the papers').
        train, val: per-class training/validation sizes (ratios, or counts for random).
        seed: seeds the split and the augmentation order.
        block_size: block side of the disjoint protocol (default: patch_size).
        split_file: load the split from here if it exists, else create it and save it
            here. Whatever happens, the split used is also saved into the run's log dir.
        patch_size: odd side of the square patch around each pixel.
        pca_components: PCA components kept (``None``: no PCA).
        pca_fit: ``train`` fits standardisation and PCA on training pixels only;
            ``image`` fits them on every pixel of the scene, as the papers do (leaky:
            reports say so).
        whiten: whiten the PCA components (HybridSN's reference code does).
        batch_size, num_workers: loader settings.
        augment: random flips/rotations of training patches.
        pad_mode: how patches at the border are filled (``reflect`` or ``constant``).
    """

    def __init__(
        self,
        dataset: str | None = "indian_pines",
        root: str | None = None,
        image: str | None = None,
        labels: str | None = None,
        image_variable: str | None = None,
        labels_variable: str | None = None,
        class_names: list[str] | None = None,
        protocol: Literal["disjoint", "random"] = "disjoint",
        train: float = 0.3,
        val: float = 0.1,
        seed: int = 0,
        block_size: int | None = None,
        split_file: str | None = None,
        patch_size: int = 25,
        pca_components: int | None = 30,
        pca_fit: Literal["train", "image"] = "train",
        whiten: bool = True,
        batch_size: int = 256,
        num_workers: int = 0,
        augment: bool = False,
        pad_mode: Literal["reflect", "constant"] = "reflect",
    ) -> None:
        super().__init__()
        if patch_size < 1 or patch_size % 2 == 0:
            raise ConfigError(f"patch_size must be a positive odd number, got {patch_size}")
        if dataset is None and (image is None or labels is None):
            raise ConfigError("give either dataset=<registry name> or both image= and labels=")
        # no save_hyperparameters(): the task logs in_bands/num_classes/patch_size it took
        # from here, and the CLI saves the whole config beside the run anyway
        self.dataset = dataset
        self.root = root
        self.image = image
        self.labels_path = labels
        self.image_variable = image_variable
        self.labels_variable = labels_variable
        self.custom_class_names = class_names
        self.protocol = protocol
        self.train_size = train
        self.val_size = val
        self.seed = seed
        self.block_size = block_size
        self.split_file = split_file
        self.patch_size = patch_size
        self.pca_components = pca_components
        self.pca_fit = pca_fit
        self.whiten = whiten
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.augment = augment
        self.pad_mode = pad_mode
        self.scene: Any = None
        self.split: Split | None = None
        self.preprocessor: Preprocessor | None = None
        self.padded_cube = None
        self.split_path: Path | None = None

    # ---- scene and split -------------------------------------------------------------
    def _load_scene(self) -> Any:
        if self.scene is None:
            from hsi.data.registry import load_dataset, load_scene

            if self.dataset is not None:
                self.scene = load_dataset(self.dataset, root=self.root)
            else:
                self.scene = load_scene(
                    self.image,
                    self.labels_path,
                    variable=self.image_variable,
                    labels_variable=self.labels_variable,
                    class_names=self.custom_class_names,
                )
            self.scene.cube.check_finite()
        return self.scene

    @property
    def class_names(self) -> list[str]:
        return list(self._load_scene().class_names)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def in_bands(self) -> int:
        """Bands the model sees: PCA components, or the cube's band count."""
        return self.pca_components or self._load_scene().cube.bands

    def _split_params(self) -> dict[str, Any]:
        params: dict[str, Any] = {"train": self.train_size, "val": self.val_size}
        if self.protocol == "disjoint":
            params.update(patch_size=self.patch_size, block_size=self.block_size)
        return params

    def default_split_name(self) -> str:
        key = json.dumps(self._split_params(), sort_keys=True)
        digest = hashlib.sha1(key.encode()).hexdigest()[:8]
        name = self.dataset or Path(str(self.image)).stem
        return f"{name}_{self.protocol}_seed{self.seed}_{digest}.json"

    def _make_or_load_split(self) -> Split:
        scene = self._load_scene()
        fingerprint = scene.fingerprint
        if self.split_file and Path(self.split_file).is_file():
            split = Split.load(self.split_file, fingerprint=fingerprint)
            split.check_labels(scene.labels)
            if split.protocol != self.protocol:
                raise ConfigError(
                    f"split file {self.split_file} holds a {split.protocol!r} split but "
                    f"protocol={self.protocol!r}; change one of them"
                )
            self.split_path = Path(self.split_file)
            return split
        split = make_split(self.protocol, scene.labels, seed=self.seed, **self._split_params())
        split.fingerprint = fingerprint
        split.dataset = self.dataset or str(self.image)
        if self.split_file:
            self.split_path = split.save(self.split_file)
        return split

    def _save_split_in_run(self) -> None:
        trainer = self.trainer
        # only into a logged run's folder: without a logger Lightning's log_dir is the
        # working directory, where an unasked-for split.json would be litter
        has_logger = trainer is not None and bool(getattr(trainer, "loggers", None))
        log_dir = getattr(trainer, "log_dir", None) if has_logger else None
        if log_dir and self.split is not None:
            path = Path(log_dir) / "split.json"
            if trainer.is_global_zero:
                self.split.save(path)
            if self.split_path is None:
                self.split_path = path

    # ---- Lightning hooks -------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self.split is not None:
            return
        scene = self._load_scene()
        self.split = self._make_or_load_split()
        counts = self.split.counts(scene.labels, self.num_classes)
        if sum(counts["train"]) == 0:
            raise DataError("the split has no training pixels; lower block_size or raise train")
        missing = [n for n, c in zip(self.class_names, counts["train"], strict=True) if c == 0]
        if missing:
            log.warning("classes without training pixels under this split: %s", missing)
        cube = scene.cube
        data = np.asarray(cube.data, dtype=np.float32)
        valid = cube.valid_mask
        if self.preprocessor is None:
            pre = Preprocessor(self.pca_components, whiten=self.whiten)
            if self.pca_fit == "train":
                rows, cols = self.split.indices("train").T
                fit_pixels = data[:, rows, cols].T
            elif self.pca_fit == "image":
                fit_pixels = data[:, valid].T
            else:
                raise ConfigError(f"pca_fit must be 'train' or 'image', got {self.pca_fit!r}")
            self.preprocessor = pre.fit(fit_pixels, fit_on=self.pca_fit)
        transformed = self.preprocessor.transform_cube(data, valid)
        self.padded_cube = pad_cube(transformed, self.patch_size // 2, self.pad_mode)
        self._save_split_in_run()

    def _dataset(self, part: str, augment: bool = False) -> PatchDataset:
        if self.split is None:
            self.setup()
        coords = self.split.indices(part)
        labels = self.scene.labels[coords[:, 0], coords[:, 1]] - 1
        return PatchDataset(self.padded_cube, coords, labels, self.patch_size, augment)

    def _loader(self, dataset: PatchDataset, shuffle: bool) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self._dataset("train", augment=self.augment), shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self._dataset("val"), shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self._dataset("test"), shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        """Every valid pixel of the scene, for a full classification map."""
        if self.split is None:
            self.setup()
        coords = np.argwhere(self.scene.cube.valid_mask)
        return self._loader(PatchDataset(self.padded_cube, coords, None, self.patch_size), False)

    # ---- what a report and a checkpoint need ------------------------------------------
    def describe(self) -> dict[str, Any]:
        """Dataset, protocol and preprocessing facts for reports and checkpoints."""
        scene = self._load_scene()
        leaky_reasons = []
        if self.protocol == "random":
            leaky_reasons.append("random pixel split: training patches contain test pixels")
        if self.pca_fit == "image":
            leaky_reasons.append("PCA/standardisation fitted on the whole image")
        return {
            "dataset": self.dataset or "custom",
            "image_path": str(scene.image_path),
            "fingerprint": scene.fingerprint,
            "class_names": self.class_names,
            "split": split_summary(self.split, scene.labels, self.class_names)
            if self.split is not None
            else None,
            "split_file": str(self.split_path) if self.split_path else None,
            "patch_size": self.patch_size,
            "pca_components": self.pca_components,
            "pca_fit": self.pca_fit,
            "pad_mode": self.pad_mode,
            "leaky": bool(leaky_reasons),
            "leaky_reasons": leaky_reasons,
            "wavelengths": None
            if scene.cube.wavelengths is None
            else scene.cube.wavelengths.tolist(),
        }
