"""Everything a prediction checks before it creates any output: the checkpoint and its
model, the scene's band count and wavelengths, the output paths; the result is a
:class:`_Plan` that :func:`~hsi.inference.predict.predict_scene` and
:mod:`hsi.inference.distributed` carry out."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hsi.data.patches import PAD_MODES
from hsi.data.preprocessing import Preprocessor
from hsi.data.writers import refuse_existing
from hsi.errors import ConfigError, DataError
from hsi.inference.scenes import PathLike, Window, _open_scene, _Scene, _windows
from hsi.inference.windows import _expected_mean_abs, _WindowReader
from hsi.tasks.checkpointing import load_task_checkpoint

# Wavelengths of the scene may differ from the training sensor's by this much (nm) before
# the scene is refused: band centres of one sensor's products agree to well under 1 nm,
# while a different sensor or band subset differs by tens of nanometres.
WAVELENGTH_TOLERANCE_NM = 5.0


def _torch_device(device: str | torch.device) -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"--device {device!r} is not a device; use cpu, cuda or cuda:N") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {device} but no CUDA GPU is available; use --device cpu")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"--device {device} but MPS is not available; use --device cpu")
    return dev


def _load_task(checkpoint: PathLike, device: torch.device) -> Any:
    """The ClassificationTask of a checkpoint, on ``device`` and in eval mode.

    ``checkpoint`` is a ``.ckpt`` written by ``hsi fit``, a weight file exported by
    :mod:`hsi.pretrained`, or the name of shipped weights (``indian_pines``,
    ``hybridsn/indian_pines``) when no file of that name exists. Everything is loaded
    with ``weights_only=True``.
    """
    return _load_checkpoint(checkpoint, device)[0]


def _load_checkpoint(checkpoint: PathLike, device: torch.device) -> tuple[Any, str]:
    """:func:`_load_task` plus a label of what was loaded (for the map's metadata)."""
    from hsi import pretrained
    from hsi.tasks.classification import ClassificationTask

    found = pretrained.pretrained_task(checkpoint, "classification")
    if found is not None:
        task, label = found
        return task.to(device).eval(), label
    path = Path(os.fspath(checkpoint)).expanduser()
    if not path.is_file():
        raise DataError(
            f"{path}: checkpoint not found; pass a .ckpt written by `hsi fit` "
            "(runs/<name>/version_N/checkpoints/), an exported .pt, or shipped weights "
            f"({', '.join(pretrained.list_pretrained()) or 'none installed'})"
        )
    task = load_task_checkpoint(
        ClassificationTask,
        path,
        device,
        "classification",
        "pass a checkpoint written by `hsi fit` with a ClassificationTask, or a weight file "
        "exported by `python -m hsi.pretrained export`",
    )
    if task.net is None:
        raise DataError(f"{path}: the checkpoint holds no model; pass one written by `hsi fit`")
    return task.to(device).eval(), str(path)


def _side_paths(output: Path) -> dict[str, Path]:
    stem = output.stem
    return {
        "confidence": output.with_name(f"{stem}_confidence.tif"),
        "probabilities": output.with_name(f"{stem}_probabilities.tif"),
        "quicklook": output.with_name(f"{stem}.png"),
    }


def _check_wavelengths(scene: _Scene, trained: Sequence[float] | None, checkpoint: Path) -> None:
    if trained is None or scene.wavelengths is None:
        return
    theirs = np.asarray(trained, dtype=np.float64)
    ours = scene.wavelengths
    if theirs.shape != ours.shape:
        return  # band counts are checked (and reported) separately
    diff = float(np.max(np.abs(theirs - ours)))
    if diff > WAVELENGTH_TOLERANCE_NM:
        raise DataError(
            f"{scene.source}: wavelengths {ours.min():.1f}-{ours.max():.1f} nm differ from "
            f"those checkpoint {checkpoint} was trained on ({theirs.min():.1f}-"
            f"{theirs.max():.1f} nm) by up to {diff:.1f} nm (> {WAVELENGTH_TOLERANCE_NM:g} nm); "
            "use a scene from the same sensor with the same band selection"
        )


@dataclass
class _Plan:
    """Everything one prediction run needs, checked before any output is created."""

    ckpt_path: Path
    out_path: Path
    targets: dict[str, Path]  # output kind (map, confidence, ...) -> final path
    overwrite: bool
    device: torch.device
    task: Any  # ClassificationTask, on ``device`` and in eval mode
    pre: Preprocessor
    patch: int
    num_classes: int
    class_names: list[str]
    scene: _Scene
    pad_mode: str  # the checkpoint's, adapted to the scene size
    map_dtype: str
    windows: list[Window]
    batch_size: int
    tags: dict[str, str]

    @property
    def radius(self) -> int:
        return self.patch // 2

    def reader(self) -> _WindowReader:
        return _WindowReader(
            self.scene, self.pre, self.radius, self.pad_mode, _expected_mean_abs(self.pre)
        )


def _plan_prediction(
    checkpoint: PathLike,
    inputs: PathLike | Sequence[PathLike],
    output: PathLike,
    *,
    tile: int,
    batch_size: int,
    probabilities: bool,
    confidence: bool,
    overwrite: bool,
    quicklook: bool,
    device: str | torch.device,
) -> _Plan:
    """All of predict_scene's checks (before any output exists) and the loaded model."""
    if tile < 1:
        raise ConfigError(f"--tile must be at least 1 pixel, got {tile}")
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {batch_size}")
    ckpt_path = Path(os.fspath(checkpoint)).expanduser()
    out_path = Path(os.fspath(output)).expanduser()
    side = _side_paths(out_path)
    targets = {"map": out_path}
    if confidence:
        targets["confidence"] = side["confidence"]
    if probabilities:
        targets["probabilities"] = side["probabilities"]
    if quicklook:
        targets["quicklook"] = side["quicklook"]
    for path in targets.values():
        refuse_existing(path, overwrite)

    dev = _torch_device(device)
    task, ckpt_label = _load_checkpoint(checkpoint, dev)
    pre = task.get_preprocessor()
    if pre is None or not pre.fitted:
        raise DataError(
            f"{ckpt_path}: the checkpoint has no fitted preprocessing, so the scene cannot be "
            "prepared as the training data was; use a checkpoint written by `hsi fit`"
        )
    hp = task.hparams
    patch, num_classes = int(hp.patch_size), int(hp.num_classes)
    radius = patch // 2
    desc = dict(task.data_description or {})
    names = desc.get("class_names")
    class_names = (
        [str(n) for n in names]
        if names and len(names) == num_classes
        else [f"class_{i}" for i in range(1, num_classes + 1)]
    )
    pad_mode = desc.get("pad_mode") or "reflect"
    if pad_mode not in PAD_MODES:
        raise DataError(f"{ckpt_path}: unknown pad mode {pad_mode!r} in the checkpoint")

    scene = _open_scene(inputs)
    if scene.bands != pre.in_bands:
        raise DataError(
            f"{scene.source} has {scene.bands} bands but checkpoint {ckpt_path} was trained "
            f"on {pre.in_bands}-band data; use a scene from the same sensor with the same "
            "band selection"
        )
    _check_wavelengths(scene, desc.get("wavelengths"), ckpt_path)
    input_paths = (
        [Path(os.fspath(p)) for p in inputs]
        if isinstance(inputs, (list, tuple))
        else [Path(os.fspath(inputs))]
    )
    for path in targets.values():
        if any(path.resolve() == p.expanduser().resolve() for p in input_paths):
            raise DataError(f"{path} is an input of this run; choose another --output")

    # numpy's reflect needs more pixels than the pad; pad_cube switches on the whole scene
    mode = pad_mode
    if mode == "reflect" and min(scene.height, scene.width) <= radius:
        mode = "symmetric"
    return _Plan(
        ckpt_path=ckpt_path,
        out_path=out_path,
        targets=targets,
        overwrite=overwrite,
        device=dev,
        task=task,
        pre=pre,
        patch=patch,
        num_classes=num_classes,
        class_names=class_names,
        scene=scene,
        pad_mode=mode,
        map_dtype="uint8" if num_classes <= 255 else "uint16",
        windows=_windows(scene.height, scene.width, tile),
        batch_size=batch_size,
        tags={
            "class_names": json.dumps(class_names),
            "class_values": "1..K in the order of class_names; 0 = no data",
            "hsi_checkpoint": ckpt_label,
            "hsi_model": str(hp.model),
            "hsi_patch_size": str(patch),
            "hsi_input": scene.source,
        },
    )
