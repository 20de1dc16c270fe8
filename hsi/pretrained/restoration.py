"""Measuring restoration weights on a real scene: its clean cube scaled to [0, 1], each test
degradation applied with a seeded generator, restored, and scored against the clean cube
(MPSNR, MSSIM, SAM) beside the degraded input (bicubic upsampling for super-resolution), as
the restoration task's test does.

Why a function of its own: a shipped denoiser's card must say what it does on data it was
not trained on, and anyone must be able to re-measure that from the weight file alone,
without the training run's config, its data module or a Lightning Trainer.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from hsi.data.degradations import Degradation, build_degradation
from hsi.errors import ConfigError, DataError
from hsi.pretrained.index import PathLike
from hsi.pretrained.weights import PretrainedWeights

#: the noise levels a blind model is measured at when no case is named (0-255 scale)
BLIND_TEST_SIGMAS = (30.0, 50.0, 70.0)


def default_cases(degradation: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The test degradations for weights trained under ``degradation``: the same one, or for
    a blind Gaussian model each of the usual sigmas 30, 50 and 70 that it was trained on."""
    if not degradation:
        raise ConfigError("the weights record no training degradation; name the test cases")
    if degradation.get("name") == "blind_gaussian":
        trained = [float(s) for s in degradation.get("sigmas") or []]
        sigmas = [s for s in BLIND_TEST_SIGMAS if s in trained] or trained
        return [{"name": "gaussian", "sigma": s} for s in sigmas]
    return [dict(degradation)]


def case_label(deg: Degradation) -> str:
    """``gaussian50``, ``complex``...: a short name for a test degradation."""
    if deg.name == "gaussian":
        return f"gaussian{float(deg.sigma):g}"
    if deg.scale > 1:
        return f"{deg.name}_x{deg.scale}"
    return deg.name


def _test_region(data: dict[str, Any]) -> tuple[slice, slice, str]:
    """The held-out test strip the run recorded (``holdout: regions``, one scene)."""
    tests = (data.get("regions") or {}).get("test") or []
    if data.get("holdout") != "regions" or len(tests) != 1:
        raise ConfigError(
            "the weights' test images are not one region of their scene; pass dataset= to "
            "measure them on a whole registered scene"
        )
    (r0, r1), (c0, c1) = tests[0]["rows"], tests[0]["cols"]
    return slice(r0, r1), slice(c0, c1), f"test region rows {r0}-{r1}, cols {c0}-{c1}"


@torch.no_grad()
def evaluate_restoration(
    weights: PretrainedWeights | Any,
    *,
    root: PathLike | None = None,
    dataset: str | None = None,
    cases: Sequence[str | dict[str, Any]] | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Scores of restoration weights (or a built :class:`RestorationTask`) per test case.

    ``dataset`` None: the registered scene the weights were trained on, cut to the test
    region the run held out, scaled with the weights' own [0, 1] scaling. Another dataset:
    the whole scene, scaled by its own min-max (``hsi predict --scaling scene``), which a
    band-count-agnostic model (HSDT with ``flex``) needs for another band count. ``cases``:
    degradation specs (default :func:`default_cases`); each draws its noise from a generator
    seeded by ``seed`` and the case's name, so a measurement repeats exactly and two weights
    measured at the same noise (say a sigma-50 model and a blind one) see the same noise.
    """
    from hsi.data.registry import load_dataset
    from hsi.data.restoration.scaling import Scaling
    from hsi.image_quality import quality_report
    from hsi.tasks.restoration import _upsample_bicubic

    task = weights.to_task() if isinstance(weights, PretrainedWeights) else weights
    task = task.eval()
    data = dict(task.data_description or {})
    trained_on = data.get("dataset")
    name = dataset or trained_on
    if not name:
        raise ConfigError("the weights name no registered dataset; pass dataset=")
    cube = load_dataset(name, root=root).cube
    raw = np.asarray(cube.data, dtype=np.float32)
    nodata = getattr(cube, "nodata_mask", None)
    if not np.isfinite(raw).all() or (nodata is not None and bool(np.any(nodata))):
        raise DataError(
            f"{name}: the scene has no-data or non-finite pixels, which have no clean value "
            "to score against; measure on a scene without gaps"
        )
    if name == trained_on and dataset is None:
        rows, cols, region = _test_region(data)
        raw = raw[:, rows, cols]
        scaling = task.get_scaling()
        if scaling is None or scaling.method == "minmax_scene":
            scaling = Scaling.of_cube(raw, name)
    else:
        region = "whole scene, scaled by its own min-max"
        scaling = Scaling.of_cube(raw, name)
    clean = scaling.apply(raw)
    target = torch.from_numpy(clean)[None]
    degradations = [build_degradation(c) for c in (cases or default_cases(task.degradation))]
    scale = int(task.hparams.scale or 1)
    results: dict[str, Any] = {}
    start = time.perf_counter()
    for deg in degradations:
        label = case_label(deg)
        rng = np.random.default_rng([seed, zlib.crc32(label.encode())])
        degraded = deg(clean, rng)
        x = torch.from_numpy(np.ascontiguousarray(degraded, dtype=np.float32))[None]
        restored = task.restore(x)
        reference = x if scale == 1 else _upsample_bicubic(x, scale)
        clamp = bool(task.hparams.clamp_metrics)
        results[label] = {
            "spec": deg.spec(),
            "restored": _scores(quality_report(restored, target, ratio=scale, clamp=clamp)),
            "reference": _scores(quality_report(reference, target, ratio=scale, clamp=clamp)),
        }
    return {
        "dataset": name,
        "region": region,
        "shape": list(clean.shape),
        "seed": seed,
        "reference": "degraded input" if scale == 1 else "bicubic upsampling",
        "cases": results,
        "seconds": time.perf_counter() - start,
    }


def _scores(report: dict[str, torch.Tensor]) -> dict[str, float]:
    return {k: float(v.mean()) for k, v in report.items()}


def flat_metrics(result: dict[str, Any], which: str = "restored") -> dict[str, float]:
    """``{"gaussian50_MPSNR": ..., ...}``: MPSNR, MSSIM and SAM of every case of an
    :func:`evaluate_restoration` result, rounded, as ``index.yaml`` keeps them."""
    places = {"MPSNR": 2, "MSSIM": 4, "SAM": 3}
    return {
        f"{case}_{k}": round(float(scores[which][k]), n)
        for case, scores in result["cases"].items()
        for k, n in places.items()
    }
