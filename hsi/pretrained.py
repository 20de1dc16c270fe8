"""Shipped pretrained weights: list, resolve, verify, load, export and re-evaluate them.

Weights live in the top-level ``checkpoints/`` folder (packaged as ``hsi._checkpoints``),
one ``.pt`` file per weight plus a model card (``<file stem>.md``), all listed in
``checkpoints/index.yaml`` with their sha256 and the metrics measured with the shipped
file. A weight is named ``<model>/<tag>`` (``hybridsn/indian_pines``); the bare tag works
wherever it is unambiguous::

    model = hsi.create_model("hybridsn", pretrained="indian_pines")
    hsi predict --ckpt indian_pines --input scene.tif --output map.tif

Why a separate format from Lightning's ``.ckpt``: a ``.ckpt`` carries the optimizer state
(three times the weights) and the task's class path; a shipped weight needs only what
inference needs, as a plain dict of tensors, strings and numbers, so it loads with
``torch.load(..., weights_only=True)`` (no pickled code runs) and can be stored in
float16 to stay under the 20 MB a git repository should carry. The dict holds: the model
name and constructor kwargs, the state dict, the fitted preprocessing (z-score + PCA
state, fitted on the training pixels, never refitted on a new scene), the data facts the
task recorded (class names, wavelengths, patch size, pad mode, protocol, split summary).

Command line (``python -m hsi.pretrained ...``):

- ``list``: the shipped weights;
- ``export --ckpt RUN.ckpt --tag TAG``: write ``checkpoints/<model>_<tag>.pt`` from a
  ``hsi fit`` checkpoint, measure it (and the fp32 source) on the split's test pixels and
  record both in ``index.yaml``;
- ``evaluate NAME``: re-measure a weight's test metrics on its split;
- ``verify``: check every listed file's sha256.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import difflib
import hashlib
import importlib.resources
import inspect
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn

from hsi.errors import ConfigError, DataError, HsiError

__all__ = [
    "PretrainedEntry",
    "PretrainedWeights",
    "checkpoints_dir",
    "evaluate_weights",
    "export_weights",
    "list_pretrained",
    "load_index",
    "load_weights",
    "resolve",
]

FORMAT = "hsi-pretrained"
FORMAT_VERSION = 1
INDEX_NAME = "index.yaml"
# Above this a weight belongs in a release asset, not in git (the repository is cloned
# by every user and CI run; git keeps every version of a binary forever).
MAX_GIT_BYTES = 20 * 1024 * 1024
CHECKPOINTS_ENV = "HSI_CHECKPOINTS"
REPO_ROOT = Path(__file__).resolve().parents[1]
_DTYPES = {"float16": torch.float16, "float32": torch.float32, "bfloat16": torch.bfloat16}
_TAG = re.compile(r"^[a-z0-9][a-z0-9_]*$")

PathLike = str | os.PathLike[str]


# --------------------------------------------------------------------------------------
# the index
# --------------------------------------------------------------------------------------


def checkpoints_dir() -> Path:
    """The folder holding ``index.yaml`` and the weights.

    ``$HSI_CHECKPOINTS`` when set (your own collection, or a test's), else the packaged
    ``hsi._checkpoints``, else ``checkpoints/`` beside ``hsi/`` in a source checkout.
    """
    env = os.environ.get(CHECKPOINTS_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    try:
        packaged = Path(str(importlib.resources.files("hsi._checkpoints")))
        if (packaged / INDEX_NAME).is_file():
            return packaged
    except (ModuleNotFoundError, TypeError):
        pass
    return REPO_ROOT / "checkpoints"


@dataclass(frozen=True)
class PretrainedEntry:
    """One row of ``index.yaml``: a shipped weight and what was measured with it."""

    model: str
    tag: str
    file: str
    sha256: str
    dataset: str
    protocol: str
    leaky: bool
    split_file: str | None
    metrics: dict[str, float]
    directory: Path
    card: str | None = None
    dtype: str = "float32"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.model}/{self.tag}"

    @property
    def path(self) -> Path:
        return self.directory / self.file


def _norm_model(name: str) -> str:
    return name.strip().lower().replace("-", "_")


_ENTRY_FIELDS = frozenset(
    "model tag file sha256 dataset protocol leaky split_file metrics card dtype".split()
)


def load_index(directory: PathLike | None = None) -> list[PretrainedEntry]:
    """The entries of ``index.yaml`` (an empty list when the folder has no index)."""
    folder = Path(directory) if directory is not None else checkpoints_dir()
    path = folder / INDEX_NAME
    if not path.is_file():
        return []
    try:
        doc = yaml.safe_load(path.read_text()) or {}
        rows = doc.get("weights") or []
        entries = []
        for row in rows:
            entries.append(
                PretrainedEntry(
                    model=_norm_model(str(row["model"])),
                    tag=str(row["tag"]).lower(),
                    file=str(row["file"]),
                    sha256=str(row["sha256"]).lower(),
                    dataset=str(row["dataset"]),
                    protocol=str(row["protocol"]),
                    leaky=bool(row["leaky"]),
                    split_file=row.get("split_file"),
                    metrics={k: float(v) for k, v in (row.get("metrics") or {}).items()},
                    directory=folder,
                    card=row.get("card"),
                    dtype=str(row.get("dtype", "float32")),
                    extra={k: v for k, v in row.items() if k not in _ENTRY_FIELDS},
                )
            )
    except (yaml.YAMLError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise DataError(f"{path}: not a valid pretrained-weights index ({exc})") from exc
    return entries


def list_pretrained(model: str | None = None, directory: PathLike | None = None) -> list[str]:
    """Names (``model/tag``) of the listed weights, optionally of one model only."""
    entries = load_index(directory)
    if model is not None:
        entries = [e for e in entries if e.model == _norm_model(model)]
    return sorted(e.name for e in entries)


def resolve(
    ref: str, model: str | None = None, directory: PathLike | None = None
) -> PretrainedEntry:
    """The index entry named by ``ref``: ``model/tag``, or a tag unique among the weights
    (of ``model``, when given).

    Unknown names list the known ones; a tag that exists only for another model says so.
    """
    entries = load_index(directory)
    known = sorted(e.name for e in entries)
    known_text = ", ".join(known) if known else "none (no index.yaml found)"
    key = ref.strip().lower()
    want = _norm_model(model) if model is not None else None
    if "/" in key:
        owner, _, tag = key.partition("/")
        owner = _norm_model(owner)
        if want is not None and owner != want:
            raise ConfigError(
                f"pretrained weights {ref!r} are for model {owner!r}, not {want!r}; "
                f"use create_model({owner!r}, pretrained={ref!r}) or one of {want!r}'s: "
                f"{', '.join(list_pretrained(want, directory)) or 'none'}"
            )
        matches = [e for e in entries if e.model == owner and e.tag == tag]
    else:
        matches = [e for e in entries if e.tag == key]
        if want is not None:
            mine = [e for e in matches if e.model == want]
            if matches and not mine:
                raise ConfigError(
                    f"pretrained tag {ref!r} is for {', '.join(e.name for e in matches)}, not "
                    f"model {want!r}; {want!r} has: "
                    f"{', '.join(list_pretrained(want, directory)) or 'no shipped weights'}"
                )
            matches = mine
    if not matches:
        close = difflib.get_close_matches(key, known + [e.tag for e in entries], n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown pretrained weights {ref!r}.{hint} Known: {known_text}")
    if len(matches) > 1:
        raise ConfigError(
            f"pretrained tag {ref!r} is ambiguous; name one of: "
            f"{', '.join(e.name for e in matches)}"
        )
    return matches[0]


def looks_like_name(ref: str) -> bool:
    """True for ``tag`` or ``model/tag`` (what :func:`resolve` takes), not a file path."""
    parts = ref.strip().lower().split("/")
    return 1 <= len(parts) <= 2 and all(_TAG.match(p.replace("-", "_")) for p in parts)


def sha256_of(path: PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --------------------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------------------


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
        """A :class:`~hsi.tasks.classification.ClassificationTask` holding the model, its
        preprocessing and data facts, as ``load_from_checkpoint`` would give."""
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
    payload = _read_file(path)
    try:
        weights = PretrainedWeights(
            path=path,
            model=_norm_model(str(payload["model"])),
            model_kwargs=dict(payload["model_kwargs"]),
            state_dict=dict(payload["state_dict"]),
            dtype=str(payload.get("dtype", "float32")),
            preprocessing=payload.get("preprocessing"),
            data=dict(payload.get("data") or {}),
            source=dict(payload.get("source") or {}),
            entry=entry,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{path}: weight file lacks {exc}; re-export it") from exc
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


# --------------------------------------------------------------------------------------
# export and evaluation
# --------------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """``value`` as dicts/lists/str/int/float/bool/None only, so weights_only loads it."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def export_weights(
    checkpoint: PathLike,
    output: PathLike,
    *,
    dtype: str = "float16",
    tag: str | None = None,
    split_file: str | None = None,
) -> Path:
    """Write the weight file of a ``hsi fit`` checkpoint (``.ckpt``) to ``output``.

    Keeps the network's state dict (floating tensors cast to ``dtype``), the model name and
    constructor kwargs, the fitted preprocessing and the data facts; drops the optimizer
    and loop state and the local data path. ``split_file`` replaces the split path the run
    recorded (a run folder on the exporting machine) with the one shipped beside the
    weights, e.g. ``splits/...json``. The file is re-read with ``weights_only=True`` before
    this returns, so what is written is what loads.
    """
    if dtype not in _DTYPES:
        raise ConfigError(f"dtype must be one of {', '.join(_DTYPES)}, got {dtype!r}")
    ckpt_path = Path(checkpoint).expanduser()
    try:
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        hp = dict(ckpt["hyper_parameters"])
        meta = dict(ckpt.get("hsi") or {})
        state = ckpt["state_dict"]
    except FileNotFoundError as exc:
        raise DataError(f"{ckpt_path}: checkpoint not found") from exc
    except Exception as exc:
        raise DataError(f"{ckpt_path}: not a checkpoint written by `hsi fit` ({exc})") from exc
    if not meta.get("preprocessing"):
        raise DataError(f"{ckpt_path}: the checkpoint has no fitted preprocessing to ship")
    kwargs = dict(hp.get("model_kwargs") or {})
    for key in ("in_bands", "num_classes", "patch_size"):
        kwargs[key] = hp[key]
    target = _DTYPES[dtype]
    net_state = {
        key[len("net.") :]: (t.to(target) if t.is_floating_point() else t).clone()
        for key, t in state.items()
        if key.startswith("net.")
    }
    if not net_state:
        raise DataError(f"{ckpt_path}: no network weights (net.*) in the checkpoint")
    data = {k: v for k, v in (meta.get("data") or {}).items() if k != "image_path"}
    if split_file is not None:
        data["split_file"] = str(split_file)
    task_hp = {
        k: v for k, v in hp.items() if not k.startswith("_") and k not in ("model", "model_kwargs")
    }
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "tag": tag,
        "model": str(hp["model"]),
        "model_kwargs": _plain(kwargs),
        "dtype": dtype,
        "state_dict": net_state,
        "preprocessing": _plain(meta["preprocessing"]),
        "data": _plain(data),
        "source": _plain(
            {
                "checkpoint": ckpt_path.name,
                "epoch": ckpt.get("epoch"),
                "global_step": ckpt.get("global_step"),
                "lightning_version": ckpt.get("pytorch-lightning_version"),
                "task_hparams": task_hp,
                "exported": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d"),
            }
        ),
    }
    from hsi import __version__

    payload["hsi_version"] = __version__
    out = Path(output).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    from hsi.data.writers import atomic_output

    with atomic_output(out, overwrite=True) as tmp:
        torch.save(payload, tmp)
        _read_file(Path(tmp))  # weights_only round trip before the file is in place
    return out


