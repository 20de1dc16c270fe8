"""Benchmark tables: task reports grouped into rows (mean ± std over seeds), matched with the
published entries, and written as ``benchmark.md`` / ``.png`` / ``.json``."""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hsi.benchmarks import (
    PublishedEntry,
    Suite,
    load_published,
    unresolved_claims,
)
from hsi.benchmarks.chart import plot
from hsi.benchmarks.records import (
    TASK_TABLES,
    ReportRecord,
    TaskTable,
    find_reports,
    load_reports,
)
from hsi.benchmarks.running import PendingRun, format_seconds, training_left
from hsi.errors import DataError

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
    parameters: list[int] = field(default_factory=list)  # distinct counts over the seeds
    trainable_parameters: list[int] = field(default_factory=list)
    epoch_seconds: float | None = None  # median over seeds of each seed's median epoch
    wall_total_seconds: float | None = None  # summed over the seeds that have a wall time
    paced_total_seconds: float | None = None  # sum over seeds of median epoch x epochs
    epoch_cpu_seconds: float | None = None  # the same for the process CPU time per epoch

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
            "parameters": self.parameters,
            "trainable_parameters": self.trainable_parameters,
            "epoch_seconds": self.epoch_seconds,
            "epoch_cpu_seconds": self.epoch_cpu_seconds,
            "wall_seconds": self.wall_seconds,
            "wall_measured": self.wall_measured,
            "wall_total_seconds": self.wall_total_seconds,
            "paced_total_seconds": self.paced_total_seconds,
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
        epoch_times = [r.epoch_seconds for r in kept if r.epoch_seconds is not None]
        paced = [r.epoch_seconds * r.epochs for r in kept if r.epoch_seconds and r.epochs]
        epoch_cpu = [r.epoch_cpu_seconds for r in kept if r.epoch_cpu_seconds is not None]
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
                parameters=sorted({r.parameters for r in kept if r.parameters is not None}),
                trainable_parameters=sorted(
                    {r.trainable_parameters for r in kept if r.trainable_parameters is not None}
                ),
                epoch_seconds=float(np.median(epoch_times)) if epoch_times else None,
                wall_total_seconds=float(sum(walls)) if walls else None,
                paced_total_seconds=float(sum(paced)) if paced else None,
                epoch_cpu_seconds=float(np.median(epoch_cpu)) if epoch_cpu else None,
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
        "parameters",
        "epochs",
        "s / epoch",
        "CPU s / epoch",
        "wall",
        "hsi",
        "git",
    ]


def _parameters_cell(row: Row) -> str:
    """``67,064``, or ``183,199,916 (2,150,672 trainable)`` when not all of them train."""
    total = ", ".join(f"{n:,}" for n in row.parameters) or "—"
    partly_trained = any(n not in row.parameters for n in row.trainable_parameters)
    if partly_trained:
        total += f" ({', '.join(f'{n:,}' for n in row.trainable_parameters)} trainable)"
    return total


def _epoch_seconds(seconds: float) -> str:
    return f"{seconds:.1f}" if seconds < 100 else f"{seconds:.0f}"


def _task_cells(row: Row, ref: int | None) -> list[str]:
    table = row.table
    wall = format_seconds(row.wall_seconds)
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
        _parameters_cell(row),
        ", ".join(str(e) for e in row.epochs) or "—",
        "—" if row.epoch_seconds is None else _epoch_seconds(row.epoch_seconds),
        "—" if row.epoch_cpu_seconds is None else _epoch_seconds(row.epoch_cpu_seconds),
        wall,
        ", ".join(row.hsi_versions) or "—",
        ", ".join(row.gits) or "—",
    ]


def _training_total(rows: Sequence[Row]) -> str | None:
    """What the finished runs took together, for "how long does this suite take?" (None
    for fewer than two runs: the row says it)."""
    runs = sum(r.n for r in rows)
    walls = [r.wall_total_seconds for r in rows if r.wall_total_seconds is not None]
    if runs < 2 or not walls:
        return None
    approx = "" if all(r.wall_measured for r in rows) else "≈"
    took = f"{approx}{format_seconds(sum(walls))}"
    line = f"The {runs} finished runs (one per seed) took {took} together"
    paced = [r.paced_total_seconds for r in rows if r.paced_total_seconds is not None]
    if paced:
        line += (
            f" ({format_seconds(sum(paced))} of training at each one's median epoch time, "
            "which leaves out epochs slowed by other jobs)"
        )
    return line + "; parallel processes finish them sooner."


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
        + ". Wall: per seed (≈: summed train epochs + test, not measured end to end). "
        "s / epoch: median wall seconds of a training epoch; CPU s / epoch: the training "
        "process's CPU time in it (all its threads): it leaves out the time spent waiting "
        "for a core while other jobs ran, though not their slowing of shared caches."
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
    if total := _training_total(rows):
        lines += ["", total]
    if pending:
        lines += ["", f"Still to run ({len(pending)} run × seed, not in the table):", ""]
        lines += [f"- {p.line()}" for p in pending]
        if left := training_left(pending):
            lines += ["", left[0].upper() + left[1:] + "."]
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
