"""``hsi benchmark``: does this implementation reach what the paper says, and under which
protocol?

Two ways in:

- ``hsi benchmark --suite NAME`` (or ``--quick``) trains every run of a suite
  (``suites.yaml``) once per seed with ``hsi fit``, each into ``<out>/<run>/seed<N>/``. A run
  whose task report exists is not trained again, so an interrupted suite resumes where it
  stopped, and an interrupted run continues from its last finished epoch
  (``hsi fit --resume_dir``), so the suite can be run in pieces under a time limit.
- ``hsi benchmark --collect DIR ...`` trains nothing: it gathers the task reports under the
  given directories (e.g. ``runs/`` of earlier ``hsi fit`` runs): classification
  ``test_report.json``, restoration ``restoration_report.json`` (one result per test
  degradation) and detection ``detection_report.json`` (:mod:`hsi.benchmarks.records`).

Either way the results are grouped (one row per run, or per model × dataset × protocol ×
setup for collected reports), aggregated over seeds (mean ± sample std), matched with the
published entry (``published.yaml``) and written atomically to ``<out>/benchmark.md`` (a
table per task), ``<out>/benchmark.png`` (measured vs published OA, PSNR or mAP50:95, a panel
per task) and ``<out>/benchmark.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import math
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from hsi.benchmarks import (
    PublishedEntry,
    Suite,
    SuiteRun,
    load_published,
    load_suites,
    unresolved_claims,
)
from hsi.benchmarks.records import (
    REPORT_NAMES,
    SIDECAR_NAME,
    TASK_TABLES,
    ReportRecord,
    TaskTable,
    find_reports,
    load_report,
    load_reports,
)
from hsi.errors import ConfigError, DataError, HsiError

__all__ = [
    "ReportRecord",
    "Row",
    "aggregate",
    "benchmark_main",
    "collect",
    "collect_suite",
    "find_reports",
    "fit_args",
    "load_report",
    "load_reports",
    "match_published",
    "render_markdown",
    "run_suite",
    "suite_progress",
    "write_results",
]

RESUME_DIR = "resume"  # hsi fit --resume_dir: an interrupted run continues from its last epoch
DEFAULT_OUT = "benchmarks/results"
REPO_ROOT = Path(__file__).resolve().parents[2]

FitFn = Callable[[list[str]], int]


# --------------------------------------------------------------------------------------------
# Running a suite
# --------------------------------------------------------------------------------------------


def resolve_config(config: str | Path) -> Path:
    """A suite's config path: absolute, else relative to the current directory, else to the
    repository root (where ``configs/`` lives)."""
    path = Path(config).expanduser()
    candidates = [path] if path.is_absolute() else [Path.cwd() / path, REPO_ROOT / path]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    tried = ", ".join(str(c) for c in candidates)
    raise ConfigError(f"benchmark config {config} not found (looked at {tried})")


def run_dir(out: str | Path, run: SuiteRun, seed: int) -> Path:
    """Where one (run, seed) writes its log, checkpoints and report."""
    return Path(out) / run.name / f"seed{seed}"


def fit_args(
    run: SuiteRun,
    seed: int,
    out: str | Path,
    *,
    max_epochs: int | None = None,
    root: str | None = None,
    progress_bar: bool = False,
) -> list[str]:
    """The ``hsi fit`` arguments of one (run, seed): the config, the run's overrides, then the
    seed, the run directory and the command-line settings (later arguments win)."""
    target = run_dir(out, run, seed).resolve()
    # CSVLogger's log dir is save_dir/name/version: exactly the run directory
    logger = {
        "class_path": "lightning.pytorch.loggers.CSVLogger",
        "init_args": {
            "save_dir": str(target.parent.parent),
            "name": run.name,
            "version": target.name,
        },
    }
    args = ["fit", "--config", str(resolve_config(run.config)), *run.overrides]
    args += [
        f"--seed_everything={seed}",
        f"--data.init_args.seed={seed}",
        f"--trainer.logger={json.dumps(logger)}",
        f"--trainer.default_root_dir={target}",
        f"--model.init_args.report_dir={target}",
        f"--resume_dir={target / RESUME_DIR}",
        f"--trainer.enable_progress_bar={str(progress_bar).lower()}",
    ]
    if max_epochs is not None:
        args.append(f"--trainer.max_epochs={max_epochs}")
    if root is not None:
        args.append(f"--data.init_args.root={root}")
    return args


def _fit(args: list[str]) -> int:
    """Train and test one run in this process (``hsi fit``); the exit code."""
    from hsi.cli import main

    try:
        return int(main(args) or 0)
    except SystemExit as exc:  # jsonargparse reports bad arguments by exiting
        return exc.code if isinstance(exc.code, int) else 1


def _override_value(args: Sequence[str], key: str) -> str | None:
    """The last value given to ``--key`` (``--key=v`` or ``--key v``) in args, if any."""
    value = None
    for i, arg in enumerate(args):
        if arg.startswith(f"--{key}="):
            value = arg.split("=", 1)[1]
        elif arg == f"--{key}" and i + 1 < len(args):
            value = args[i + 1]
    return value


def missing_data(run: SuiteRun, root: str | None = None) -> str | None:
    """Why the run's dataset cannot be found under the data root, or None when it can."""
    from hsi.data.registry import locate_files

    config = yaml.safe_load(resolve_config(run.config).read_text()) or {}
    data = ((config.get("data") or {}).get("init_args")) or {}
    dataset = _override_value(run.overrides, "data.init_args.dataset") or data.get("dataset")
    if dataset in (None, "null", "None"):
        return None  # a custom scene: its files are checked when it is loaded
    root = root or _override_value(run.overrides, "data.init_args.root") or data.get("root")
    try:
        locate_files(dataset, root)
    except (DataError, ConfigError) as exc:
        return str(exc)
    return None