def _resolve_repo_path(path: str) -> Path:
    """A path as written in a card: absolute, else from the current folder, else the repo."""
    p = Path(path).expanduser()
    if p.is_absolute() or p.exists():
        return p
    return REPO_ROOT / p


@torch.no_grad()
def evaluate_weights(
    weights: PretrainedWeights | nn.Module,
    *,
    root: PathLike | None = None,
    split_file: PathLike | None = None,
    part: str = "test",
    batch_size: int = 256,
    data: dict[str, Any] | None = None,
    preprocessing: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """OA/AA/kappa of the weights on ``part`` of their split (default: the recorded one).

    The scene is the registered dataset the weights were trained on (refused if its sha256
    differs from the recorded fingerprint); it is preprocessed with the *stored* fitted
    preprocessing, padded as in training, classified (fully convolutionally when the model
    can) and scored on the split's ``part`` pixels. ``weights`` may also be a built model
    with ``data``/``preprocessing`` given (the fp32 source of an export).
    """
    from hsi.data.patches import pad_cube
    from hsi.data.preprocessing import Preprocessor
    from hsi.data.protocols import Split
    from hsi.data.registry import load_dataset
    from hsi.inference import classify_cube
    from hsi.metrics import classification_metrics

    if isinstance(weights, PretrainedWeights):
        model = weights.build()
        data = weights.data
        preprocessing = weights.preprocessing
    else:
        model = weights.eval()
        if data is None or preprocessing is None:
            raise ConfigError("evaluating a bare model needs its data facts and preprocessing")
    dataset = data.get("dataset")
    if not dataset or dataset == "custom":
        raise ConfigError("the weights were not trained on a registered dataset; cannot evaluate")
    split_ref = split_file or data.get("split_file")
    if not split_ref:
        raise ConfigError("no split file recorded with the weights; pass split_file")
    scene = load_dataset(dataset, root=root)
    recorded = data.get("fingerprint")
    if recorded and recorded != scene.fingerprint:
        raise DataError(
            f"{dataset}: the cube's sha256 {scene.fingerprint[:12]}… differs from the one the "
            f"weights were trained on ({recorded[:12]}…); use the original files"
        )
    split = Split.load(_resolve_repo_path(str(split_ref)), fingerprint=scene.fingerprint)
    split.check_labels(scene.labels)
    pre = Preprocessor.from_state_dict(preprocessing)
    cube = scene.cube
    transformed = pre.transform_cube(np.asarray(cube.data, dtype=np.float32), cube.valid_mask)
    patch = int(data.get("patch_size") or model.patch_size)
    padded = pad_cube(transformed, patch // 2, data.get("pad_mode") or "reflect")
    start = time.perf_counter()
    probs = classify_cube(model, padded, patch, batch_size=batch_size)
    seconds = time.perf_counter() - start
    rows, cols = split.indices(part).T
    truth = scene.labels[rows, cols] - 1
    pred = probs[:, rows, cols].argmax(0).numpy()
    k = probs.shape[0]
    cm = np.bincount(truth * k + pred, minlength=k * k).reshape(k, k)
    metrics = classification_metrics(cm)
    return {
        "OA": metrics["OA"],
        "AA": metrics["AA"],
        "kappa": metrics["kappa"],
        "pixels": int(len(truth)),
        "part": part,
        "split_file": str(split_ref),
        "seconds": seconds,
        # every valid pixel's class probabilities, to compare two weights' maps
        "probabilities": probs[:, cube.valid_mask],
    }


def _source_model(checkpoint: Path) -> tuple[nn.Module, dict[str, Any], dict[str, Any]]:
    """The fp32 network of a ``.ckpt``, with its data facts and preprocessing."""
    from hsi.inference.plan import _load_task

    task = _load_task(checkpoint, torch.device("cpu"))
    return task.net, dict(task.data_description or {}), task.preprocessing


_ROW_ORDER = (
    "model", "tag", "file", "sha256", "bytes", "dtype", "parameters", "dataset", "protocol",
    "leaky", "leaky_reasons", "split_file", "card", "source_checkpoint", "source_epoch",
    "test_pixels", "metrics", "metrics_fp32", "vs_fp32",
)  # fmt: skip


def _write_index(directory: Path, rows: list[dict[str, Any]]) -> Path:
    header = (
        "# Shipped pretrained weights (hsi.pretrained). Written by\n"
        "# `python -m hsi.pretrained export`; metrics are measured with the shipped file on the\n"
        "# test pixels of split_file (metrics_fp32: the same with the fp32 source checkpoint).\n"
    )
    rank = {key: i for i, key in enumerate(_ROW_ORDER)}
    rows = [dict(sorted(r.items(), key=lambda kv: rank.get(kv[0], len(rank)))) for r in rows]
    body = yaml.safe_dump(
        {"format_version": FORMAT_VERSION, "weights": rows}, sort_keys=False, allow_unicode=True
    )
    path = directory / INDEX_NAME
    path.write_text(header + body)
    return path


def _round(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: round(float(metrics[k]), 4) for k in ("OA", "AA", "kappa")}


def export_main(args: argparse.Namespace) -> int:
    directory = Path(args.out) if args.out else checkpoints_dir()
    directory.mkdir(parents=True, exist_ok=True)
    ckpt = Path(args.ckpt).expanduser()
    if not _TAG.match(args.tag):
        raise ConfigError(f"tag {args.tag!r}: use lower-case letters, digits and _")
    tmp_model = torch.load(ckpt, map_location="cpu", weights_only=True)["hyper_parameters"]
    model_name = _norm_model(str(tmp_model["model"]))
    stem = f"{model_name}_{args.tag}"
    path = export_weights(
        ckpt, directory / f"{stem}.pt", dtype=args.dtype, tag=args.tag, split_file=args.split
    )
    size = path.stat().st_size
    print(f"wrote {path} ({size / 1e6:.2f} MB, {args.dtype})")
    if size > MAX_GIT_BYTES:
        print(
            f"warning: {path.name} is over {MAX_GIT_BYTES // 2**20} MiB; ship it as a release "
            "asset, not in git",
            file=sys.stderr,
        )
    weights = load_weights(path)
    data = weights.data
    row: dict[str, Any] = {
        "model": model_name,
        "tag": args.tag,
        "file": path.name,
        "sha256": sha256_of(path),
        "bytes": size,
        "dtype": args.dtype,
        "parameters": int(sum(t.numel() for t in weights.state_dict.values())),
        "dataset": data.get("dataset"),
        "protocol": (data.get("split") or {}).get("protocol"),
        "leaky": bool(data.get("leaky")),
        "leaky_reasons": list(data.get("leaky_reasons") or []),
        "split_file": args.split or data.get("split_file"),
        "card": f"{stem}.md",
        "source_checkpoint": str(args.ckpt),
        "source_epoch": weights.source.get("epoch"),
    }
    if not args.no_evaluate:
        measured = evaluate_weights(weights, root=args.root, split_file=row["split_file"])
        net, src_data, src_pre = _source_model(ckpt)
        source = {"data": src_data, "preprocessing": src_pre}
        fp32 = evaluate_weights(net, root=args.root, split_file=row["split_file"], **source)
        row["test_pixels"] = measured["pixels"]
        row["metrics"] = _round(measured)
        row["metrics_fp32"] = _round(fp32)
        ours, theirs = measured["probabilities"], fp32["probabilities"]
        row["vs_fp32"] = {
            "pixels": int(ours.shape[1]),
            "class_changed": int((ours.argmax(0) != theirs.argmax(0)).sum()),
            "max_abs_probability_difference": float(f"{(ours - theirs).abs().max():.3g}"),
        }
        print(
            f"{args.dtype}: {row['metrics']}\nfloat32 source: {row['metrics_fp32']}\n"
            f"{args.dtype} vs float32 on every valid pixel: {row['vs_fp32']}"
        )
    rows = [_entry_row(e) for e in load_index(directory) if e.name != f"{model_name}/{args.tag}"]
    rows.append(row)
    rows.sort(key=lambda r: (r["model"], r["tag"]))
    print(f"updated {_write_index(directory, rows)}")
    return 0


def _entry_row(e: PretrainedEntry) -> dict[str, Any]:
    row: dict[str, Any] = {
        "model": e.model,
        "tag": e.tag,
        "file": e.file,
        "sha256": e.sha256,
        "dtype": e.dtype,
        "dataset": e.dataset,
        "protocol": e.protocol,
        "leaky": e.leaky,
        "split_file": e.split_file,
        "card": e.card,
        "metrics": e.metrics,
    }
    row.update(e.extra)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hsi.pretrained", description=__doc__.splitlines()[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="the shipped weights")
    sub.add_parser("verify", help="check every listed file's sha256 and that it loads")
    ev = sub.add_parser("evaluate", help="re-measure a weight on its split's test pixels")
    ev.add_argument("name", help="model/tag or tag, or a weight file")
    ev.add_argument("--root", help="data root (default $HSI_DATA)")
    ev.add_argument("--split", help="another split file than the recorded one")
    ex = sub.add_parser("export", help="write a weight file from a `hsi fit` checkpoint")
    ex.add_argument("--ckpt", required=True, help="the .ckpt of a `hsi fit` run")
    ex.add_argument("--tag", required=True, help="short name, e.g. indian_pines")
    ex.add_argument("--dtype", default="float16", choices=sorted(_DTYPES))
    ex.add_argument("--out", help="folder (default: the checkpoints folder)")
    ex.add_argument("--split", help="split file to record (default: the checkpoint's)")
    ex.add_argument("--root", help="data root for the evaluation (default $HSI_DATA)")
    ex.add_argument("--no-evaluate", action="store_true", help="do not measure metrics")
    args = parser.parse_args(argv)
    try:
        if args.command == "list":
            for e in load_index():
                m = ", ".join(f"{k} {v:.2f}" for k, v in e.metrics.items())
                leak = "leaky" if e.leaky else "leak-free"
                print(f"{e.name:32s} {e.dataset} {e.protocol} ({leak}) {e.dtype}  {m}")
        elif args.command == "verify":
            for e in load_index():
                load_weights(e.name)
                print(f"ok {e.name} {e.file} sha256 {e.sha256[:16]}…")
        elif args.command == "evaluate":
            weights = load_weights(args.name)
            result = evaluate_weights(weights, root=args.root, split_file=args.split)
            print(
                f"{weights.name}: {result['part']} pixels {result['pixels']} of "
                f"{result['split_file']}: OA {result['OA']:.4f} AA {result['AA']:.4f} "
                f"kappa {result['kappa']:.4f} ({result['seconds']:.1f} s)"
            )
            if weights.entry is not None and weights.entry.metrics:
                print(f"index.yaml: {weights.entry.metrics}")
        elif args.command == "export":
            return export_main(args)
    except HsiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
