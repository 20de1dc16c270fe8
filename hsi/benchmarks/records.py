"""The facts a benchmark row needs, read from the reports of hsi's three tasks.

Why one reader for all three: the question "does this implementation reach what the paper
says?" is asked of every model, so ``hsi benchmark`` tabulates classification
(``test_report.json``: OA/AA/kappa), restoration (``restoration_report.json``: PSNR/SSIM/SAM,
one record per test degradation) and detection (``detection_report.json``: box mAP and point
AP) alike, each against ``published.yaml`` in the metric names that file uses.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hsi.benchmarks import METRICS
from hsi.errors import DataError

__all__ = [
    "REPORT_NAMES",
    "SIDECAR_NAME",
    "TASK_TABLES",
    "ReportRecord",
    "TaskTable",
    "degradation_label",
    "find_reports",
    "load_report",
    "load_reports",
]

SIDECAR_NAME = "benchmark_run.json"


@dataclass(frozen=True)
class TaskTable:
    """How one task's reports become a table and a chart panel: the report file, measured
    columns, the headline metric whose gap to the paper is printed, and how it is shown."""

    task: str
    report_name: str
    metrics: tuple[str, ...]  # measured columns, named as in published.yaml where shared
    compared: tuple[str, ...]  # the ones put beside the published values
    headline: str
    labels: dict[str, str]
    digits: dict[str, int]
    protocol_column: str  # what the task calls its protocol
    note: str  # what the table says above itself
    axis_label: str
    # the panel's y-axis top: full ranges, since a truncated axis would make a small gap
    # look like a cliff (printed values carry the precision); None: follow the data
    axis_top: float | None

    def places(self, metric: str) -> int:
        return self.digits.get(metric, 2)

    def fmt(self, metric: str, value: float) -> str:
        return f"{value:.{self.places(metric)}f}"


TASK_TABLES: dict[str, TaskTable] = {
    "classification": TaskTable(
        task="classification",
        report_name="test_report.json",
        metrics=METRICS,
        compared=METRICS,
        headline="OA",
        labels={"OA": "OA", "AA": "AA", "kappa": "kappa"},
        digits={"OA": 2, "AA": 2, "kappa": 2},
        protocol_column="protocol",
        note=(
            "Measured: mean ± sample std over seeds (n), in %. Gap: measured OA − published OA "
            "(percentage points). *Leaky* protocols let test pixels into training (random "
            "pixel splits put them inside training patches; whole-image PCA sees them): their "
            "numbers are not comparable with a leak-free (disjoint) run; the gap of a disjoint "
            "run to a paper's random-split number includes what the leak was worth."
        ),
        axis_label="overall accuracy (%)",
        axis_top=100.0,
    ),
    "restoration": TaskTable(
        task="restoration",
        report_name="restoration_report.json",
        metrics=("PSNR", "SSIM", "SAM"),
        # published SAM is printed in each paper's own unit (radians for HSDT), ours in
        # degrees: it stays out of the comparison rather than be compared across units
        compared=("PSNR", "SSIM"),
        headline="PSNR",
        labels={"PSNR": "PSNR (dB)", "SSIM": "SSIM", "SAM": "SAM (°)"},
        digits={"PSNR": 2, "SSIM": 4, "SAM": 2},
        protocol_column="degradation",
        note=(
            "Measured: mean ± sample std over seeds (n) on the held-out test data; PSNR and "
            "SSIM per band, averaged over bands, then images; SAM in degrees. No model: the "
            "degraded input (denoising) or its bicubic upsampling (super-resolution), scored "
            "the same way. Gap: measured PSNR − published PSNR (dB), only where the dataset and "
            "degradation are the paper's; published SAM is left out (each paper prints its "
            "own unit)."
        ),
        axis_label="PSNR (dB)",
        axis_top=None,
    ),
    "detection": TaskTable(
        task="detection",
        report_name="detection_report.json",
        metrics=("mAP50_95", "mAP50", "mAP25", "point_AP"),
        compared=("mAP50_95", "mAP50", "mAP25"),
        headline="mAP50_95",
        labels={"mAP50_95": "mAP50:95", "mAP50": "mAP50", "mAP25": "mAP25", "point_AP": "point AP"},
        digits={"mAP50_95": 3, "mAP50": 3, "mAP25": 3, "point_AP": 3},
        protocol_column="test",
        note=(
            "Measured: box mAP over IoU 0.50:0.95, 0.50 and 0.25 (torchmetrics, COCO-style) and "
            "point AP (a hit: centre within the report's point radius), mean ± sample std over "
            "seeds (n). Gap: measured mAP50:95 − published, only on the paper's benchmark."
        ),
        axis_label="mAP50:95",
        axis_top=1.0,
    ),
}
REPORT_NAMES: dict[str, str] = {t.report_name: t.task for t in TASK_TABLES.values()}

# QRNN3D's and HSDT's names of the ICVL complex-noise cases (hsi's ``case`` degradation)
_CASE_NAMES = {
    1: "complex_noniid",
    2: "complex_stripe",
    3: "complex_deadline",
    4: "complex_impulse",
    5: "complex_mixture",
}


@dataclass
class ReportRecord:
    """One measured result (one report, or one test degradation of a restoration report)."""

    path: Path
    model: str | None
    dataset: str | None
    protocol: str | None
    leaky: bool | None
    leaky_reasons: tuple[str, ...]
    seed: int | None
    train_ratio: float | None
    patch_size: int | None
    pca_components: int | None
    pca_fit: str | None
    metrics: dict[str, float]
    epochs: int | None
    wall_seconds: float | None
    wall_measured: bool
    hsi_version: str | None
    git: str | None
    run: str | None = None  # the suite run that made it (benchmark_run.json), if any
    published: str | None = None  # the published key that run compares with
    mtime: float = 0.0
    task: str = "classification"
    setup: str | None = None  # restoration/detection: the setup in words
    reference: dict[str, float] = field(default_factory=dict)  # restoration: no-model baseline
    parameters: int | None = None
    trainable_parameters: int | None = None  # fewer than parameters with LoRA fine-tuning
    epoch_seconds: float | None = None  # median training epoch
    epoch_cpu_seconds: float | None = None  # its median process CPU time

    @property
    def experiment(self) -> str:
        """The run's folder name (``runs/<name>/version_N/[...]/`` gives ``<name>``)."""
        for folder in self.path.parents:
            if folder.name.startswith("version_"):
                return folder.parent.name
        return self.path.parent.name

    def group_key(self) -> tuple:
        # hand-made runs (no suite sidecar) group by their experiment folder, so two
        # configs that differ in a setting the report does not name stay separate rows
        return (
            self.task,
            self.run or self.experiment,
            self.model,
            self.dataset,
            self.protocol,
            self.pca_fit,
            self.train_ratio,
            self.patch_size,
            self.pca_components,
            self.setup,
        )


