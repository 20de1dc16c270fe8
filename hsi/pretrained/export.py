"""Writing a weight file from a ``hsi fit`` checkpoint, measuring it on its split's test pixels
and recording the numbers in the index."""

from __future__ import annotations

import argparse
import datetime as _dt
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn

from hsi.errors import ConfigError, DataError
from hsi.pretrained.index import (
    _TAG,
    FORMAT,
    FORMAT_VERSION,
    INDEX_NAME,
    MAX_GIT_BYTES,
    REPO_ROOT,
    PathLike,
    PretrainedEntry,
    _norm_model,
    checkpoints_dir,
    load_index,
    sha256_of,
)
from hsi.pretrained.weights import _DTYPES, PretrainedWeights, _read_file, load_weights


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
    constructor kwargs, the task, what inference needs (a classifier's fitted preprocessing;
    a restoration model's [0, 1] scaling and training degradation) and the data facts; drops
    the optimizer and loop state and the local data paths. ``split_file`` replaces the split
    path the run recorded (a run folder on the exporting machine) with the one shipped beside
    the weights, e.g. ``splits/...json``. The file is re-read with ``weights_only=True`` before
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
    task = str(meta.get("task", "classification"))
    kwargs = dict(hp.get("model_kwargs") or {})
    restoration = None
    if task == "classification":
        if not meta.get("preprocessing"):
            raise DataError(f"{ckpt_path}: the checkpoint has no fitted preprocessing to ship")
        for key in ("in_bands", "num_classes", "patch_size"):
            kwargs[key] = hp[key]
    elif task == "restoration":
        if not meta.get("scaling") or hp.get("in_bands") is None:
            raise DataError(f"{ckpt_path}: the checkpoint lacks its band count or [0, 1] scaling")
        kwargs["in_bands"] = int(hp["in_bands"])
        if int(hp.get("scale") or 1) > 1:
            kwargs["scale"] = int(hp["scale"])
        restoration = {
            "kind": meta.get("restoration"),
            "scaling": meta["scaling"],
            "degradation": meta.get("degradation"),
        }
    else:
        raise DataError(
            f"{ckpt_path}: a {task} checkpoint; classification and restoration weights can be "
            "exported"
        )
    target = _DTYPES[dtype]
    net_state = {
        key[len("net.") :]: (t.to(target) if t.is_floating_point() else t).clone()
        for key, t in state.items()
        if key.startswith("net.")
    }
    if not net_state:
        raise DataError(f"{ckpt_path}: no network weights (net.*) in the checkpoint")
    local = ("image_path", "sources")  # paths on the exporting machine
    data = {k: v for k, v in (meta.get("data") or {}).items() if k not in local}
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
        "task": task,
        "state_dict": net_state,
        "preprocessing": _plain(meta.get("preprocessing")),
        "restoration": _plain(restoration),
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
    "model", "tag", "task", "file", "sha256", "bytes", "dtype", "parameters", "dataset",
    "protocol", "leaky", "leaky_reasons", "split_file", "card", "source_checkpoint",
    "source_epoch", "test_pixels", "test_region", "test_shape", "metrics", "metrics_input",
    "metrics_fp32", "vs_fp32",
)  # fmt: skip


def _write_index(directory: Path, rows: list[dict[str, Any]]) -> Path:
    header = (
        "# Shipped pretrained weights (hsi.pretrained). Written by\n"
        "# `python -m hsi.pretrained export`; metrics are measured with the shipped file on the\n"
        "# test pixels of split_file (metrics_fp32: the same with the fp32 source checkpoint);\n"
        "# restoration weights on the test region their run held out, per seeded test noise\n"
        "# (metrics_input: the degraded input's).\n"
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
    # built once: counted here, then measured by the row writer
    task = weights.to_task()
    common: dict[str, Any] = {
        "model": model_name,
        "tag": args.tag,
        "file": path.name,
        "sha256": sha256_of(path),
        "bytes": size,
        "dtype": args.dtype,
        # learnable parameters, as papers count them (the state dict adds buffers)
        "parameters": sum(p.numel() for p in task.net.parameters()),
        "dataset": weights.data.get("dataset"),
        "card": f"{stem}.md",
        "source_checkpoint": str(args.ckpt),
        "source_epoch": weights.source.get("epoch"),
    }
    if weights.task == "restoration":
        row = _restoration_row(weights, task, args, ckpt, common)
    else:
        row = _classification_row(weights, task, args, ckpt, common)
    rows = [_entry_row(e) for e in load_index(directory) if e.name != f"{model_name}/{args.tag}"]
    rows.append(row)
    rows.sort(key=lambda r: (r["model"], r["tag"]))
    print(f"updated {_write_index(directory, rows)}")
    return 0


def _classification_row(
    weights: PretrainedWeights,
    task: Any,
    args: argparse.Namespace,
    ckpt: Path,
    common: dict[str, Any],
) -> dict[str, Any]:
    """The index row of classification weights (``task``: built from them), measured on
    their split's test pixels."""
    data = weights.data
    row = {
        **common,
        "protocol": (data.get("split") or {}).get("protocol"),
        "leaky": bool(data.get("leaky")),
        "leaky_reasons": list(data.get("leaky_reasons") or []),
        "split_file": args.split or data.get("split_file"),
    }
    if not args.no_evaluate:
        measured = evaluate_weights(
            task.net,
            root=args.root,
            split_file=row["split_file"],
            data=weights.data,
            preprocessing=weights.preprocessing,
        )
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
    return row


def _restoration_row(
    weights: PretrainedWeights,
    task: Any,
    args: argparse.Namespace,
    ckpt: Path,
    common: dict[str, Any],
) -> dict[str, Any]:
    """The index row of restoration weights (``task``: built from them), measured on the
    test region their run held out (each test noise seeded; see
    :func:`hsi.pretrained.restoration.evaluate_restoration`)."""
    from hsi.inference.restoration import _load_task
    from hsi.pretrained.restoration import evaluate_restoration, flat_metrics

    data = weights.data
    regions = data.get("regions") or {}
    row = {
        **common,
        "task": "restoration",
        "protocol": f"held-out {data.get('holdout')}",
        "leaky": _regions_overlap(regions.get("train") or [], regions.get("test") or []),
        "leaky_reasons": [],
        "split_file": None,
    }
    if row["leaky"]:
        row["leaky_reasons"] = ["the test region overlaps the training region"]
    if not args.no_evaluate:
        measured = evaluate_restoration(task, root=args.root)
        fp32 = evaluate_restoration(_load_task(ckpt, torch.device("cpu")), root=args.root)
        row["test_region"] = measured["region"]
        row["test_shape"] = measured["shape"]
        row["metrics"] = flat_metrics(measured, "restored")
        row["metrics_input"] = flat_metrics(measured, "reference")
        row["metrics_fp32"] = flat_metrics(fp32, "restored")
        print(
            f"{args.dtype}: {row['metrics']}\nfloat32 source: {row['metrics_fp32']}\n"
            f"{measured['reference']}: {row['metrics_input']}"
        )
    return row


def _regions_overlap(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> bool:
    """Whether any recorded region of ``a`` shares a pixel with one of ``b``."""
    from hsi.data.restoration.regions import Region, regions_overlap

    def region(d: dict[str, Any]) -> Region:
        return Region(int(d.get("scene", 0)), *d["rows"], *d["cols"])

    return any(regions_overlap(region(r), region(q)) for r in a for q in b)


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