class SuiteStopped(BaseException):
    """A termination signal (Ctrl-C, ``timeout``'s SIGTERM) arrived during a suite.

    A BaseException, like KeyboardInterrupt, so that neither the suite's per-run error
    handling nor Lightning's takes it for a failed run: the suite stops at once, keeps
    finished runs and the interrupted run's resume checkpoint, and exits 128 + signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[None]:
    """Turn SIGINT and SIGTERM into :class:`SuiteStopped` while a suite runs.

    Why: Lightning answers Ctrl-C with ``sys.exit(1)`` and then ignores SIGINT for the rest of
    the process, and answers SIGTERM by stopping the fit with a SystemExit; the suite would
    count either as one failed run and go on to the next, so ``timeout`` could not stop it
    and Ctrl-C would not either. Lightning chains the SIGTERM handler it finds (this one).
    Only the main thread can set handlers; elsewhere the suite runs without them.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        raise SuiteStopped(signum)

    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in before:
        signal.signal(sig, stop)
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


@dataclass
class RunOutcome:
    run: str
    seed: int
    directory: Path
    status: str  # "done", "skipped", "missing data", "failed", "stopped"
    message: str = ""
    seconds: float | None = None


def _fmt_seconds(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "—"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _say(line: str) -> None:
    """A progress line, flushed at once: suites run for hours with output sent to a log."""
    print(line, flush=True)


def run_suite(
    suite: Suite,
    out: str | Path,
    *,
    seeds: Sequence[int] | None = None,
    max_epochs: int | None = None,
    root: str | None = None,
    fit: FitFn | None = None,
    dry_run: bool = False,
    echo: Callable[[str], None] = _say,
    on_finished: Callable[[list[RunOutcome]], None] | None = None,
) -> list[RunOutcome]:
    """Train every (run, seed) of the suite that has no report yet; one line of progress each.

    ``fit`` takes the ``hsi fit`` argument list and returns an exit code (default: train in
    this process). A finished run (its ``test_report.json`` exists) is skipped; a run whose
    dataset is not found is reported and skipped; a failing run does not stop the others.
    ``on_finished`` is called with the outcomes so far after every run that trained (done
    or failed): ``hsi benchmark`` rewrites its table there, so a suite of many hours shows
    each result as it lands, not only at the end.
    """
    from hsi.callbacks import ResumeCheckpoint  # imports Lightning: only when a suite runs

    fit = fit or _fit
    jobs = [(run, seed) for run in suite.runs for seed in (seeds or run.seeds)]
    missing: dict[str, str | None] = {}

    def one(run: SuiteRun, seed: int, head: str) -> RunOutcome:
        target = run_dir(out, run, seed)
        report = _finished_report(target)
        if report is not None:
            note = _resume_note(target, max_epochs)
            echo(f"{head}: already done{_headline(report)}, skipped{note} ({target})")
            return RunOutcome(run.name, seed, target, "skipped")
        if run.name not in missing:
            missing[run.name] = missing_data(run, root)
        if missing[run.name]:
            echo(f"{head}: dataset missing, skipped: {missing[run.name]}")
            return RunOutcome(run.name, seed, target, "missing data", missing[run.name])
        args = fit_args(run, seed, out, max_epochs=max_epochs, root=root)
        if dry_run:
            echo(f"{head}: would run: hsi {' '.join(_quote(a) for a in args)}")
            return RunOutcome(run.name, seed, target, "dry run")
        resumed = ResumeCheckpoint(target / RESUME_DIR).path.is_file()
        echo(f"{head}: {'resuming an interrupted run' if resumed else 'training'} -> {target}")
        start = time.perf_counter()
        started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        try:
            code = fit(args)
            error = "" if code == 0 else f"hsi fit exited with code {code}"
        except Exception as exc:  # one broken run must not lose the others' results
            traceback.print_exc()
            error = f"{type(exc).__name__}: {exc}"
        seconds = time.perf_counter() - start
        report = _finished_report(target)
        if not error and report is None:
            error = f"hsi fit finished but wrote no {' / '.join(REPORT_NAMES)} in {target}"
        if error:
            echo(f"{head}: FAILED after {_fmt_seconds(seconds)}: {error}")
            return RunOutcome(run.name, seed, target, "failed", error, seconds)
        _write_sidecar(target, suite, run, seed, args, seconds, started, max_epochs, resumed)
        echo(f"{head}: done in {_fmt_seconds(seconds)}{_headline(report)}")
        return RunOutcome(run.name, seed, target, "done", seconds=seconds)

    outcomes: list[RunOutcome] = []
    with _stop_on_signals():
        for i, (run, seed) in enumerate(jobs, 1):
            head = f"[{i}/{len(jobs)}] {run.name} seed {seed}"
            try:
                outcomes.append(one(run, seed, head))
                if on_finished is not None and outcomes[-1].status in ("done", "failed"):
                    on_finished(list(outcomes))
            except SuiteStopped as stopped:
                name = signal.Signals(stopped.signum).name
                done = sum(o.status in ("done", "skipped") for o in outcomes)
                target = run_dir(out, run, seed)
                this = (
                    "this one had finished"  # the signal came while its table was written
                    if _finished_report(target) is not None
                    else "this one goes on from its last finished epoch"
                )
                echo(
                    f"{head}: stopped by {name}; {done} finished run(s) kept, and {this}: run "
                    "the same command to continue"
                )
                outcomes.append(RunOutcome(run.name, seed, target, "stopped", name))
                break
    return outcomes


@dataclass(frozen=True)
class PendingRun:
    """A (run, seed) of a suite with no finished report, and how far it got."""

    run: str
    seed: int
    state: str  # "in progress", "not started", "failed", "dataset not found"
    detail: str = ""

    def line(self) -> str:
        return f"{self.run} seed {self.seed}: {self.state}" + (
            f" ({self.detail})" if self.detail else ""
        )


def _config_value(run: SuiteRun, dotted: str) -> Any:
    """A setting of a run as its config file and overrides give it (overrides win)."""
    value = _override_value(run.overrides, dotted)
    if value is not None:
        return yaml.safe_load(value)
    node: Any = yaml.safe_load(resolve_config(run.config).read_text()) or {}
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def run_model(run: SuiteRun) -> str | None:
    """The registry model a suite run trains (``model.init_args.model`` of its config)."""
    try:
        model = _config_value(run, "model.init_args.model")
    except (OSError, ConfigError, yaml.YAMLError):
        return None
    return None if model is None else str(model).lower()


def _epochs_done(resume: Path) -> tuple[int, list[float]] | None:
    """Finished epochs and their measured seconds, from a resume checkpoint (memory-mapped:
    a 2 GB file costs a few reads), or None when there is no readable one."""
    if not resume.is_file():
        return None
    import torch

    try:
        ckpt = torch.load(resume, map_location="cpu", weights_only=True, mmap=True)
        seconds = [float(s) for s in ckpt.get("hsi_epoch_seconds") or []]
        # Lightning saves the index of the epoch that just finished
        return int(ckpt["epoch"]) + 1, seconds
    except Exception:  # noqa: BLE001 - a half-written or foreign file: the run says so itself
        return None


def suite_progress(
    suite: Suite,
    out: str | Path,
    *,
    seeds: Sequence[int] | None = None,
    max_epochs: int | None = None,
    outcomes: Sequence[RunOutcome] = (),
) -> list[PendingRun]:
    """Every (run, seed) of the suite (its seeds and ``seeds``) that has no finished report,
    in the suite's order.

    Why: a full suite is many CPU-hours run in pieces; its table must say which rows are
    still missing and how far each got, not just show the finished ones. ``outcomes`` (of
    the call that just ran) turn a failure or a missing dataset into that row's state.
    """
    said = {(o.run, o.seed): o for o in outcomes}
    pending = []
    for run in suite.runs:
        try:
            planned = max_epochs or _config_value(run, "trainer.max_epochs")
        except (OSError, ConfigError, yaml.YAMLError):
            planned = None
        for seed in sorted(set(run.seeds) | set(seeds or ())):
            target = run_dir(out, run, seed)
            if _finished_report(target) is not None:
                continue
            outcome = said.get((run.name, seed))
            if outcome is not None and outcome.status == "failed":
                pending.append(PendingRun(run.name, seed, "failed", outcome.message))
                continue
            if outcome is not None and outcome.status == "missing data":
                pending.append(PendingRun(run.name, seed, "dataset not found", outcome.message))
                continue
            done = _epochs_done(target / RESUME_DIR / "last.ckpt")
            if done is None:
                pending.append(PendingRun(run.name, seed, "not started"))
                continue
            epochs, seconds = done
            of = f" of {planned}" if planned else ""
            detail = f"{epochs}{of} epochs finished, resumable"
            if seconds:
                detail += f"; median {float(np.median(seconds)):.0f} s per epoch"
            pending.append(PendingRun(run.name, seed, "in progress", detail))
    return pending


def _quote(arg: str) -> str:
    return f"'{arg}'" if any(c in arg for c in " {}\"'") else arg


def _finished_report(target: Path) -> Path | None:
    """The task report a finished run left in its folder, if any."""
    for name in REPORT_NAMES:
        if (target / name).is_file():
            return target / name
    return None


def _headline(report: Path | None) -> str:
    """`` (OA 95.20)``, `` (PSNR 36.99)``...: the report's headline metric, for progress lines."""
    try:
        rec = load_reports(report)[0]
        table = TASK_TABLES[rec.task]
        value = rec.metrics[table.headline]
    except (DataError, KeyError, IndexError, TypeError):
        return ""
    return f" ({table.labels[table.headline]} {table.fmt(table.headline, value)})"


def _resume_note(target: Path, max_epochs: int | None) -> str:
    """A warning when a finished run was made with another --max-epochs than asked now."""
    try:
        earlier = json.loads((target / SIDECAR_NAME).read_text()).get("max_epochs")
    except (OSError, ValueError):
        return ""
    if earlier == max_epochs:
        return ""

    def say(value: int | None) -> str:
        return "the suite's max_epochs" if value is None else f"--max-epochs {value}"

    return f" [made with {say(earlier)}, not {say(max_epochs)}; delete its folder to redo it]"


def _write_sidecar(
    target: Path,
    suite: Suite,
    run: SuiteRun,
    seed: int,
    args: list[str],
    seconds: float,
    started: str,
    max_epochs: int | None,
    resumed: bool = False,
) -> None:
    """Record how the run was made. A resumed run's wall time is not known (the killed
    segments went unmeasured), so it is left out and the table falls back to the summed epoch
    times the report carries across segments (marked ≈)."""
    from hsi.data.writers import atomic_output

    record = {
        "suite": suite.name,
        "run": run.name,
        "seed": seed,
        "config": run.config,
        "overrides": list(run.overrides),
        "max_epochs": max_epochs,
        "published": run.published,
        "args": args,
        "wall_seconds": None if resumed else seconds,
        "resumed": resumed,
        "last_segment_seconds": seconds,
        "started": started,
    }
    with atomic_output(target / SIDECAR_NAME, overwrite=True) as tmp:
        tmp.write_text(json.dumps(record, indent=2))


# --------------------------------------------------------------------------------------------
# Reports -> rows
# --------------------------------------------------------------------------------------------


@dataclass
class MetricStats:
    mean: float
    std: float | None  # sample std (ddof=1); None with one seed
    n: int

    def fmt(self, digits: int = 2) -> str:
        if self.std is None:
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {self.std:.{digits}f}"


@dataclass
class Row:
    """One line of the benchmark table: one setup aggregated over its seeds."""

    label: str
    model: str | None
    dataset: str | None
    protocol: str | None
    leaky: bool | None  # None: the reports disagree or do not say
    leaky_reasons: tuple[str, ...]
    train_ratio: float | None
    patch_size: int | None
    pca_components: int | None
    pca_fit: str | None
    seeds: list[int | None]
    stats: dict[str, MetricStats]
    epochs: list[int]
    wall_seconds: float | None  # mean per seed
    wall_measured: bool
    hsi_versions: list[str]
    gits: list[str]
    published: PublishedEntry | None
    reports: list[Path] = field(default_factory=list)
    duplicates: int = 0
    task: str = "classification"
    setup: str | None = None  # restoration/detection: the setup in words
    reference: dict[str, MetricStats] = field(default_factory=dict)  # no-model baseline

    @property
    def table(self) -> TaskTable:
        return TASK_TABLES[self.task]

    @property
    def n(self) -> int:
        return len(self.seeds)

    @property
    def gap(self) -> dict[str, float]:
        """Measured mean − published value, per compared metric both sides have."""
        if self.published is None:
            return {}
        return {
            k: self.stats[k].mean - v
            for k, v in self.published.metrics.items()
            if k in self.stats and k in self.table.compared
        }

    @property
    def protocol_label(self) -> str:
        leak = {True: " (leaky)", False: "", None: " (leak unknown)"}[self.leaky]
        return f"{self.protocol or '?'}{leak}"

    @property
    def same_protocol(self) -> bool | None:
        if self.published is None:
            return None
        return self.protocol == self.published.protocol and self.leaky == self.published.leaky

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "label": self.label,
            "model": self.model,
            "dataset": self.dataset,
            "protocol": self.protocol,
            "leaky": self.leaky,
            "leaky_reasons": list(self.leaky_reasons),
            "train_ratio": self.train_ratio,
            "patch_size": self.patch_size,
            "pca_components": self.pca_components,
            "pca_fit": self.pca_fit,
            "setup": self.setup,
            "seeds": self.seeds,
            "n": self.n,
            "measured": {
                k: {"mean": s.mean, "std": s.std, "n": s.n} for k, s in self.stats.items()
            },
            "no_model_reference": {
                k: {"mean": s.mean, "std": s.std, "n": s.n} for k, s in self.reference.items()
            },
            "published": None
            if self.published is None
            else {
                "key": self.published.key,
                "metrics": self.published.metrics,
                "std": self.published.std,
                "protocol": self.published.protocol,
                "leaky": self.published.leaky,
                "train_ratio": self.published.train_ratio,
                "source": self.published.reference,
            },
            "gap": self.gap,
            "same_protocol": self.same_protocol,
            "epochs": self.epochs,
            "wall_seconds": self.wall_seconds,
            "wall_measured": self.wall_measured,
            "hsi_versions": self.hsi_versions,
            "gits": self.gits,
            "reports": [str(p) for p in self.reports],
            "duplicates_dropped": self.duplicates,
        }


