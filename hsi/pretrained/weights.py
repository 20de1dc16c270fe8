"""Loading a weight file (``torch.load(..., weights_only=True)``: no pickled code runs), its
sha256 checked against the index, and building the model it holds."""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hsi.errors import ConfigError, DataError
from hsi.pretrained.index import (
    FORMAT,
    FORMAT_VERSION,
    INDEX_NAME,
    PathLike,
    PretrainedEntry,
    _norm_model,
    looks_like_name,
    resolve,
    sha256_of,
)

_DTYPES = {"float16": torch.float16, "float32": torch.float32, "bfloat16": torch.bfloat16}


@dataclass
class PretrainedWeights:
    """A loaded weight file: everything needed to rebuild the model and its input pipeline."""

    path: Path
    model: str
    model_kwargs: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    dtype: str
    preprocessing: dict[str, Any] | None
    data: dict[str, Any]
    source: dict[str, Any]
    entry: PretrainedEntry | None = None
    task: str = "classification"  # or "restoration"
    restoration: dict[str, Any] | None = None  # kind, [0, 1] scaling, training degradation

    @property
    def name(self) -> str:
        return self.entry.name if self.entry is not None else str(self.path)

    @property
    def class_names(self) -> list[str] | None:
        names = self.data.get("class_names")
        return None if names is None else [str(n) for n in names]

    def preprocessor(self) -> Any:
        """The fitted :class:`~hsi.data.preprocessing.Preprocessor` of the training data."""
        from hsi.data.preprocessing import Preprocessor

        if not self.preprocessing:
            raise DataError(f"{self.path}: the weights hold no fitted preprocessing")
        return Preprocessor.from_state_dict(self.preprocessing)

    def config(self) -> dict[str, Any]:
        """What a built model carries as ``model.pretrained_cfg`` (timm's name for it)."""
        return {
            "name": self.name,
            "file": str(self.path),
            "sha256": self.entry.sha256 if self.entry is not None else None,
            "model": self.model,
            "model_kwargs": dict(self.model_kwargs),
            "dtype": self.dtype,
            "task": self.task,
            "restoration": self.restoration,
            "preprocessing": self.preprocessing,
            "class_names": self.class_names,
            "data": self.data,
        }

    def load_into(self, model: nn.Module) -> nn.Module:
        """Copy the weights into ``model`` (cast to its dtype); a mismatch is a clear error."""
        try:
            model.load_state_dict(self.state_dict, strict=True)
        except RuntimeError as exc:
            msg = " ".join(str(exc).split())[:400]
            raise ConfigError(
                f"weights {self.name} do not fit this {self.model} model ({msg}); build it "
                f"with the weights' kwargs {self.model_kwargs}"
            ) from exc
        model.pretrained_cfg = self.config()  # type: ignore[assignment]
        return model

    def build(self) -> nn.Module:
        """The model with these weights (fp32 parameters, eval mode)."""
        from hsi.models.registry import create_model

        return self.load_into(create_model(self.model, **self.model_kwargs)).eval()

    def to_task(self) -> Any:
        """The task holding the model and what inference needs, as ``load_from_checkpoint``
        would give: a :class:`~hsi.tasks.classification.ClassificationTask` with its
        preprocessing and data facts, or a :class:`~hsi.tasks.restoration.RestorationTask`
        with its [0, 1] scaling and training degradation."""
        if self.task == "restoration":
            return self._restoration_task()
        from hsi.tasks.classification import ClassificationTask

        kwargs = dict(self.model_kwargs)
        try:
            sizes = {k: int(kwargs.pop(k)) for k in ("in_bands", "num_classes", "patch_size")}
        except KeyError as exc:
            raise DataError(
                f"{self.path}: model kwargs lack {exc}; not a classification weight"
            ) from exc
        task = ClassificationTask(model=self.model, model_kwargs=kwargs, **sizes)
        self.load_into(task.net)
        task.preprocessing = self.preprocessing
        task.data_description = dict(self.data)
        return task

    def _restoration_task(self) -> Any:
        from hsi.tasks.restoration import RestorationTask

        kwargs = dict(self.model_kwargs)
        facts = dict(self.restoration or {})
        if "in_bands" not in kwargs or not facts.get("scaling"):
            raise DataError(
                f"{self.path}: a restoration weight needs in_bands and its [0, 1] scaling; "
                "re-export it with `python -m hsi.pretrained export`"
            )
        in_bands = int(kwargs.pop("in_bands"))
        scale = int(kwargs.pop("scale", 1))
        task = RestorationTask(
            model=self.model, model_kwargs=kwargs, in_bands=in_bands, scale=scale
        )
        self.load_into(task.net)
        task.scaling = facts["scaling"]
        task.degradation = facts.get("degradation")
        task.data_description = dict(self.data)
        return task