def degradation_label(spec: Any) -> str | None:
    """A test degradation in the protocol names of ``published.yaml`` (``gaussian50``,
    ``gaussian_blind``, ``complex_stripe``, ``bicubic_down_x4``, ...)."""
    if not spec:
        return None
    if isinstance(spec, str):
        return spec
    name = str(spec.get("name"))
    if name == "gaussian" and spec.get("sigma") is not None:
        return f"gaussian{float(spec['sigma']):g}"
    if name == "blind_gaussian":
        return "gaussian_blind"
    if name == "case" and spec.get("case") in _CASE_NAMES:
        return _CASE_NAMES[int(spec["case"])]
    if name.endswith("_down") and spec.get("factor") is not None:
        return f"{name}_x{int(spec['factor'])}"
    if name == "compose":
        return "+".join(str(degradation_label(s)) for s in spec.get("steps") or ())
    return name


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {what} {path}: {exc}") from exc
    if not isinstance(value, dict):
        raise DataError(f"{path} is not a JSON object: not an hsi report")
    return value


def _sidecar(path: Path) -> dict[str, Any]:
    try:
        return _read_json(path.parent / SIDECAR_NAME, "benchmark record")
    except DataError:
        return {}


def _wall(
    sidecar: dict[str, Any], epoch_seconds: list[float], test_seconds: float | None
) -> tuple[float | None, bool]:
    """(seconds, measured): the suite's end-to-end time, else the summed epochs (+ test)."""
    if sidecar.get("wall_seconds") is not None:
        return float(sidecar["wall_seconds"]), True
    if epoch_seconds:
        return float(sum(epoch_seconds) + (test_seconds or 0.0)), False
    return None, False


def _count(value: Any) -> int | None:
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else None


def _median(seconds: Any) -> float | None:
    """The median training epoch: robust to an epoch slowed by other jobs or a restart."""
    values = [float(s) for s in seconds or () if isinstance(s, (int, float))]
    return statistics.median(values) if values else None