def match_published(
    record: ReportRecord | Row, published: dict[str, PublishedEntry]
) -> PublishedEntry | None:
    """The published entry for the same model, dataset and training ratio (preferring the
    same protocol). A disjoint run is compared with the paper's number on purpose: the gap is
    what the leak-free protocol costs. Restoration and detection results match on model,
    dataset and protocol (the test degradation, the benchmark's split)."""
    if record.task != "classification":
        same = [
            e
            for e in published.values()
            if (e.model, e.dataset, e.protocol) == (record.model, record.dataset, record.protocol)
        ]
        return (same or [None])[0]
    if record.train_ratio is None:
        return None
    candidates = [
        e
        for e in published.values()
        if e.model == record.model
        and e.dataset == record.dataset
        and e.train_ratio is not None
        and abs(e.train_ratio - record.train_ratio) < 1e-6
    ]
    same = [e for e in candidates if e.protocol == record.protocol]
    return (same or candidates or [None])[0]


def _stats(values: list[float]) -> MetricStats:
    arr = np.asarray(values, dtype=float)
    std = float(arr.std(ddof=1)) if len(arr) > 1 else None
    return MetricStats(float(arr.mean()), std, len(arr))


def aggregate(
    records: Sequence[ReportRecord], published: dict[str, PublishedEntry] | None = None
) -> list[Row]:
    """Group reports by setup, keep one report per seed (the newest), and aggregate."""
    published = load_published() if published is None else published
    groups: dict[tuple, list[ReportRecord]] = {}
    for rec in records:
        groups.setdefault(rec.group_key(), []).append(rec)
    rows = []
    for recs in groups.values():
        by_seed: dict[Any, ReportRecord] = {}
        for rec in sorted(recs, key=lambda r: r.mtime):
            by_seed[rec.seed] = rec  # the newest report of a seed wins (a re-test, a re-run)
        kept = sorted(by_seed.values(), key=lambda r: (r.seed is None, r.seed or 0))
        first = kept[0]
        leaks = {r.leaky for r in kept}
        entry = None
        if first.published and first.task == "classification":
            # restoration/detection find theirs by model, dataset and protocol: a suite run
            # tested under several noises has one entry per noise, not the run's one key
            entry = published.get(first.published)
        if entry is None:
            entry = match_published(first, published)
        walls = [r.wall_seconds for r in kept if r.wall_seconds is not None]
        label = first.run or ", ".join(dict.fromkeys(r.experiment for r in kept))
        table = TASK_TABLES[first.task]
        stats = {
            k: _stats([r.metrics[k] for r in kept])
            for k in table.metrics
            if all(k in r.metrics for r in kept)
        }
        reference = {
            k: _stats([r.reference[k] for r in kept])
            for k in table.metrics
            if all(k in r.reference for r in kept)
        }
        rows.append(
            Row(
                label=label,
                model=first.model,
                dataset=first.dataset,
                protocol=first.protocol,
                leaky=leaks.pop() if len(leaks) == 1 else None,
                leaky_reasons=tuple(dict.fromkeys(x for r in kept for x in r.leaky_reasons)),
                train_ratio=first.train_ratio,
                patch_size=first.patch_size,
                pca_components=first.pca_components,
                pca_fit=first.pca_fit,
                seeds=[r.seed for r in kept],
                stats=stats,
                epochs=sorted({r.epochs for r in kept if r.epochs is not None}),
                wall_seconds=float(np.mean(walls)) if walls else None,
                wall_measured=all(r.wall_measured for r in kept),
                hsi_versions=sorted({r.hsi_version for r in kept if r.hsi_version}),
                gits=sorted({r.git for r in kept if r.git}),
                published=entry,
                reports=[r.path for r in kept],
                duplicates=len(recs) - len(kept),
                task=first.task,
                setup=first.setup,
                reference=reference,
            )
        )
    order = list(TASK_TABLES)
    rows.sort(
        key=lambda r: (
            order.index(r.task),
            r.model or "",
            r.dataset or "",
            r.label,
            r.protocol or "",
        )
    )
    return rows