def _read_file(path: Path) -> dict[str, Any]:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, not a torch file, pickled code, ...
        msg = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise DataError(
            f"{path}: cannot load as hsi pretrained weights ({msg}); the file is corrupt or "
            "not a weight file (re-create it with `python -m hsi.pretrained export`)"
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise DataError(
            f"{path}: not an hsi pretrained-weights file (no format={FORMAT!r}); pass a file "
            "written by `python -m hsi.pretrained export`, or a .ckpt to `hsi predict`"
        )
    if int(payload.get("format_version", 0)) > FORMAT_VERSION:
        raise DataError(
            f"{path}: weight format version {payload['format_version']} is newer than this "
            f"hsi reads ({FORMAT_VERSION}); upgrade hsi"
        )
    return payload


def is_weight_file(path: PathLike) -> bool:
    """True when ``path`` is an exported weight file (not a Lightning ``.ckpt``)."""
    try:
        _read_file(Path(path))
    except DataError:
        return False
    return True


def load_weights(
    ref: str | PathLike,
    model: str | None = None,
    *,
    directory: PathLike | None = None,
) -> PretrainedWeights:
    """Load weights named ``ref`` (``tag``, ``model/tag``) or stored at ``ref`` (a path).

    A listed weight's file must exist and match its sha256; a path is loaded as it is.
    ``model`` refuses weights made for another model. Always ``weights_only=True``.
    """
    entry: PretrainedEntry | None = None
    text = os.fspath(ref)
    path = Path(text).expanduser()
    if path.is_file() or not looks_like_name(text):
        if not path.is_file():
            raise DataError(f"{path}: weight file not found")
    else:
        entry = resolve(text, model=model, directory=directory)
        path = entry.path
        if not path.is_file():
            raise DataError(
                f"{path}: the file of pretrained weights {entry.name} is missing (listed in "
                f"{entry.directory / INDEX_NAME}); reinstall hsi or restore checkpoints/"
            )
        actual = sha256_of(path)
        if actual != entry.sha256:
            raise DataError(
                f"{path}: sha256 {actual[:16]}… does not match {entry.sha256[:16]}… listed for "
                f"{entry.name}; the file is corrupt or was replaced — restore it, or re-export "
                "it and update index.yaml with `python -m hsi.pretrained export`"
            )
    weights = _weights_from_payload(path, _read_file(path), entry)
    if entry is not None and weights.model != entry.model:
        raise DataError(
            f"{path}: holds a {weights.model!r} model but index.yaml lists it as {entry.name}"
        )
    if model is not None and weights.model != _norm_model(model):
        raise ConfigError(
            f"{path}: these weights are for model {weights.model!r}, not {model!r}; use "
            f"create_model({weights.model!r}, pretrained=...)"
        )
    return weights


def _weights_from_payload(
    path: Path, payload: dict[str, Any], entry: PretrainedEntry | None
) -> PretrainedWeights:
    """The :class:`PretrainedWeights` of a weight file's dict (read by :func:`_read_file`)."""
    try:
        return PretrainedWeights(
            path=path,
            model=_norm_model(str(payload["model"])),
            model_kwargs=dict(payload["model_kwargs"]),
            state_dict=dict(payload["state_dict"]),
            dtype=str(payload.get("dtype", "float32")),
            preprocessing=payload.get("preprocessing"),
            data=dict(payload.get("data") or {}),
            source=dict(payload.get("source") or {}),
            entry=entry,
            task=str(payload.get("task", "classification")),
            restoration=payload.get("restoration"),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{path}: weight file lacks {exc}; re-export it") from exc


def pretrained_task(ref: PathLike, task: str) -> tuple[Any, str] | None:
    """The task built from the shipped weights named ``ref`` (when no file of that name
    exists) or from the weight file at ``ref``, with a label for the output's metadata.

    None for anything else (a ``.ckpt``, a missing path that is not a name): the caller
    loads or reports it. ``task`` (``classification``, ``restoration``) is what the caller
    runs; weights of another task are a clear error, not a model fed the wrong input.
    """
    text = os.fspath(ref)
    path = Path(text).expanduser()
    if path.is_file():
        if path.suffix.lower() == ".ckpt":
            return None
        try:
            payload = _read_file(path)  # read once: recognised and loaded from the same dict
        except DataError:
            return None  # not a weight file: the caller's checkpoint loader reports it
        weights = _weights_from_payload(path, payload, None)
        label = str(path)
    elif looks_like_name(text):
        try:
            weights = load_weights(text)
        except ConfigError as exc:  # an unknown name: say a file was looked for too
            raise DataError(
                f"{path}: checkpoint not found, and not the name of shipped weights ({exc})"
            ) from exc
        sha = weights.entry.sha256 if weights.entry is not None else "?"
        label = f"{weights.name} ({weights.path.name}, sha256 {sha})"
    else:
        return None
    if weights.task != task:
        raise DataError(
            f"{weights.name}: these are {weights.task} weights, not {task} ones; "
            "`hsi predict --ckpt` picks the right path for them"
        )
    return weights.to_task(), label


def build_pretrained(name: str, pretrained: str | PathLike, kwargs: dict[str, Any]) -> nn.Module:
    """``create_model(name, pretrained=..., **kwargs)``: the weights' kwargs, checked
    against the caller's, then the weights loaded.

    The weights fix every constructor argument they were trained with (recorded ones, and
    the constructor's defaults for the rest); a caller's kwarg that differs is refused,
    since it would either not fit the weights or silently change the trained model.
    """
    from hsi.models.registry import create_model, get_model_class

    weights = load_weights(pretrained, model=name)
    ctor = get_model_class(weights.model)
    trained = {
        k: p.default
        for k, p in inspect.signature(ctor).parameters.items()
        if p.default is not inspect.Parameter.empty
    }
    trained.update(weights.model_kwargs)
    conflicts = [
        f"{k}={v!r} (weights: {trained[k]!r})" if k in trained else f"{k}={v!r}"
        for k, v in kwargs.items()
        if k not in trained or trained[k] != v
    ]
    if conflicts:
        raise ConfigError(
            f"pretrained weights {weights.name} were trained with "
            f"{', '.join(f'{k}={v!r}' for k, v in weights.model_kwargs.items())}; "
            f"drop the conflicting {', '.join(conflicts)} (to train on other data, build the "
            "model without pretrained=)"
        )
    return weights.load_into(create_model(weights.model, **weights.model_kwargs))
