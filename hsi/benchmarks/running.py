"""Running a benchmark suite: one ``hsi fit`` per (run, seed) into ``<out>/<run>/seed<N>/``.

A run whose task report exists is not trained again; an interrupted run continues from its
last finished epoch (``hsi fit --resume_dir``); Ctrl-C or SIGTERM stops the whole suite at
once, and a time limit (``deadline``) stops it between epochs, before one that would end
after it (``hsi fit --stop_by``). :func:`suite_progress` says which (run, seed) are still
missing and how far each got, so the table of a suite run in pieces names its missing rows.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import math
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml

from hsi.benchmarks import Suite, SuiteRun
from hsi.benchmarks.records import (
    REPORT_NAMES,
    SIDECAR_NAME,
    TASK_TABLES,
    load_reports,
)
from hsi.deadline import EXIT_TIME_LIMIT, seconds_until
from hsi.errors import ConfigError, DataError
from hsi.run_lock import LOCK_NAME, claim_run, lock_owner

if TYPE_CHECKING:
    from hsi.callbacks import ResumeCheckpoint

RESUME_DIR = "resume"  # hsi fit --resume_dir: an interrupted run continues from its last epoch
FAILURE_NAME = "benchmark_failed.json"  # why the last attempt at a run failed (until it succeeds)
DEFAULT_OUT = "benchmarks/results"
REPO_ROOT = Path(__file__).resolve().parents[2]

FitFn = Callable[[list[str]], int]
TIME_LIMIT = "time limit"  # RunOutcome.message of a run stopped by the suite's deadline
# a run is not started with less time than this left: it could do nothing useful
MIN_SECONDS_TO_START = 60.0


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
    deadline: _dt.datetime | None = None,
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
    if deadline is not None:
        args.append(f"--stop_by={deadline.isoformat()}")
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

    dataset = _config_value(run, "data.init_args.dataset")
    if dataset in (None, "None"):
        return None  # a custom scene: its files are checked when it is loaded
    root = root or _config_value(run, "data.init_args.root")
    try:
        locate_files(dataset, root)
    except (DataError, ConfigError) as exc:
        return str(exc)
    return None


class SuiteStopped(BaseException):
    """A termination signal (Ctrl-C, ``timeout``'s SIGTERM) arrived during a suite, or
    (``signum`` None) its time limit came before the next epoch or run.

    A BaseException, like KeyboardInterrupt, so that neither the suite's per-run error
    handling nor Lightning's takes it for a failed run: the suite stops at once, keeps
    finished runs and the interrupted run's resume checkpoint, and exits 128 + signal
    (``EXIT_TIME_LIMIT`` for the time limit)."""

    def __init__(self, signum: int | None) -> None:
        super().__init__(signum)
        self.signum = signum

    @property
    def reason(self) -> str:
        return TIME_LIMIT if self.signum is None else signal.Signals(self.signum).name


def stop_exit_code(reason: str) -> int:
    """The exit code of a suite stopped for ``reason`` (a signal's name or ``TIME_LIMIT``):
    the shell's 128 + signal for a signal, as if it had killed the process."""
    return EXIT_TIME_LIMIT if reason == TIME_LIMIT else 128 + int(signal.Signals[reason])


@dataclass
class _StopSignal:
    """The stop signal that arrived while the suite ran (None: none did)."""

    signum: int | None = None

    def check(self) -> None:
        """Stop the suite if a signal arrived, even one whose SuiteStopped got lost.

        Why: the handler runs wherever Python happens to be, and C code that probes an
        attribute and clears whatever error it met (``PyObject_HasAttrString``) can swallow
        the exception it raises. Lightning's own SIGTERM handler had already marked the fit
        to stop, so the fit then ends with SystemExit, which would count as a failed run:
        the suite would go on to the next run, and the run would be marked failed.
        """
        if self.signum is not None:
            raise SuiteStopped(self.signum)


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[_StopSignal]:
    """Turn SIGINT and SIGTERM into :class:`SuiteStopped` while a suite runs.

    Why: Lightning answers Ctrl-C with ``sys.exit(1)`` and then ignores SIGINT for the rest of
    the process, and answers SIGTERM by stopping the fit with a SystemExit; the suite would
    count either as one failed run and go on to the next, so ``timeout`` could not stop it
    and Ctrl-C would not either. Lightning chains the SIGTERM handler it finds (this one).
    The signal is also remembered (the yielded :class:`_StopSignal`), for the rare exception
    that something swallows. Only the main thread can set handlers; elsewhere the suite runs
    without them.
    """
    arrived = _StopSignal()
    if threading.current_thread() is not threading.main_thread():
        yield arrived
        return

    def stop(signum: int, frame: Any) -> None:
        arrived.signum = signum
        raise SuiteStopped(signum)

    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in before:
        signal.signal(sig, stop)
    try:
        yield arrived
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


@dataclass
class RunOutcome:
    run: str
    seed: int
    directory: Path
    status: str  # "done", "skipped", "busy" (another process), "missing data", "failed", "stopped"
    message: str = ""
    seconds: float | None = None


def format_seconds(seconds: float | None) -> str:
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
    deadline: _dt.datetime | None = None,
) -> list[RunOutcome]:
    """Train every (run, seed) of the suite that has no report yet; one line of progress each.

    ``fit`` takes the ``hsi fit`` argument list and returns an exit code (default: train in
    this process). A finished run (its ``test_report.json`` exists) is skipped; a run whose
    dataset is not found is reported and skipped; a failing run does not stop the others.
    ``on_finished`` is called with the outcomes so far after every run that trained (done
    or failed): ``hsi benchmark`` rewrites its table there, so a suite of many hours shows
    each result as it lands, not only at the end. ``deadline`` (time-zone aware): no epoch
    or run is started that would end after it (estimated from the epochs before; see
    :class:`hsi.callbacks.StopBeforeDeadline`); the suite then stops as on a signal.
    """
    from hsi.callbacks import ResumeCheckpoint  # imports Lightning: only when a suite runs

    fit = fit or _fit

    def has_resume_file(target: Path) -> bool:
        return ResumeCheckpoint(target / RESUME_DIR).path.is_file()

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
        args = fit_args(run, seed, out, max_epochs=max_epochs, root=root, deadline=deadline)
        if dry_run:
            echo(f"{head}: would run: hsi {' '.join(_quote(a) for a in args)}")
            return RunOutcome(run.name, seed, target, "dry run")
        with claim_run(target) as owner:
            if owner is not None:
                echo(
                    f"{head}: being trained by another process ({owner.describe()}), skipped; "
                    f"if no such process trains it, delete {target / LOCK_NAME}"
                )
                return RunOutcome(run.name, seed, target, "busy", owner.describe())
            report = _finished_report(target)  # finished while this process waited its turn
            if report is not None:
                echo(f"{head}: already done{_headline(report)}, skipped ({target})")
                return RunOutcome(run.name, seed, target, "skipped")
            if deadline is not None and not enough_time(run, seed, head, target, deadline):
                raise SuiteStopped(None)
            return train(run, seed, head, target, args)

    def enough_time(
        run: SuiteRun, seed: int, head: str, target: Path, deadline: _dt.datetime
    ) -> bool:
        """Whether a run can do useful work before the deadline: a resumed run's fit
        estimates its own next epoch; a new run's first epoch is estimated here."""
        left = seconds_until(deadline)
        if left < MIN_SECONDS_TO_START:
            return False
        if has_resume_file(target):
            return True
        estimate = first_epoch_estimate(out, run, seed)
        if estimate is None or estimate <= left:
            return True
        echo(
            f"{head}: not started: its first epoch would take about "
            f"{format_seconds(estimate)} (its other seeds' pace), and the time limit is "
            f"{format_seconds(left)} away"
        )
        return False

    def train(run: SuiteRun, seed: int, head: str, target: Path, args: list[str]) -> RunOutcome:
        resumed = has_resume_file(target)
        echo(f"{head}: {'resuming an interrupted run' if resumed else 'training'} -> {target}")
        start = time.perf_counter()
        started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        code: int | None = None
        try:
            code = fit(args)
            error = "" if code == 0 else f"hsi fit exited with code {code}"
        except Exception as exc:  # one broken run must not lose the others' results
            traceback.print_exc()
            error = f"{type(exc).__name__}: {exc}"
        seconds = time.perf_counter() - start
        report = _finished_report(target)
        if error or report is None:
            arrived.check()  # a stop signal, not a fault, ended it: it is not a failed run
            if code == EXIT_TIME_LIMIT and report is None:
                raise SuiteStopped(None)  # hsi fit --stop_by: stopped between epochs
        if not error and report is None:
            error = f"hsi fit finished but wrote no {' / '.join(REPORT_NAMES)} in {target}"
        if error:
            echo(f"{head}: FAILED after {format_seconds(seconds)}: {error}")
            _write_failure(target, error)
            return RunOutcome(run.name, seed, target, "failed", error, seconds)
        _write_sidecar(target, suite, run, seed, args, seconds, started, max_epochs, resumed)
        (target / FAILURE_NAME).unlink(missing_ok=True)
        echo(f"{head}: done in {format_seconds(seconds)}{_headline(report)}")
        return RunOutcome(run.name, seed, target, "done", seconds=seconds)

    outcomes: list[RunOutcome] = []
    with _stop_on_signals() as arrived:
        for i, (run, seed) in enumerate(jobs, 1):
            head = f"[{i}/{len(jobs)}] {run.name} seed {seed}"
            try:
                outcomes.append(one(run, seed, head))
                if on_finished is not None and outcomes[-1].status in ("done", "failed"):
                    on_finished(list(outcomes))
                arrived.check()
            except SuiteStopped as stopped:
                name = stopped.reason
                done = sum(o.status in ("done", "skipped") for o in outcomes)
                target = run_dir(out, run, seed)
                if _finished_report(target) is not None:
                    this = "this one had finished"  # the signal came while its table was written
                elif has_resume_file(target):
                    this = "this one goes on from its last finished epoch"
                else:
                    this = "this one starts from the beginning"
                why = (
                    f"its {name} ({deadline.isoformat(timespec='seconds')})"
                    if (stopped.signum is None and deadline is not None)
                    else name
                )
                echo(
                    f"{head}: stopped by {why}; {done} finished run(s) kept, and {this}: run "
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
    seconds_left: float | None = None  # training time left at the pace measured so far

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


def _epochs_done(resume: ResumeCheckpoint) -> tuple[int, list[float]] | None:
    """Finished epochs and their measured seconds, from a run's resume checkpoint (read
    memory-mapped: a 2 GB file costs a few reads), or None when there is no readable one."""
    if not resume.path.is_file():
        return None
    try:
        ckpt = resume.read()
    except DataError:  # a half-written or foreign file: the run says so when it resumes
        return None
    seconds = [float(s) for s in ckpt.get("hsi_epoch_seconds") or []]
    return int(ckpt["epoch"]) + 1, seconds  # Lightning saves the finished epoch's index


def _report_epoch_seconds(report: Path) -> list[float]:
    """The training epochs' seconds a finished run's report holds."""
    try:
        timings = json.loads(report.read_text()).get("timings") or {}
        return [float(s) for s in timings.get("train_epoch_seconds") or []]
    except (OSError, ValueError, TypeError, AttributeError):
        return []


def _seed_states(
    out: str | Path, run: SuiteRun, seeds: Iterable[int]
) -> tuple[dict[int, Path | None], dict[int, tuple[int, list[float]] | None]]:
    """Each seed's finished report (None: unfinished) and, for each unfinished seed, its
    finished epochs and their seconds (:func:`_epochs_done`); every resume file read once."""
    from hsi.callbacks import ResumeCheckpoint  # imports Lightning

    reports = {seed: _finished_report(run_dir(out, run, seed)) for seed in seeds}
    resumed = {
        seed: _epochs_done(ResumeCheckpoint(run_dir(out, run, seed) / RESUME_DIR))
        for seed, report in reports.items()
        if report is None
    }
    return reports, resumed


def _median_pace(
    reports: dict[int, Path | None], resumed: dict[int, tuple[int, list[float]] | None]
) -> float | None:
    """The median training epoch (seconds) of a run's seeds, finished and interrupted (as
    :func:`_seed_states` gives them); None with none.

    Why the median: it is the pace of a run not started yet, robust to epochs that other
    jobs on the machine slowed down."""
    paced = [s for r in reports.values() if r is not None for s in _report_epoch_seconds(r)]
    paced += [s for done in resumed.values() if done is not None for s in done[1]]
    return float(np.median(paced)) if paced else None


def first_epoch_estimate(out: str | Path, run: SuiteRun, seed: int) -> float | None:
    """Seconds the first epoch of a new (run, seed) is expected to take, validation included:
    the run's other seeds' median training epoch times the callback's validation allowance
    (None when no other seed of the run has trained an epoch in ``out``).

    Why: ``hsi fit --stop_by`` never declines a new run's first epoch (it has nothing of its
    own to go by), so under a time limit the suite asks this before starting one; a LoLA
    ``disjoint`` epoch is 7-8 min of one CPU thread, lost to the hard stop otherwise."""
    from hsi.callbacks import VALIDATION_ALLOWANCE  # imports Lightning

    others = [other for other in _seeds_in(out, run) if other != seed]
    pace = _median_pace(*_seed_states(out, run, others))
    return None if pace is None else VALIDATION_ALLOWANCE * pace


def _seeds_in(out: str | Path, run: SuiteRun) -> list[int]:
    """The seeds of a run that have a folder in ``out`` (any seed, not only the suite's)."""
    folder = Path(out) / run.name
    if not folder.is_dir():
        return []
    return sorted(
        int(child.name[4:])
        for child in folder.iterdir()
        if child.is_dir() and child.name.startswith("seed") and child.name[4:].isdigit()
    )


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
    from hsi.callbacks import ResumeCheckpoint  # imports Lightning

    said = {(o.run, o.seed): o for o in outcomes}
    pending = []
    for run in suite.runs:
        try:
            planned = max_epochs or _config_value(run, "trainer.max_epochs")
        except (OSError, ConfigError, yaml.YAMLError):
            planned = None
        run_seeds = sorted(set(run.seeds) | set(seeds or ()))
        reports, resumed = _seed_states(out, run, run_seeds)
        pace = _median_pace(reports, resumed)
        for seed in run_seeds:
            if reports[seed] is not None:
                continue
            target = run_dir(out, run, seed)
            outcome = said.get((run.name, seed))
            if outcome is not None and outcome.status == "missing data":
                pending.append(PendingRun(run.name, seed, "dataset not found", outcome.message))
                continue
            failure = outcome.message if outcome and outcome.status == "failed" else None
            resume = ResumeCheckpoint(target / RESUME_DIR)
            owner = lock_owner(target)  # another process training it now
            if failure is None and owner is None and not _newer(resume.path, target / FAILURE_NAME):
                failure = _read_failure(target)  # unless a retry has trained since or does now
            notes = [failure] if failure else []
            if owner is not None:
                notes.append(f"training now: {owner.describe()}")
            done = resumed[seed]
            left = None
            if done is None:  # (again) from the first epoch
                state = "failed" if failure else "in progress" if owner else "not started"
                if pace is not None and isinstance(planned, int):
                    left = pace * planned
                    at = format_seconds(left)
                    notes.append(f"about {at} of training at its other seeds' pace")
            else:  # a failed run with a resume file goes on from it too
                state = "failed" if failure else "in progress"
                epochs, seconds = done
                of = f" of {planned}" if planned else ""
                notes.append(f"{epochs}{of} epochs finished, resumable")
                if seconds:
                    median = float(np.median(seconds))
                    pace_note = f"median {median:.0f} s per epoch"
                    if isinstance(planned, int) and planned > epochs:
                        left = median * (planned - epochs)
                        pace_note += f", about {format_seconds(left)} of training left at that pace"
                    notes.append(pace_note)
            pending.append(PendingRun(run.name, seed, state, "; ".join(notes), left))
    return pending


def training_left(pending: Sequence[PendingRun]) -> str | None:
    """One line: the training time the pending runs still need at the pace measured so far
    (None when no run has a pace yet). Processes that share the output folder split it."""
    known = [p.seconds_left for p in pending if p.seconds_left is not None]
    if not known:
        return None
    line = f"about {format_seconds(sum(known))} of training left at the pace measured so far"
    unknown = len(pending) - len(known)
    if unknown:
        line += f", plus {unknown} run(s) with no measured pace"
    return line + " (processes sharing this output folder split it)"


def _write_failure(target: Path, error: str) -> None:
    """Keep why a run failed beside it, so ``--status`` (another process) can say so."""
    try:
        target.mkdir(parents=True, exist_ok=True)
        (target / FAILURE_NAME).write_text(json.dumps({"error": error}))
    except OSError:
        pass  # the failure is printed anyway; only the status listing loses it


def _newer(path: Path, than: Path) -> bool:
    """True when ``path`` exists and was written after ``than`` (or ``than`` is absent)."""
    try:
        mtime = path.stat().st_mtime
    except OSError:
        return False
    try:
        return mtime > than.stat().st_mtime
    except OSError:
        return True


def _read_failure(target: Path) -> str | None:
    try:
        return str(json.loads((target / FAILURE_NAME).read_text())["error"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


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