def collect(
    dirs: Iterable[str | Path],
    published: dict[str, PublishedEntry] | None = None,
    echo: Callable[[str], None] = print,
) -> list[Row]:
    """Rows from every report found under ``dirs`` (unreadable reports are reported, skipped)."""
    records = []
    for path in find_reports(dirs):
        try:
            records.extend(load_reports(path))
        except DataError as exc:
            echo(f"skipped: {exc}")
    return aggregate(records, published)


def collect_suite(
    suite: Suite, out: str | Path, published: dict[str, PublishedEntry] | None = None
) -> list[Row]:
    """Rows of a suite's reports under ``out``: a report found in a run's folder belongs to
    that run and is compared with its published entry (even without its benchmark_run.json,
    e.g. when a run was killed between writing its report and its record)."""
    records = []
    for run in suite.runs:
        folder = Path(out) / run.name
        if not folder.is_dir():
            continue
        for path in find_reports([folder]):
            for rec in load_reports(path):
                rec.run = run.name
                rec.published = rec.published or run.published
                records.append(rec)
    return aggregate(records, published)


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------


def _setup(ratio: float | None, patch: int | None, pca: int | None, fit: str | None) -> str:
    parts = []
    if ratio is not None:
        parts.append(f"train {ratio * 100:g}%")
    if patch is not None:
        parts.append(f"{patch}×{patch}")
    if pca:
        parts.append(f"PCA {pca}" + (f" ({fit})" if fit else ""))
    return ", ".join(parts) or "—"


