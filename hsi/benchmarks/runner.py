"""``hsi benchmark``: does this implementation reach what the paper says, and under which
protocol?

Two ways in:

- ``hsi benchmark --suite NAME`` (or ``--quick``) trains every run of a suite
  (``suites.yaml``) once per seed with ``hsi fit``, each into ``<out>/<run>/seed<N>/``. A run
  whose task report exists is not trained again, so an interrupted suite resumes where it
  stopped, and an interrupted run continues from its last finished epoch
  (``hsi fit --resume_dir``), so the suite can be run in pieces under a time limit;
  ``--time-limit`` stops it cleanly between epochs before that limit.
- ``hsi benchmark --collect DIR ...`` trains nothing: it gathers the task reports under the
  given directories (e.g. ``runs/`` of earlier ``hsi fit`` runs): classification
  ``test_report.json``, restoration ``restoration_report.json`` (one result per test
  degradation) and detection ``detection_report.json`` (:mod:`hsi.benchmarks.records`).

Either way the results are grouped (one row per run, or per model × dataset × protocol ×
setup for collected reports), aggregated over seeds (mean ± sample std), matched with the
published entry (``published.yaml``) and written atomically to ``<out>/benchmark.md`` (a
table per task), ``<out>/benchmark.png`` (measured vs published OA, PSNR or mAP50:95, a panel
per task) and ``<out>/benchmark.json``.

This module is the command line; the work lives in :mod:`hsi.benchmarks.running` (training
a suite, what is still missing), :mod:`hsi.benchmarks.tables` (rows, markdown, JSON) and
:mod:`hsi.benchmarks.chart` (the PNG), whose public names it re-exports.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from hsi.benchmarks import (
    PublishedEntry,
    Suite,
    load_published,
    load_suites,
)
from hsi.benchmarks.chart import plot
from hsi.benchmarks.records import (
    REPORT_NAMES,
    ReportRecord,
    find_reports,
    load_report,
    load_reports,
)
from hsi.benchmarks.running import (
    DEFAULT_OUT,
    RESUME_DIR,
    FitFn,
    PendingRun,
    RunOutcome,
    fit_args,
    resolve_config,
    run_dir,
    run_model,
    run_suite,
    stop_exit_code,
    suite_progress,
    training_left,
)
from hsi.benchmarks.tables import (
    Row,
    aggregate,
    collect,
    collect_suite,
    match_published,
    render_markdown,
    write_results,
)
from hsi.deadline import EXIT_TIME_LIMIT, parse_deadline
from hsi.errors import ConfigError, DataError, HsiError

__all__ = [
    "RESUME_DIR",
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
    "plot",
    "render_markdown",
    "resolve_config",
    "run_dir",
    "run_suite",
    "suite_progress",
    "write_results",
]


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
    parser.add_argument(
        "--time-limit",
        metavar="LIMIT",
        help="stop cleanly before an epoch or run that would end after LIMIT: a duration "
        f"from now (2h20m, 90m, 5400) or an ISO 8601 time; exit code {EXIT_TIME_LIMIT}, and "
        "the same command goes on from there. Keep a hard stop (timeout, the scheduler's) "
        "too: a run's first epoch has no estimate",
    )
    parser.add_argument(
        "--status",
        action="store_true",
        help="train nothing: write the suite's table as it stands and list what is still "
        "missing (e.g. while the suite runs in another terminal)",
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
            vs = f"vs {r.published}" if r.published else "vs any entry of its model, data, protocol"
            print(f"    - {r.name}: {r.config} seeds {list(r.seeds)} {vs}")
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
        deadline = parse_deadline(args.time_limit) if args.time_limit else None
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
                print(f"table updated: {paths[0]}", flush=True)

        if args.status:
            rows, pending, paths = tabulate([])
            _print_summary(rows, paths, pending)
            return 0
        if deadline is not None:
            print(f"time limit: {deadline.astimezone().isoformat(timespec='seconds')}")
        outcomes = run_suite(
            _only_runs(suite, args.runs),
            args.out,
            seeds=args.seeds,
            max_epochs=args.max_epochs,
            root=args.root,
            fit=fit,
            dry_run=args.dry_run,
            on_finished=refresh,
            deadline=deadline,
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
        if stopped:
            return stop_exit_code(stopped[0].message)
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
        if left := training_left(pending):
            print(f"  {left}")
    for p in paths:
        print(f"wrote {p}")


if __name__ == "__main__":
    sys.exit(benchmark_main())