def _floats(values: dict[str, Any] | None, names: dict[str, str]) -> dict[str, float]:
    """The numeric entries of ``values`` renamed by ``names`` (report name → table name)."""
    out = {}
    for key, name in names.items():
        value = (values or {}).get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[name] = float(value)
    return out


def _classification(
    path: Path, report: dict[str, Any], sidecar: dict[str, Any]
) -> list[ReportRecord]:
    data = report.get("data") or {}
    split = data.get("split") or {}
    params = split.get("params") or {}
    metrics = _floats(report.get("metrics"), {k: k for k in METRICS})
    if "OA" not in metrics:
        raise DataError(f"{path} has no metrics.OA: not an hsi test report")
    timings = report.get("timings") or {}
    wall, measured = _wall(
        sidecar, timings.get("train_epoch_seconds") or [], timings.get("test_seconds")
    )
    train = params.get("train")
    leaky = report.get("leaky", data.get("leaky"))
    task = report.get("task") or {}
    return [
        ReportRecord(
            path=path,
            model=report.get("model"),
            dataset=report.get("dataset") or data.get("dataset"),
            protocol=report.get("protocol") or split.get("protocol"),
            leaky=None if leaky is None else bool(leaky),
            leaky_reasons=tuple(report.get("leaky_reasons") or data.get("leaky_reasons") or ()),
            seed=report.get("seed", split.get("seed")),
            train_ratio=float(train) if isinstance(train, (int, float)) and train < 1 else None,
            patch_size=data.get("patch_size"),
            pca_components=data.get("pca_components"),
            pca_fit=data.get("pca_fit"),
            metrics=metrics,
            epochs=report.get("epochs_run"),
            wall_seconds=wall,
            wall_measured=measured,
            hsi_version=report.get("hsi_version"),
            git=report.get("git"),
            parameters=_count(report.get("parameters", task.get("parameters"))),
            trainable_parameters=_count(task.get("trainable_parameters")),
            epoch_seconds=_median(timings.get("train_epoch_seconds")),
            epoch_cpu_seconds=_median(timings.get("train_epoch_cpu_seconds")),
        )
    ]


_RESTORATION_NAMES = {"MPSNR": "PSNR", "MSSIM": "SSIM", "SAM": "SAM"}


def _restoration_setup(data: dict[str, Any], kind: str | None) -> str:
    parts = [kind or "restoration"]
    holdout = data.get("holdout")
    if holdout:
        parts.append(f"held-out {holdout}")
    if data.get("crop_size"):
        parts.append(f"{data['crop_size']}×{data['crop_size']} crops")
    if data.get("band_window"):
        parts.append(f"{data['band_window']}-band windows")
    if (data.get("scale") or 1) > 1:
        parts.append(f"×{data['scale']}")
    return ", ".join(parts)


def _restoration(path: Path, report: dict[str, Any], sidecar: dict[str, Any]) -> list[ReportRecord]:
    data = report.get("data") or {}
    model = report.get("model") or {}
    timings = report.get("timings") or {}
    wall, measured = _wall(
        sidecar, timings.get("train_epoch_seconds") or [], timings.get("test_seconds")
    )
    if "cases" in report:  # one model tested under several degradations: a record each
        cases = [
            (degradation_label(c.get("degradation")) or c.get("name"), c)
            for c in report.get("cases") or ()
        ]
    else:
        cases = [(degradation_label(data.get("degradation")), report)]
    sources = data.get("sources") or []
    records = []
    for label, case in cases:
        metrics = _floats(case.get("metrics"), _RESTORATION_NAMES)
        if "PSNR" not in metrics:
            raise DataError(f"{path} has no PSNR ({label or 'its test'}): not an hsi report")
        records.append(
            ReportRecord(
                path=path,
                model=model.get("model"),
                dataset=data.get("dataset") or (Path(sources[0]).stem if sources else None),
                protocol=label,
                # the clean test regions/scenes are held out from training and checkpoint
                # selection, and no output is picked by its score against them
                leaky=False,
                leaky_reasons=(),
                seed=data.get("seed", sidecar.get("seed")),
                train_ratio=None,
                patch_size=None,
                pca_components=None,
                pca_fit=None,
                metrics=metrics,
                epochs=model.get("epochs_run"),
                wall_seconds=wall,
                wall_measured=measured,
                hsi_version=report.get("hsi_version"),
                git=report.get("git"),
                task="restoration",
                setup=_restoration_setup(data, report.get("task")),
                reference=_floats((case.get("reference") or {}).get("metrics"), _RESTORATION_NAMES),
                parameters=_count(model.get("parameters")),
                trainable_parameters=_count(model.get("trainable_parameters")),
                epoch_seconds=_median(timings.get("train_epoch_seconds")),
                epoch_cpu_seconds=_median(timings.get("train_epoch_cpu_seconds")),
            )
        )
    if not records:
        raise DataError(f"{path} lists no test results: not an hsi restoration report")
    return records