def _published_cell(entry: PublishedEntry | None, ref: int | None, table: TaskTable) -> str:
    if entry is None:
        return "—"

    def one(k: str) -> str:
        if k not in entry.metrics:
            return "n/a"
        s = entry.std.get(k)  # both as the source prints them
        return f"{entry.metrics[k]:g}" + (f" ± {s:g}" if s is not None else "")

    return " / ".join(one(k) for k in table.compared) + (f" [{ref}]" if ref else "")


def _gap_cell(row: Row) -> str:
    table = row.table
    gap = row.gap.get(table.headline)
    if gap is None:
        return "—"
    text = f"{gap:+.{table.places(table.headline)}f}"
    if row.same_protocol is False:
        text += f" ({row.protocol or '?'} vs {row.published.protocol})"
    return text


def _task_header(table: TaskTable) -> list[str]:
    cols = [table.labels[k] for k in table.metrics]
    extra = [f"no model {table.labels[table.headline]}"] if table.task == "restoration" else []
    published = " / ".join(table.labels[k] for k in table.compared)
    return [
        "run",
        "model",
        "dataset",
        table.protocol_column,
        "setup",
        "n",
        *cols,
        *extra,
        f"published {published}",
        f"gap {table.labels[table.headline]}",
        "epochs",
        "wall",
        "hsi",
        "git",
    ]


def _task_cells(row: Row, ref: int | None) -> list[str]:
    table = row.table
    wall = _fmt_seconds(row.wall_seconds)
    if row.wall_seconds is not None and not row.wall_measured:
        wall = "≈" + wall
    if row.task == "classification":
        setup = _setup(row.train_ratio, row.patch_size, row.pca_components, row.pca_fit)
    else:
        setup = row.setup or "—"
    measured = [row.stats[k].fmt(table.places(k)) if k in row.stats else "—" for k in table.metrics]
    extra = []
    if row.task == "restoration":
        head = row.reference.get(table.headline)
        extra = [head.fmt(table.places(table.headline)) if head else "—"]
    return [
        row.label,
        row.model or "?",
        row.dataset or "?",
        row.protocol_label,
        setup,
        str(row.n),
        *measured,
        *extra,
        _published_cell(row.published, ref, table),
        _gap_cell(row),
        ", ".join(str(e) for e in row.epochs) or "—",
        wall,
        ", ".join(row.hsi_versions) or "—",
        ", ".join(row.gits) or "—",
    ]


def render_markdown(
    rows: Sequence[Row],
    *,
    title: str = "hsi benchmark",
    context: dict[str, Any] | None = None,
    unresolved: Sequence[dict[str, Any]] = (),
    pending: Sequence[PendingRun] = (),
) -> str:
    """The benchmark tables (one per task present) with their sources, as markdown."""
    import hsi
    from hsi.provenance import git_commit

    context = dict(context or {})
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"# {title}", ""]
    lines.append(
        f"Written {now} by hsi {hsi.__version__} (git {git_commit() or 'unknown'})"
        + "".join(f"; {k}: {v}" for k, v in context.items())
        + ". Wall: per seed (≈: summed train epochs + test, not measured end to end)."
    )
    refs: dict[str, int] = {}
    for row in rows:
        if row.published is not None and row.published.key not in refs:
            refs[row.published.key] = len(refs) + 1
    tasks = [task for task in TASK_TABLES if any(r.task == task for r in rows)] or [
        "classification"
    ]
    for task in tasks:
        table = TASK_TABLES[task]
        lines.append("")
        if len(tasks) > 1:
            lines += [f"## {task.capitalize()}", ""]
        lines += [table.note, ""]
        header = _task_header(table)
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "---|" * len(header))
        for row in (r for r in rows if r.task == task):
            ref = refs.get(row.published.key) if row.published else None
            cells = _task_cells(row, ref)
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        if not rows:
            lines.append("| (no reports) |" + " |" * (len(header) - 1))
    if pending:
        lines += ["", f"Still to run ({len(pending)} run × seed, not in the table):", ""]
        lines += [f"- {p.line()}" for p in pending]
    if refs:
        lines += ["", "Published numbers:", ""]
        entries = {r.published.key: r.published for r in rows if r.published is not None}
        for key, i in refs.items():
            e = entries[key]
            setup = _setup(None, e.patch_size, e.pca_components, None)
            detail = "" if setup == "—" else f", {setup}"
            reasons = f"; leaky: {'; '.join(e.leaky_reasons)}" if e.leaky_reasons else ""
            epochs = f", {e.epochs} epochs" if e.epochs else ""
            lines.append(
                f"{i}. `{key}`: {e.citation}, {e.table}. Protocol {e.protocol_label}"
                f"{detail}{epochs}{reasons}."
            )
    if unresolved:
        lines += ["", "Published claims not pinned to a table entry (not compared):", ""]
        for claim in unresolved:
            lines.append(f"- {claim.get('model')}: {' '.join(str(claim.get('claim')).split())}")
    dropped = sum(r.duplicates for r in rows)
    if dropped:
        lines += ["", f"{dropped} older report(s) of an already counted seed were left out."]
    lines += ["", "Reports:", ""]
    for row in rows:
        what = row.label if row.task == "classification" else f"{row.label} ({row.protocol})"
        lines.append(f"- {what}: " + ", ".join(f"`{p}`" for p in row.reports))
    return "\n".join(lines) + "\n"