def _detection(path: Path, report: dict[str, Any], sidecar: dict[str, Any]) -> list[ReportRecord]:
    data = report.get("data") or {}
    names = {k: k for k in TASK_TABLES["detection"].metrics}
    metrics = _floats(report.get("metrics"), names)
    if "mAP50_95" not in metrics:
        raise DataError(f"{path} has no metrics.mAP50_95: not an hsi detection report")
    epoch_seconds = report.get("train_epoch_seconds") or []
    wall, measured = _wall(sidecar, epoch_seconds, None)
    on_validation = bool(data.get("test_is_validation"))
    dataset = data.get("dataset") or (Path(data["root"]).name if data.get("root") else None)
    if data.get("dataset"):
        protocol = str(data["dataset"])  # a registered benchmark's own split (SPOD's)
    else:
        protocol = "validation images" if on_validation else "held-out test images"
    size = data.get("image_size") or []
    setup = (
        f"{data.get('train_images', '?')} train / {data.get('val_images', '?')} val images"
        + (f", {size[0]}×{size[1]}" if len(size) == 2 else "")
        + (f", {data['bands']} bands" if data.get("bands") else "")
    )
    return [
        ReportRecord(
            path=path,
            model=report.get("model"),
            dataset=dataset,
            protocol=protocol,
            leaky=on_validation,
            leaky_reasons=(
                ("tested on the validation images that chose the checkpoint",)
                if on_validation
                else ()
            ),
            seed=report.get("seed", sidecar.get("seed")),
            train_ratio=None,
            patch_size=None,
            pca_components=None,
            pca_fit=None,
            metrics=metrics,
            epochs=len(epoch_seconds) or None,
            wall_seconds=wall,
            wall_measured=measured,
            hsi_version=report.get("hsi_version"),
            git=report.get("git"),
            task="detection",
            setup=setup,
            parameters=_count(report.get("parameters")),
            trainable_parameters=_count(report.get("trainable_parameters")),
            epoch_seconds=_median(epoch_seconds),
            epoch_cpu_seconds=_median(report.get("train_epoch_cpu_seconds")),
        )
    ]


_READERS = {"classification": _classification, "restoration": _restoration, "detection": _detection}


def load_reports(path: str | Path) -> list[ReportRecord]:
    """Every result in one report (a restoration report tested under several degradations
    holds one per degradation), with the ``benchmark_run.json`` beside it when a suite
    made it."""
    path = Path(path)
    task = REPORT_NAMES.get(path.name, "classification")
    report = _read_json(path, "benchmark report")
    sidecar = _sidecar(path)
    records = _READERS[task](path, report, sidecar)
    mtime = path.stat().st_mtime
    for rec in records:
        rec.run = sidecar.get("run")
        rec.published = sidecar.get("published")
        rec.mtime = mtime
    return records


def load_report(path: str | Path) -> ReportRecord:
    """The one result of a report (see :func:`load_reports` for several)."""
    records = load_reports(path)
    if len(records) != 1:
        raise DataError(
            f"{path} holds {len(records)} results (one per test degradation): use load_reports"
        )
    return records[0]


def find_reports(dirs: Iterable[str | Path]) -> list[Path]:
    """Every task report (``test_report.json``, ``restoration_report.json``,
    ``detection_report.json``) under the given directories, or the files themselves."""
    found: list[Path] = []
    for d in dirs:
        d = Path(d)
        if d.is_file() and d.name in REPORT_NAMES:
            found.append(d)
        elif d.is_dir():
            found.extend(p for p in d.rglob("*_report.json") if p.name in REPORT_NAMES)
        else:
            raise DataError(
                f"{d}: no such directory; give folders that hold {', '.join(REPORT_NAMES)}"
            )
    return sorted({p.resolve() for p in found})