def plot(rows: Sequence[Row], path: str | Path) -> Path:
    """Bar chart per task: the measured headline metric (OA, PSNR, mAP50:95; mean ± std over
    seeds) beside the published one, per row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    from hsi.data.writers import atomic_output

    panels = []
    for task, table in TASK_TABLES.items():
        task_rows = [r for r in rows if r.task == task and table.headline in r.stats]
        if task_rows:
            panels.append((table, task_rows))
    if not panels:
        panels = [(TASK_TABLES["classification"], [])]
    widest = max(len(r) for _, r in panels)
    fig, axes = plt.subplots(
        len(panels), 1, figsize=(max(6.0, 2.5 * widest + 1.5), 4.8 * len(panels)), squeeze=False
    )
    width = 0.38
    colors = {True: "#e08a2c", False: "#2c7fb8", None: "#888888"}
    for ax, (table, task_rows) in zip(axes[:, 0], panels, strict=True):
        key = table.headline
        label, top = table.axis_label, table.axis_top
        x = np.arange(len(task_rows))
        highest = 0.0
        for i, row in enumerate(task_rows):
            s = row.stats[key]
            ax.bar(
                x[i] - width / 2,
                s.mean,
                width,
                yerr=s.std,  # none with one seed
                capsize=4,
                color=colors[row.leaky],
                hatch="//" if row.leaky else None,
                edgecolor="black",
                linewidth=0.5,
            )
            bar_top = s.mean + (s.std or 0.0)
            highest = max(highest, bar_top)
            text = table.fmt(key, s.mean)
            ax.text(x[i] - width / 2, bar_top, text, ha="center", va="bottom", fontsize=7)
            if row.published is not None and key in row.published.metrics:
                p = row.published.metrics[key]
                highest = max(highest, p)
                ax.bar(
                    x[i] + width / 2,
                    p,
                    width,
                    yerr=row.published.std.get(key),
                    capsize=4,
                    color="#bbbbbb",
                    edgecolor="black",
                    linewidth=0.5,
                )
                text = table.fmt(key, p)
                ax.text(x[i] + width / 2, p, text, ha="center", va="bottom", fontsize=7)
            else:
                ax.text(x[i] + width / 2, 0.02 * (top or highest or 1.0), "no published\nnumber",
                        ha="center", fontsize=6)  # fmt: skip
        ax.set_xticks(x)
        ax.set_xticklabels(
            [f"{r.label}\n{r.protocol_label}, n={r.n}" for r in task_rows], fontsize=7
        )
        ax.set_xlim(-0.6, max(len(task_rows), 1) - 0.4)
        ceiling = top if top is not None else max(highest, 1.0) * 1.05
        ax.set_ylim(0.0, ceiling * 1.15)
        ax.set_ylabel(label)
        ax.set_title(f"measured vs published {table.labels[key]}", fontsize=10)
        ax.legend(
            handles=[
                Patch(facecolor=colors[False], edgecolor="black", label="measured, leak-free"),
                Patch(
                    facecolor=colors[True], edgecolor="black", hatch="//", label="measured, leaky"
                ),
                Patch(facecolor="#bbbbbb", edgecolor="black", label="published"),
            ],
            fontsize=7,
            loc="upper center",
            ncol=3,
            frameon=False,
        )
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    try:
        with atomic_output(path, overwrite=True) as tmp:
            fig.savefig(tmp, dpi=120, format="png")
    finally:
        plt.close(fig)
    return Path(path)


def write_results(
    rows: Sequence[Row],
    out: str | Path,
    *,
    title: str = "hsi benchmark",
    context: dict[str, Any] | None = None,
    pending: Sequence[PendingRun] = (),
    models: Iterable[str] = (),
) -> list[Path]:
    """Write ``benchmark.md``, ``benchmark.png`` and ``benchmark.json`` into ``out``.

    The unpinned published claims listed are those of the tabulated models and of
    ``models`` (a suite's, finished or not)."""
    from hsi.data.writers import atomic_output

    out = Path(out)
    shown = {r.model for r in rows if r.model} | {m.lower() for m in models}
    unresolved = [c for c in unresolved_claims() if str(c.get("model", "")).lower() in shown]
    md = render_markdown(rows, title=title, context=context, unresolved=unresolved, pending=pending)
    paths = []
    with atomic_output(out / "benchmark.md", overwrite=True) as tmp:
        tmp.write_text(md, encoding="utf-8")
    paths.append(out / "benchmark.md")
    paths.append(plot(rows, out / "benchmark.png"))
    with atomic_output(out / "benchmark.json", overwrite=True) as tmp:
        payload = {
            "title": title,
            "context": context or {},
            "rows": [r.to_dict() for r in rows],
            "pending": [asdict(p) for p in pending],
        }
        tmp.write_text(json.dumps(payload, indent=2, default=str))
    paths.append(out / "benchmark.json")
    return paths


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hsi benchmark",
        description="Compare hsi's models with their published numbers: train a suite of "
        "runs (resumable) or collect existing test reports, then write benchmark.md/.png.",
    )
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--suite", help="a suite of suites.yaml (see --list)")
    what.add_argument("--quick", action="store_true", help="the `quick` suite: a few minutes")
    what.add_argument(
        "--collect",
        nargs="+",
        metavar="DIR",
        help="train nothing: tabulate the test_report.json files under these folders",
    )
    what.add_argument("--list", action="store_true", help="list suites and published entries")
    parser.add_argument(
        "--runs",
        nargs="+",
        metavar="NAME",
        help="train only these runs of the suite (default: all; the table shows every "
        "finished run of the suite)",
    )
    parser.add_argument(
        "--seeds", nargs="+", type=int, help="seeds for every run (default: suite's)"
    )
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    parser.add_argument("--max-epochs", type=int, help="override every run's max_epochs")
    parser.add_argument("--root", help="data root (default: $HSI_DATA, else ~/.cache/hsi)")
    parser.add_argument("--suites-file", help="another suites YAML than the one shipped")
    parser.add_argument(
        "--dry-run", action="store_true", help="print the hsi fit commands, train nothing"
    )
    return parser


def _only_runs(suite: Suite, names: Sequence[str] | None) -> Suite:
    """The suite cut to the named runs (``--runs``), in the suite's order.

    Why: a suite of several models can take days on a CPU; a user trains the model they
    care about first, or one model per machine, and the table still collects them all.
    """
    if not names:
        return suite
    known = [run.name for run in suite.runs]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(
            f"suite {suite.name!r} has no run {', '.join(map(repr, unknown))}; its runs: "
            f"{', '.join(known)}"
        )
    return replace(suite, runs=tuple(r for r in suite.runs if r.name in names))


def _list(suites: dict[str, Suite], published: dict[str, PublishedEntry]) -> None:
    print("suites:")
    for s in suites.values():
        print(f"  {s.name}: {len(s.runs)} run(s). {s.description}")
        for r in s.runs:
            print(f"    - {r.name}: {r.config} seeds {list(r.seeds)} vs {r.published}")
    print("published entries:")
    for e in published.values():
        ms = ", ".join(f"{k} {v:g}" for k, v in e.metrics.items())
        print(f"  {e.key}: {ms} — {e.reference}")


def benchmark_main(argv: Sequence[str] | None = None, *, fit: FitFn | None = None) -> int:
    """Entry point of ``hsi benchmark``; the exit code."""
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        published = load_published()
        suites = load_suites(args.suites_file)
        if args.list:
            _list(suites, published)
            return 0
        if args.collect:
            rows = collect(args.collect, published)
            if not rows:
                raise DataError(
                    f"no {' / '.join(REPORT_NAMES)} under {', '.join(args.collect)}: run "
                    "`hsi fit` or `hsi benchmark --suite ...` first"
                )
            paths = write_results(
                rows, args.out, context={"collected from": ", ".join(args.collect)}
            )
            _print_summary(rows, paths)
            return 0
        name = "quick" if args.quick else args.suite
        if not name:
            raise ConfigError(
                "say what to benchmark: --suite NAME, --quick or --collect DIR (--list shows "
                "the suites)"
            )
        if name not in suites:
            raise ConfigError(f"unknown suite {name!r}; suites: {', '.join(sorted(suites))}")
        suite = suites[name]
        print(f"suite {suite.name}: {suite.description}")
        context = {"suite": suite.name}
        if args.max_epochs is not None:
            context["max_epochs"] = args.max_epochs

        def tabulate(outcomes: list[RunOutcome]) -> tuple[list[Row], list[PendingRun], list[Path]]:
            """The suite's table as it stands: every finished run, and what is still missing."""
            rows = collect_suite(suite, args.out, published)
            pending = suite_progress(
                suite, args.out, seeds=args.seeds, max_epochs=args.max_epochs, outcomes=outcomes
            )
            paths = write_results(
                rows,
                args.out,
                title=f"hsi benchmark: {suite.name}",
                context=context,
                pending=pending,
                models=filter(None, (run_model(r) for r in suite.runs)),
            )
            return rows, pending, paths

        def refresh(outcomes: list[RunOutcome]) -> None:
            try:
                _, _, paths = tabulate(outcomes)
            except (HsiError, OSError) as exc:  # the suite goes on; the final table retries
                print(f"table not updated: {exc}", file=sys.stderr)
            else:
                _say(f"table updated: {paths[0]}")

        outcomes = run_suite(
            _only_runs(suite, args.runs),
            args.out,
            seeds=args.seeds,
            max_epochs=args.max_epochs,
            root=args.root,
            fit=fit,
            dry_run=args.dry_run,
            on_finished=refresh,
        )
        if args.dry_run:
            return 0
        missing = [o for o in outcomes if o.status == "missing data"]
        if missing and len(missing) == len(outcomes) and not collect_suite(suite, args.out):
            names = sorted({m.message for m in missing})
            raise DataError("no run could start: " + " | ".join(names))
        rows, pending, paths = tabulate(outcomes)
        _print_summary(rows, paths, pending)
        for o in outcomes:
            if o.status == "failed":
                print(f"failed: {o.run} seed {o.seed}: {o.message}", file=sys.stderr)
        stopped = [o for o in outcomes if o.status == "stopped"]
        if stopped:  # the shell's convention for a death by signal: 128 + its number
            return 128 + int(signal.Signals[stopped[0].message])
        return 1 if any(o.status == "failed" for o in outcomes) else 0
    except HsiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _print_summary(
    rows: Sequence[Row], paths: Sequence[Path], pending: Sequence[PendingRun] = ()
) -> None:
    for row in rows:
        table = row.table
        key = table.headline
        value = row.stats[key].fmt(table.places(key)) if key in row.stats else "—"
        gap = row.gap.get(key)
        vs = "" if gap is None else f", {gap:+.{table.places(key)}f} vs {row.published.key}"
        print(f"  {row.label} [{row.protocol_label}, n={row.n}]: {table.labels[key]} {value}{vs}")
    if pending:
        print(f"still to run ({len(pending)}):")
        for p in pending:
            print(f"  {p.line()}")
    for p in paths:
        print(f"wrote {p}")


if __name__ == "__main__":
    sys.exit(benchmark_main())
