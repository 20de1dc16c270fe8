"""`hsi benchmark`: published numbers as data, aggregation over seeds, resumable suites.

No training here: reports are written by hand and the fit function is replaced.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import socket
from pathlib import Path

import pytest
import torch
import yaml

from hsi import run_lock
from hsi.benchmarks import (
    METRICS,
    PUBLISHED_METRICS,
    load_published,
    load_suites,
    runner,
    running,
    unresolved_claims,
)
from hsi.benchmarks.runner import (
    aggregate,
    collect,
    fit_args,
    load_report,
    render_markdown,
    resolve_config,
    run_dir,
)
from hsi.cli import main
from hsi.deadline import EXIT_TIME_LIMIT

PUBLISHED_YAML = Path(runner.__file__).with_name("published.yaml")


def write_report(
    folder: Path,
    *,
    oa: float,
    aa: float = 80.0,
    kappa: float = 75.0,
    seed: int = 0,
    protocol: str = "random",
    leaky: bool = True,
    train: float = 0.3,
    model: str = "hybridsn",
    dataset: str = "indian_pines",
    epochs: int = 3,
    patch_size: int = 25,
    parameters: int | None = 5_122_176,
    trainable: int | None = None,
    epoch_seconds: list[float] | None = None,
    epoch_cpu_seconds: list[float] | None = None,
) -> Path:
    """A test report with the layout hsi.reports.write_classification_report writes."""
    folder.mkdir(parents=True, exist_ok=True)
    reasons = ["random pixel split: training patches contain test pixels"] if leaky else []
    report = {
        "hsi_version": "0.1.0",
        "git": "abc1234",
        "dataset": dataset,
        "protocol": protocol,
        "leaky": leaky,
        "leaky_reasons": reasons,
        "seed": seed,
        "model": model,
        "epochs_run": epochs,
        "metrics": {"OA": oa, "AA": aa, "kappa": kappa},
        "timings": {
            "test_seconds": 1.0,
            "train_epoch_seconds": epoch_seconds or [2.0] * epochs,
            "train_epoch_cpu_seconds": epoch_cpu_seconds,
        },
        "parameters": parameters,
        "task": {"model": model, "parameters": parameters, "trainable_parameters": trainable},
        "data": {
            "dataset": dataset,
            "split": {"protocol": protocol, "seed": seed, "params": {"train": train, "val": 0.1}},
            "patch_size": patch_size,
            "pca_components": 30,
            "pca_fit": "image" if leaky else "train",
            "leaky": leaky,
            "leaky_reasons": reasons,
        },
    }
    path = folder / "test_report.json"
    path.write_text(json.dumps(report))
    return path


# ---- published numbers --------------------------------------------------------------------


def test_published_entries_have_citation_table_and_sane_numbers() -> None:
    raw = yaml.safe_load(PUBLISHED_YAML.read_text())
    entries = load_published()
    assert set(entries) == set(raw["entries"]) and entries
    for key, e in entries.items():
        assert raw["entries"][key]["paper"] in raw["papers"]
        assert e.citation and e.table, key
        assert e.metrics and set(e.metrics) <= set(PUBLISHED_METRICS), key
        # one task's figures per entry: classification, restoration or detection
        kinds = [set(e.metrics) & set(group) for group in (METRICS, ("PSNR", "SSIM", "SAM"))]
        assert not all(kinds), key
        assert set(e.std) <= set(e.metrics), key
        assert all(0 < v <= 100 for v in e.metrics.values()), key
        assert e.train_ratio is None or 0 < e.train_ratio < 1, key
        assert key.startswith(f"{e.model}/{e.dataset}/"), key
    ip = entries["hybridsn/indian_pines/random30"]
    assert ip.metrics == {"OA": 99.75, "AA": 99.63, "kappa": 99.71}
    assert ip.table == "Table II" and ip.leaky is True and ip.patch_size == 25
    assert "10.1109/LGRS.2019.2918719" in ip.reference
    assert entries["hybridsn/indian_pines/random10"].metrics["OA"] == 98.39
    # what could not be pinned to a table entry carries no number to compare with
    for claim in unresolved_claims():
        assert "metrics" not in claim and claim["missing"]


def test_published_entry_without_table_is_refused(tmp_path: Path) -> None:
    raw = yaml.safe_load(PUBLISHED_YAML.read_text())
    key = next(iter(raw["entries"]))
    del raw["entries"][key]["table"]
    bad = tmp_path / "published.yaml"
    bad.write_text(yaml.safe_dump(raw))
    with pytest.raises(Exception, match="table"):
        load_published(bad)


def test_suites_resolve_configs_and_published_keys() -> None:
    suites = load_suites()
    published = load_published()
    assert {"hybridsn_indian_pines", "quick"} <= set(suites)
    assert {len(r.seeds) for r in suites["hybridsn_indian_pines"].runs} == {3}
    for suite in suites.values():
        for run in suite.runs:
            assert resolve_config(run.config).is_file()
            assert run.published is None or run.published in published


# ---- aggregation --------------------------------------------------------------------------


def test_aggregate_mean_std_gap_and_leaky_flag(tmp_path: Path) -> None:
    for seed, oa in enumerate([90.0, 92.0, 94.0]):
        write_report(tmp_path / "paper" / f"version_{seed}", oa=oa, kappa=80 + seed, seed=seed)
    for seed, oa in enumerate([60.0, 70.0]):
        write_report(
            tmp_path / "disjoint" / f"version_{seed}",
            oa=oa,
            seed=seed,
            protocol="disjoint",
            leaky=False,
        )
    rows = {r.protocol: r for r in collect([tmp_path])}
    paper, disjoint = rows["random"], rows["disjoint"]

    assert paper.n == 3 and paper.seeds == [0, 1, 2]
    assert paper.stats["OA"].mean == pytest.approx(92.0)
    assert paper.stats["OA"].std == pytest.approx(2.0)  # sample std (ddof=1)
    assert paper.stats["kappa"].mean == pytest.approx(81.0)
    assert paper.leaky is True and paper.label == "paper"
    assert paper.published.key == "hybridsn/indian_pines/random30"
    assert paper.gap["OA"] == pytest.approx(92.0 - 99.75)
    assert paper.same_protocol is True

    assert disjoint.leaky is False and disjoint.n == 2
    assert disjoint.stats["OA"].std == pytest.approx(7.0710678)
    # a leak-free run is compared with the paper's (leaky) number, and says so
    assert disjoint.published.key == "hybridsn/indian_pines/random30"
    assert disjoint.same_protocol is False
    assert disjoint.gap["OA"] == pytest.approx(65.0 - 99.75)
    assert disjoint.wall_seconds == pytest.approx(3 * 2.0 + 1.0) and not disjoint.wall_measured

    md = render_markdown([paper, disjoint])
    assert "| random (leaky) |" in md and "| disjoint |" in md
    assert "92.00 ± 2.00" in md and "-7.75" in md and "-34.75 (disjoint vs random)" in md
    assert "Table II" in md and "Roy" in md


def test_aggregate_single_seed_unmatched_and_duplicates(tmp_path: Path) -> None:
    old = write_report(tmp_path / "a" / "version_0", oa=50.0, dataset="enmap_potsdam")
    new = write_report(tmp_path / "a" / "version_1", oa=55.0, dataset="enmap_potsdam")
    os.utime(old, (1, 1))  # the older report of the same experiment and seed is left out
    other_ratio = write_report(tmp_path / "c" / "version_0", oa=80.0, train=0.05)
    rows = aggregate([load_report(p) for p in (old, new, other_ratio)], load_published())
    by_data = {r.dataset: r for r in rows}
    potsdam = by_data["enmap_potsdam"]
    assert potsdam.n == 1 and potsdam.stats["OA"].mean == 55.0 and potsdam.stats["OA"].std is None
    assert potsdam.duplicates == 1 and potsdam.published is None and potsdam.gap == {}
    assert by_data["indian_pines"].published is None  # no paper number at 5 % training
    assert "55.00 |" in render_markdown(rows)
    # another experiment folder with the same setup and seed is another row, not a duplicate
    other = write_report(tmp_path / "b" / "version_0", oa=60.0, dataset="enmap_potsdam")
    rows = aggregate([load_report(p) for p in (old, new, other)], load_published())
    assert sorted(r.stats["OA"].mean for r in rows) == [55.0, 60.0]


# ---- the command line ---------------------------------------------------------------------


def test_collect_writes_markdown_png_and_json(tmp_path: Path, capsys) -> None:
    for seed, oa in enumerate([97.0, 98.0]):
        write_report(tmp_path / "runs" / "ip_paper" / f"version_{seed}", oa=oa, seed=seed)
    out = tmp_path / "results"
    assert main(["benchmark", "--collect", str(tmp_path / "runs"), "--out", str(out)]) == 0
    md = (out / "benchmark.md").read_text()
    assert "| ip_paper | hybridsn | indian_pines | random (leaky) |" in md
    assert "97.50 ± 0.71" in md and "99.75 ± 0.1 / 99.63 ± 0.2 / 99.71 ± 0.1 [1]" in md
    assert "-2.25" in md and "abc1234" in md
    png = (out / "benchmark.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    rows = json.loads((out / "benchmark.json").read_text())["rows"]
    assert rows[0]["measured"]["OA"]["mean"] == pytest.approx(97.5) and rows[0]["leaky"] is True
    assert not list(out.glob(".*partial"))
    assert "wrote" in capsys.readouterr().out


def test_collect_without_reports_is_a_clear_error(tmp_path: Path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    code = main(["benchmark", "--collect", str(tmp_path / "empty"), "--out", str(tmp_path)])
    assert code == 2
    assert "no test_report.json" in capsys.readouterr().err
    assert main(["benchmark", "--out", str(tmp_path)]) == 2  # nothing asked for
    assert "--suite NAME" in capsys.readouterr().err


def _toy_suite(tmp_path: Path, dataset: str | None = None) -> Path:
    cfg = tmp_path / "toy.yaml"
    cfg.write_text(
        yaml.safe_dump({"data": {"init_args": {"dataset": dataset, "image": "x", "labels": "y"}}})
    )
    suites = tmp_path / "suites.yaml"
    suites.write_text(
        yaml.safe_dump(
            {
                "suites": {
                    "toy": {
                        "description": "two seeds of a toy run",
                        "runs": [
                            {
                                "name": "toy_run",
                                "config": str(cfg),
                                "seeds": [0, 1],
                                "published": "hybridsn/indian_pines/random30",
                                "overrides": ["--trainer.max_epochs=1"],
                            }
                        ],
                    }
                }
            }
        )
    )
    return suites


def _fake_fit(calls: list[list[str]], fail_seeds: tuple[int, ...] = ()):
    def fit(args: list[str]) -> int:
        calls.append(args)
        seed = int(next(a for a in args if a.startswith("--seed_everything=")).split("=")[1])
        if seed in fail_seeds:
            return 2
        report_dir = next(a for a in args if a.startswith("--model.init_args.report_dir="))
        write_report(Path(report_dir.split("=", 1)[1]), oa=90.0 + seed, seed=seed)
        return 0

    return fit


def test_suite_is_resumable(tmp_path: Path, monkeypatch, capsys) -> None:
    suites = _toy_suite(tmp_path)
    out = tmp_path / "out"
    suite = load_suites(suites)["toy"]
    # seed 0 finished earlier: only seed 1 trains
    write_report(run_dir(out, suite.runs[0], 0), oa=95.0, seed=0)
    calls: list[list[str]] = []
    monkeypatch.setattr(running, "_fit", _fake_fit(calls))
    argv = ["benchmark", "--suite", "toy", "--suites-file", str(suites), "--out", str(out)]
    assert main(argv) == 0
    assert len(calls) == 1 and "--seed_everything=1" in calls[0]
    assert "--trainer.max_epochs=1" in calls[0] and "--data.init_args.seed=1" in calls[0]
    printed = capsys.readouterr().out
    assert "[1/2] toy_run seed 0: already done (OA 95.00), skipped" in printed
    assert "[2/2] toy_run seed 1: training" in printed and "done in" in printed
    sidecar = json.loads((run_dir(out, suite.runs[0], 1) / "benchmark_run.json").read_text())
    assert sidecar["published"] == "hybridsn/indian_pines/random30" and sidecar["wall_seconds"] >= 0
    md = (out / "benchmark.md").read_text()
    assert "| toy_run |" in md and "93.00 ± 2.83" in md  # seeds 95 and 91

    # a second call trains nothing
    assert main(argv) == 0
    assert len(calls) == 1
    assert capsys.readouterr().out.count("already done") == 2


def _write_lock(folder: Path, pid: int, host: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / run_lock.LOCK_NAME
    owner = {"pid": pid, "host": host or socket.gethostname(), "since": "2026-11-24T09:00:00+00:00"}
    lock.write_text(json.dumps(owner))
    return lock


def test_a_run_another_process_trains_is_left_to_it(
    tmp_path: Path, monkeypatch, capsys, dead_pid
) -> None:
    """Two `hsi benchmark` processes on one output folder never train the same run."""
    suites = _toy_suite(tmp_path)
    out = tmp_path / "out"
    run = load_suites(suites)["toy"].runs[0]
    # seed 0 is being trained by a live process (this test's parent)
    lock = _write_lock(run_dir(out, run, 0), os.getppid())
    held_during_fit: list[dict] = []
    calls: list[list[str]] = []
    fake = _fake_fit(calls)

    def fit(args: list[str]) -> int:  # only seed 1 trains: seed 0 is held
        lock_file = run_dir(out, run, 1) / run_lock.LOCK_NAME
        held_during_fit.append(json.loads(lock_file.read_text()))
        return fake(args)

    monkeypatch.setattr(running, "_fit", fit)
    argv = ["benchmark", "--suite", "toy", "--suites-file", str(suites), "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert len(calls) == 1 and "--seed_everything=1" in calls[0]
    assert f"toy_run seed 0: being trained by another process (pid {os.getppid()} on" in printed
    # the training process held seed 1's lock while it trained, and released it after
    assert len(held_during_fit) == 1 and held_during_fit[0]["pid"] == os.getpid()
    assert not (run_dir(out, run, 1) / run_lock.LOCK_NAME).exists()
    assert lock.exists()  # the other process's lock is not touched
    # the table and --status say that seed 0 is training now
    assert main([*argv, "--status"]) == 0
    assert f"toy_run seed 0: in progress (training now: pid {os.getppid()} on" in (
        capsys.readouterr().out
    )
    # a lock from another host cannot be checked: it counts as held
    other = _write_lock(run_dir(out, run, 0), dead_pid, host="elsewhere")
    assert main(argv) == 0 and len(calls) == 1
    assert "being trained by another process (pid" in capsys.readouterr().out
    other.unlink()


def test_a_stale_run_lock_is_taken_over(tmp_path: Path, monkeypatch, capsys, dead_pid) -> None:
    """A lock whose process has died (killed, machine restarted) does not block the run."""
    suites = _toy_suite(tmp_path)
    out = tmp_path / "out"
    run = load_suites(suites)["toy"].runs[0]
    lock = _write_lock(run_dir(out, run, 0), dead_pid)
    assert running.suite_progress(load_suites(suites)["toy"], out)[0].state == "not started"
    calls: list[list[str]] = []
    monkeypatch.setattr(running, "_fit", _fake_fit(calls))
    argv = ["benchmark", "--suite", "toy", "--suites-file", str(suites), "--out", str(out)]
    assert main(argv) == 0
    assert len(calls) == 2 and not lock.exists()
    assert "toy_run seed 0: training" in capsys.readouterr().out


def test_the_run_lock_is_released_when_training_raises(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), run_lock.claim_run(tmp_path / "run") as owner:
        assert owner is None and run_lock.lock_owner(tmp_path / "run") is None  # own: not live
        assert (tmp_path / "run" / run_lock.LOCK_NAME).exists()
        raise RuntimeError("training broke")
    assert not (tmp_path / "run" / run_lock.LOCK_NAME).exists()
    assert [p.name for p in (tmp_path / "run").iterdir()] == []  # no temporary file left


def test_killed_run_is_resumed_and_its_wall_time_falls_back_to_epochs(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    suites = _toy_suite(tmp_path)
    out = tmp_path / "out"
    suite = load_suites(suites)["toy"]
    resume = run_dir(out, suite.runs[0], 0) / runner.RESUME_DIR
    calls: list[list[str]] = []
    finish = _fake_fit(calls)

    def killed_then_finished(args: list[str]) -> int:
        # every run is given its resume folder; the first attempt dies mid-run, leaving a
        # resume file, as `timeout` or a closed session would
        assert f"--resume_dir={resume.resolve()}" in args
        if not calls:
            calls.append(args)
            resume.mkdir(parents=True)
            (resume / "last.ckpt").write_bytes(b"epoch 1")
            return 1
        code = finish(args)
        (resume / "last.ckpt").unlink(missing_ok=True)  # hsi fit removes it when done
        return code

    monkeypatch.setattr(running, "_fit", killed_then_finished)
    argv = ["benchmark", "--suite", "toy", "--suites-file", str(suites), "--out", str(out)]
    argv += ["--seeds", "0"]
    assert main(argv) == 1
    assert "FAILED" in capsys.readouterr().out
    failure = resume.parent / running.FAILURE_NAME
    assert "exited with code 1" in failure.read_text()
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "[1/1] toy_run seed 0: resuming an interrupted run" in printed
    assert not failure.exists()  # it succeeded: the failure note is gone
    sidecar = json.loads((resume.parent / "benchmark_run.json").read_text())
    assert sidecar["resumed"] is True and sidecar["wall_seconds"] is None
    assert sidecar["last_segment_seconds"] >= 0
    # the killed segment was not timed: the row shows the summed epochs + test, marked ≈
    record = load_report(resume.parent / "test_report.json")
    assert record.wall_seconds == pytest.approx(3 * 2.0 + 1.0) and not record.wall_measured


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_stops_the_whole_suite(tmp_path: Path, monkeypatch, capsys, sig, code) -> None:
    suites = _toy_suite(tmp_path)
    calls: list[list[str]] = []
    finish = _fake_fit(calls)

    def killed_during_seed_1(args: list[str]) -> int:
        if "--seed_everything=1" in args:
            calls.append(args)
            signal.raise_signal(sig)  # `timeout` or Ctrl-C while the second run trains
            raise AssertionError("the signal must stop the run at once")
        return finish(args)

    monkeypatch.setattr(running, "_fit", killed_during_seed_1)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    out = tmp_path / "out"
    argv = ["benchmark", "--suite", "toy", "--suites-file", str(suites), "--out", str(out)]
    assert main([*argv, "--seeds", "0", "1", "2"]) == code
    assert len(calls) == 2  # seed 2 never started
    printed = capsys.readouterr().out
    assert f"[2/3] toy_run seed 1: stopped by {signal.Signals(sig).name}" in printed
    assert "1 finished run(s) kept" in printed and "run the same command" in printed
    assert "| toy_run |" in (out / "benchmark.md").read_text()  # the finished run's table
    assert {s: signal.getsignal(s) for s in handlers} == handlers  # handlers given back


@pytest.mark.parametrize("finished", [False, True])
def test_a_signal_whose_exception_was_swallowed_still_stops_the_suite(
    tmp_path: Path, monkeypatch, capsys, finished: bool
) -> None:
    """C code that clears any error it meets can swallow SuiteStopped; Lightning, which saw
    the SIGTERM too, then ends the fit with SystemExit (hsi fit exits 1). That is a stop,
    not a failed run: no failure note, and the next seed does not start."""
    suites = _toy_suite(tmp_path)
    calls: list[list[str]] = []
    finish = _fake_fit(calls)

    def swallowed_during_seed_1(args: list[str]) -> int:
        if "--seed_everything=1" not in args:
            return finish(args)
        try:
            signal.raise_signal(signal.SIGTERM)
        except running.SuiteStopped:
            pass  # lost, the way PyObject_HasAttrString loses it
        return finish(args) if finished else (calls.append(args) or 1)

    monkeypatch.setattr(running, "_fit", swallowed_during_seed_1)
    out = tmp_path / "out"
    argv = ["benchmark", "--suite", "toy", "--suites-file", str(suites), "--out", str(out)]
    assert main([*argv, "--seeds", "0", "1", "2"]) == 143
    assert len(calls) == 2  # seed 2 never started
    printed = capsys.readouterr().out
    assert "[2/3] toy_run seed 1: stopped by SIGTERM" in printed and "FAILED" not in printed
    seed1 = run_dir(out, load_suites(suites)["toy"].runs[0], 1)
    assert not (seed1 / running.FAILURE_NAME).exists()
    # a run that finished before the stop is kept as done, with its sidecar
    assert (seed1 / "benchmark_run.json").is_file() == finished
    assert ("this one had finished" in printed) == finished


def test_a_time_limit_reaches_every_fit_and_stops_the_suite(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    suites = _toy_suite(tmp_path)
    calls: list[list[str]] = []
    finish = _fake_fit(calls)

    def out_of_time_in_seed_1(args: list[str]) -> int:
        if "--seed_everything=1" in args:
            calls.append(args)
            return EXIT_TIME_LIMIT  # hsi fit --stop_by declined the next epoch
        return finish(args)

    monkeypatch.setattr(running, "_fit", out_of_time_in_seed_1)
    out = tmp_path / "out"
    argv = ["benchmark", "--suite", "toy", "--suites-file", str(suites), "--out", str(out)]
    assert main([*argv, "--seeds", "0", "1", "2", "--time-limit", "2h"]) == EXIT_TIME_LIMIT
    assert len(calls) == 2  # seed 2 never started
    stop_by = [a for a in calls[0] if a.startswith("--stop_by=")]
    deadline = dt.datetime.fromisoformat(stop_by[0].split("=", 1)[1])
    left = (deadline - dt.datetime.now(dt.timezone.utc)).total_seconds()
    assert 7000 < left <= 7200
    printed = capsys.readouterr().out
    assert "[2/3] toy_run seed 1: stopped by its time limit" in printed and "FAILED" not in printed
    seed1 = run_dir(out, load_suites(suites)["toy"].runs[0], 1)
    assert not (seed1 / running.FAILURE_NAME).exists()
    assert "| toy_run |" in (out / "benchmark.md").read_text()  # seed 0's row


def test_no_run_starts_in_the_last_minute_of_a_time_limit(tmp_path: Path) -> None:
    suite = load_suites(_toy_suite(tmp_path))["toy"]
    calls: list[list[str]] = []
    lines: list[str] = []
    soon = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=30)
    outcomes = running.run_suite(
        suite, tmp_path / "out", fit=_fake_fit(calls), echo=lines.append, deadline=soon
    )
    assert calls == [] and [o.status for o in outcomes] == ["stopped"]
    assert outcomes[0].message == running.TIME_LIMIT
    assert running.stop_exit_code(outcomes[0].message) == EXIT_TIME_LIMIT
    assert running.stop_exit_code("SIGTERM") == 143
    assert "stopped by its time limit" in lines[-1] and "starts from the beginning" in lines[-1]


def test_a_new_run_is_not_started_when_its_first_epoch_would_pass_the_time_limit(
    tmp_path: Path,
) -> None:
    """hsi fit never declines a new run's first epoch, so the suite estimates it from the run's
    other seeds (median epoch × the validation allowance) before starting the run."""
    suite = load_suites(_toy_suite(tmp_path))["toy"]
    out = tmp_path / "out"
    write_report(
        run_dir(out, suite.runs[0], 0), oa=95.0, seed=0, epoch_seconds=[500.0, 600.0, 700.0]
    )
    assert running.first_epoch_estimate(out, suite.runs[0], 1) == pytest.approx(1.25 * 600.0)
    assert running.first_epoch_estimate(out, suite.runs[0], 0) is None  # no other seed
    calls: list[list[str]] = []
    lines: list[str] = []
    in_10_min = dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=10)
    outcomes = running.run_suite(
        suite, out, fit=_fake_fit(calls), echo=lines.append, deadline=in_10_min
    )
    assert calls == [] and [o.status for o in outcomes] == ["skipped", "stopped"]
    assert "seed 1: not started: its first epoch would take about 12.5 min" in lines[1]
    assert "stopped by its time limit" in lines[-1]
    # with the time it needs, the same run starts
    in_15_min = dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=15)
    outcomes = running.run_suite(suite, out, fit=_fake_fit(calls), deadline=in_15_min)
    assert len(calls) == 1 and [o.status for o in outcomes] == ["skipped", "done"]


def test_a_resumed_run_is_left_to_its_fit_to_estimate(tmp_path: Path) -> None:
    """A run with a resume file starts under the same short limit: its own saved epoch times
    are the better estimate, and hsi fit --stop_by uses them."""
    suite = load_suites(_toy_suite(tmp_path))["toy"]
    out = tmp_path / "out"
    write_report(run_dir(out, suite.runs[0], 0), oa=95.0, seed=0, epoch_seconds=[600.0] * 3)
    resume = run_dir(out, suite.runs[0], 1) / running.RESUME_DIR
    resume.mkdir(parents=True)
    (resume / "last.ckpt").write_bytes(b"epoch 1")
    calls: list[list[str]] = []
    in_10_min = dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=10)
    outcomes = running.run_suite(suite, out, fit=_fake_fit(calls), deadline=in_10_min)
    assert len(calls) == 1 and [o.status for o in outcomes] == ["skipped", "done"]
    assert any(a.startswith("--stop_by=") for a in calls[0])


def test_failed_run_does_not_stop_the_suite(tmp_path: Path, monkeypatch, capsys) -> None:
    suites = _toy_suite(tmp_path)
    calls: list[list[str]] = []
    monkeypatch.setattr(running, "_fit", _fake_fit(calls, fail_seeds=(0,)))
    out = tmp_path / "out"
    code = main(["benchmark", "--suite", "toy", "--suites-file", str(suites), "--out", str(out)])
    assert code == 1 and len(calls) == 2
    assert "FAILED" in capsys.readouterr().out
    assert "| toy_run |" in (out / "benchmark.md").read_text()


def test_missing_dataset_is_named_and_nothing_trains(tmp_path: Path, monkeypatch, capsys) -> None:
    suites = _toy_suite(tmp_path, dataset="indian_pines")
    calls: list[list[str]] = []
    monkeypatch.setattr(running, "_fit", _fake_fit(calls))
    empty = tmp_path / "no_data"
    empty.mkdir()
    argv = ["benchmark", "--suite", "toy", "--suites-file", str(suites), "--root", str(empty)]
    assert main([*argv, "--out", str(tmp_path / "out")]) == 2
    assert calls == []
    captured = capsys.readouterr()
    assert "dataset missing" in captured.out and "indian_pines" in captured.err


def test_dry_run_prints_commands(tmp_path: Path, capsys) -> None:
    suites = _toy_suite(tmp_path)
    argv = ["--suite", "toy", "--suites-file", str(suites), "--out", str(tmp_path), "--dry-run"]
    assert runner.benchmark_main([*argv, "--seeds", "7"]) == 0
    printed = capsys.readouterr().out
    assert "would run: hsi fit --config" in printed and "--seed_everything=7" in printed
    assert not (tmp_path / "benchmark.md").exists()


def test_quick_suite_parses_as_hsi_fit(tmp_path: Path, capsys) -> None:
    quick = load_suites()["quick"]
    for run in quick.runs:
        args = fit_args(run, 0, tmp_path, root=str(tmp_path))
        with pytest.raises(SystemExit) as exc:
            main([*args, "--print_config"])
        assert exc.value.code == 0
        printed = yaml.safe_load(capsys.readouterr().out)
        target = str(run_dir(tmp_path, run, 0).resolve())
        assert printed["trainer"]["max_epochs"] == 6
        assert printed["trainer"]["logger"]["init_args"]["version"] == "seed0"
        assert printed["model"]["init_args"]["report_dir"] == target
        assert printed["data"]["init_args"]["patch_size"] == 11
        assert printed["data"]["init_args"]["root"] == str(tmp_path)
        assert printed["seed_everything"] == 0


def test_runs_option_trains_only_the_named_runs_and_tables_the_whole_suite(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    suites = _toy_suite(tmp_path)
    spec = yaml.safe_load(suites.read_text())
    other = {**spec["suites"]["toy"]["runs"][0], "name": "toy_other"}
    spec["suites"]["toy"]["runs"].append(other)
    suites.write_text(yaml.safe_dump(spec))
    out = tmp_path / "out"
    suite = load_suites(suites)["toy"]
    write_report(run_dir(out, suite.runs[0], 0), oa=95.0, seed=0)  # toy_run, trained earlier
    calls: list[list[str]] = []
    monkeypatch.setattr(running, "_fit", _fake_fit(calls))
    argv = ["benchmark", "--suite", "toy", "--suites-file", str(suites), "--out", str(out)]
    assert main([*argv, "--runs", "toy_other", "--seeds", "1"]) == 0
    assert len(calls) == 1 and str(out / "toy_other") in " ".join(calls[0])
    printed = capsys.readouterr().out
    assert "[1/1] toy_other seed 1: training" in printed and "toy_run seed 1: train" not in printed
    # what the suite still lacks is listed, the runs not asked for included
    assert "toy_run seed 1: not started" in printed and "toy_other seed 0: not started" in printed
    md = (out / "benchmark.md").read_text()
    assert "| toy_run |" in md and "| toy_other |" in md

    assert main([*argv, "--runs", "toy_run", "tpy_other"]) == 2
    err = capsys.readouterr().err
    assert "no run 'tpy_other'" in err and "its runs: toy_run, toy_other" in err
    assert len(calls) == 1


def test_the_table_lists_what_the_suite_still_lacks(tmp_path: Path, monkeypatch, capsys) -> None:
    suites = _toy_suite(tmp_path)
    spec = yaml.safe_load(suites.read_text())
    spec["suites"]["toy"]["runs"][0]["overrides"] = ["--trainer.max_epochs=5"]
    spec["suites"]["toy"]["runs"][0]["seeds"] = [0, 1, 2]
    suites.write_text(yaml.safe_dump(spec))
    out = tmp_path / "out"
    run = load_suites(suites)["toy"].runs[0]
    write_report(run_dir(out, run, 0), oa=95.0, seed=0)
    # seed 1 was killed after its third epoch (Lightning saves the finished epoch's index)
    resume = run_dir(out, run, 1) / runner.RESUME_DIR
    resume.mkdir(parents=True)
    torch.save(
        {"epoch": 2, "state_dict": {}, "hsi_epoch_seconds": [30.0, 10.0, 12.0]},
        resume / "last.ckpt",
    )
    calls: list[list[str]] = []
    monkeypatch.setattr(running, "_fit", _fake_fit(calls, fail_seeds=(2,)))
    argv = ["benchmark", "--suite", "toy", "--suites-file", str(suites), "--out", str(out)]
    assert main([*argv, "--seeds", "2"]) == 1  # seed 2 fails
    md = (out / "benchmark.md").read_text()
    assert "Still to run (2 run × seed, not in the table):" in md
    assert (
        "- toy_run seed 1: in progress (3 of 5 epochs finished, resumable; median 12 s per "
        "epoch, about 24 s of training left at that pace)" in md
    )
    # a run with no epochs of its own is paced by its other seeds' epochs: the median of
    # seed 0's [2, 2, 2] and seed 1's [30, 10, 12] s is 6 s, times 5 epochs
    assert (
        "- toy_run seed 2: failed (hsi fit exited with code 2; about 30 s of training at its "
        "other seeds' pace)" in md
    )
    assert "About 54 s of training left at the pace measured so far (processes sharing" in md
    assert "toy_run seed 0" not in md.split("Still to run")[1].split("Reports:")[0]
    pending = json.loads((out / "benchmark.json").read_text())["pending"]
    assert [(p["seed"], p["state"]) for p in pending] == [(1, "in progress"), (2, "failed")]
    assert "still to run (2):" in capsys.readouterr().out

    # --status trains nothing and says the same
    assert main([*argv, "--status"]) == 0
    assert len(calls) == 1
    printed = capsys.readouterr().out
    assert "toy_run seed 1: in progress (3 of 5 epochs" in printed and ": training" not in printed
    assert "toy_run seed 2: failed (hsi fit exited with code 2;" in printed  # kept on disk
    assert "  about 54 s of training left at the pace measured so far" in printed
    # a retry that has trained an epoch since is in progress again, not failed
    retry = run_dir(out, run, 2) / runner.RESUME_DIR
    retry.mkdir(parents=True)
    torch.save({"epoch": 0, "state_dict": {}, "hsi_epoch_seconds": [9.0]}, retry / "last.ckpt")
    failed_at = (run_dir(out, run, 2) / running.FAILURE_NAME).stat().st_mtime
    os.utime(retry / "last.ckpt", (failed_at + 5, failed_at + 5))
    assert main([*argv, "--status"]) == 0
    assert "toy_run seed 2: in progress (1 of 5 epochs" in capsys.readouterr().out
    # a run that failed after an epoch was saved says how far it got: a retry resumes there
    os.utime(retry / "last.ckpt", (failed_at - 5, failed_at - 5))
    assert main([*argv, "--status"]) == 0
    assert (
        "toy_run seed 2: failed (hsi fit exited with code 2; 1 of 5 epochs finished, "
        "resumable; median 9 s per epoch, about 36 s of training left at that pace)"
    ) in capsys.readouterr().out

    # an unreadable resume file is a run not started, not a crash
    (resume / "last.ckpt").write_bytes(b"cut short")
    assert runner.suite_progress(load_suites(suites)["toy"], out)[0].state == "not started"


def test_the_table_is_rewritten_as_each_run_lands(tmp_path: Path, monkeypatch, capsys) -> None:
    suites = _toy_suite(tmp_path)
    out = tmp_path / "out"
    calls: list[list[str]] = []
    finish = _fake_fit(calls)
    seen: list[str] = []

    def fit(args: list[str]) -> int:
        if "--seed_everything=1" in args:  # while seed 1 trains, seed 0 is already tabled
            seen.append((out / "benchmark.md").read_text())
        return finish(args)

    monkeypatch.setattr(running, "_fit", fit)
    argv = ["benchmark", "--suite", "toy", "--suites-file", str(suites), "--out", str(out)]
    assert main(argv) == 0
    assert len(seen) == 1 and "| toy_run |" in seen[0] and "| 1 | 90.00 |" in seen[0]
    assert "- toy_run seed 1: not started" in seen[0]
    assert capsys.readouterr().out.count("table updated:") == 2
    final = (out / "benchmark.md").read_text()
    assert "| 2 | 90.50 ± 0.71 |" in final and "Still to run" not in final
    # a total once there are two runs; measured end to end here, so no ≈
    assert "finished runs" not in seen[0]
    total = next(line for line in final.splitlines() if line.startswith("The 2 finished runs"))
    assert "≈" not in total and "(12 s of training at each one's median epoch time" in total


def test_rows_give_parameters_trainable_and_median_epoch_time(tmp_path: Path) -> None:
    # a LoRA fine-tune: most weights frozen; one slow epoch (a loaded machine) is not the norm
    lora = [
        write_report(
            tmp_path / "lora" / f"version_{seed}",
            oa=80.0 + seed,
            seed=seed,
            model="lola_specvit",
            parameters=183_199_916,
            trainable=2_150_672,
            epoch_seconds=[150.0, 160.0 + seed, 900.0],
            # the 900 s epoch waited for other jobs: its CPU time is like the others'
            epoch_cpu_seconds=[140.0, 145.0 + 2 * seed, 150.0],
        )
        for seed in (0, 1)
    ]
    full = write_report(
        tmp_path / "full" / "version_0", oa=90.0, parameters=67_064, trainable=67_064
    )
    rows = aggregate([load_report(p) for p in [*lora, full]])
    by_model = {r.model: r for r in rows}
    row = by_model["lola_specvit"]
    assert row.parameters == [183_199_916] and row.trainable_parameters == [2_150_672]
    assert row.epoch_seconds == pytest.approx(160.5)  # median of the seeds' medians 160, 161
    assert row.epoch_cpu_seconds == pytest.approx(146.0)  # of the seeds' medians 145, 147
    md = render_markdown(rows)
    header = next(line for line in md.splitlines() if line.startswith("| run |"))
    assert "| parameters | epochs | s / epoch | CPU s / epoch | wall |" in header
    assert "| 183,199,916 (2,150,672 trainable) | 3 | 160 | 146 |" in md  # 160.5 rounds to even
    assert "| 67,064 | 3 | 2.0 | — |" in md  # all trainable: the count alone; no CPU times
    assert row.to_dict()["epoch_cpu_seconds"] == pytest.approx(146.0)
    # the suite's total: walls summed (≈: epochs + 1 s test each, no sidecar), and the same
    # at each seed's median epoch: 160 x 3 + 161 x 3 + 2 x 3 = 969 s
    assert (
        "The 3 finished runs (one per seed) took ≈40.5 min together (16.1 min of training at "
        "each one's median epoch time, which leaves out epochs slowed by other jobs)"
    ) in md
    assert by_model["hybridsn"].to_dict()["trainable_parameters"] == [67_064]


def test_unpinned_claims_listed_are_those_of_the_tables_models(tmp_path: Path) -> None:
    rows = aggregate([load_report(write_report(tmp_path / "r", oa=90.0, seed=0))])
    runner.write_results(rows, tmp_path / "a")
    assert "Published claims not pinned" not in (tmp_path / "a" / "benchmark.md").read_text()
    runner.write_results(rows, tmp_path / "b", models=["lola_specvit"])
    md = (tmp_path / "b" / "benchmark.md").read_text()
    assert "- lola_specvit:" in md and "- hirdiff:" not in md


# ---- restoration and detection reports in the same tables -----------------------------------


def write_restoration_report(folder: Path, *, psnr: float, cases: bool = False) -> Path:
    """A report with the layout RestorationTask writes (one test noise, or several cases)."""
    folder.mkdir(parents=True, exist_ok=True)

    def block(value: float, noise: dict) -> dict:
        return {
            "degradation": noise,
            "metrics": {"MPSNR": value, "MSSIM": 0.97, "SAM": 2.5, "ERGAS": 9.0},
            "reference": {"what": "degraded input", "metrics": {"MPSNR": 14.2, "MSSIM": 0.1}},
            "test_images": 2,
        }

    g50 = {"name": "gaussian", "sigma": 50.0}
    report = {
        "hsi_version": "0.1.0",
        "git": "abc1234",
        "task": "denoising",
        "model": {"model": "hsdt_s", "epochs_run": 4},
        "data": {
            "dataset": "icvl",
            "holdout": "collection",
            "crop_size": 64,
            "seed": 0,
            "degradation": {"name": "complex"} if cases else g50,
        },  # fmt: skip
        "timings": {"test_seconds": 3.0, "train_epoch_seconds": [10.0] * 4},
    }
    if cases:
        report["cases"] = [
            {"name": "gaussian50", **block(psnr, g50)},
            {"name": "case5", **block(psnr - 3, {"name": "case", "case": 5})},
        ]
    else:
        report.update(block(psnr, g50))
    path = folder / "restoration_report.json"
    path.write_text(json.dumps(report))
    return path


def write_detection_report(folder: Path, *, dataset: str | None, on_validation: bool) -> Path:
    """A report with the layout DetectionTask writes."""
    folder.mkdir(parents=True, exist_ok=True)
    report = {
        "hsi_version": "0.1.0",
        "git": "abc1234",
        "seed": 3,
        "metrics": {"mAP50_95": 0.5, "mAP50": 0.8, "mAP75": 0.4, "mAP25": 0.9, "point_AP": 0.7},
        "model": "specdetr",
        "data": {
            "dataset": dataset,
            "root": str(folder / "sim_train"),
            "images": 10,
            "train_images": 9,
            "val_images": 1,
            "bands": 30,
            "image_size": [32, 32],
            "test_is_validation": on_validation,
        },  # fmt: skip
        "train_epoch_seconds": [5.0, 5.0],
    }
    path = folder / "detection_report.json"
    path.write_text(json.dumps(report))
    return path


def test_degradation_labels_are_the_published_protocol_names() -> None:
    from hsi.benchmarks.records import degradation_label

    assert degradation_label({"name": "gaussian", "sigma": 30.0}) == "gaussian30"
    assert degradation_label({"name": "blind_gaussian", "sigmas": [10, 70]}) == "gaussian_blind"
    assert degradation_label({"name": "case", "case": 2}) == "complex_stripe"
    assert degradation_label({"name": "bicubic_down", "factor": 4}) == "bicubic_down_x4"
    assert degradation_label(None) is None
    published_protocols = {e.protocol for e in load_published().values()}
    assert {"gaussian30", "gaussian_blind", "complex_stripe"} <= published_protocols


def test_restoration_and_detection_reports_get_their_own_tables(tmp_path: Path, capsys) -> None:
    runs = tmp_path / "runs"
    write_report(runs / "ip_paper" / "version_0", oa=97.0)
    write_restoration_report(runs / "hsdt_icvl" / "version_0", psnr=40.16)
    write_restoration_report(runs / "hsdt_icvl" / "version_1", psnr=41.16)  # 2nd report, seed 0
    write_restoration_report(runs / "hsdt_cases" / "version_0", psnr=40.0, cases=True)
    write_detection_report(
        runs / "specdetr_spod" / "version_0", dataset="spod", on_validation=False
    )
    write_detection_report(runs / "specdetr_sim" / "version_0", dataset=None, on_validation=True)
    (runs / "broken").mkdir()
    (runs / "broken" / "restoration_report.json").write_text("{}")
    out = tmp_path / "out"
    assert main(["benchmark", "--collect", str(runs), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "skipped:" in printed and "no PSNR" in printed  # the broken one, named
    rows = json.loads((out / "benchmark.json").read_text())["rows"]
    assert [r["task"] for r in rows] == ["classification"] + ["restoration"] * 3 + ["detection"] * 2
    by = {(r["label"], r["protocol"]): r for r in rows}

    # the same model, dataset and noise as the paper: compared, SAM (another unit) left out
    g50 = by[("hsdt_icvl", "gaussian50")]
    assert g50["published"]["key"] == "hsdt_s/icvl/gaussian50"
    assert g50["gap"] == {"PSNR": pytest.approx(0.0), "SSIM": pytest.approx(0.97 - 0.985)}
    assert g50["n"] == 1 and g50["duplicates_dropped"] == 1  # the newer report of seed 0 won
    assert g50["no_model_reference"]["PSNR"]["mean"] == pytest.approx(14.2)
    # a report tested under several noises: one row per noise, each with its own paper entry
    mixture = by[("hsdt_cases", "complex_mixture")]
    assert mixture["published"]["key"] == "hsdt_s/icvl/complex_mixture"
    assert mixture["measured"]["PSNR"]["mean"] == pytest.approx(37.0)
    # detection: SPOD is compared with the paper; a run tested on its validation images is
    # flagged leaky and compared with nothing
    spod = by[("specdetr_spod", "spod")]
    assert spod["published"]["key"] == "specdetr/spod/spod" and spod["leaky"] is False
    assert spod["gap"]["mAP50_95"] == pytest.approx(0.5 - 0.856) and spod["seeds"] == [3]
    sim = by[("specdetr_sim", "validation images")]
    assert sim["published"] is None and sim["leaky"] is True and sim["dataset"] == "sim_train"

    md = (out / "benchmark.md").read_text()
    for heading in ("## Classification", "## Restoration", "## Detection"):
        assert heading in md
    assert "| hsdt_icvl | hsdt_s | icvl | gaussian50 | denoising, held-out collection" in md
    assert "| 41.16 | 0.9700 | 2.50 | 14.20 | 41.16 / 0.985 [" in md and "| +0.00 |" in md
    assert "| specdetr_sim | specdetr | sim_train | validation images (leaky) |" in md
    assert "| 0.500 | 0.800 | 0.900 | 0.700 | 0.856 / 0.93 / 0.938 [" in md
    png = (out / "benchmark.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_suite_run_that_wrote_a_restoration_report_counts_as_done(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    suites = _toy_suite(tmp_path)
    out = tmp_path / "out"
    suite = load_suites(suites)["toy"]
    write_restoration_report(run_dir(out, suite.runs[0], 0), psnr=38.5)
    calls: list[list[str]] = []
    monkeypatch.setattr(running, "_fit", _fake_fit(calls))
    argv = ["benchmark", "--suite", "toy", "--suites-file", str(suites), "--out", str(out)]
    assert main([*argv, "--seeds", "0"]) == 0
    assert calls == []
    assert "already done (PSNR (dB) 38.50), skipped" in capsys.readouterr().out


def test_the_run_lock_works_without_hard_links(tmp_path: Path, monkeypatch) -> None:
    """File systems without hard links (FAT, some network mounts) fall back to an
    exclusive create: the lock still excludes a second holder."""

    def no_links(src, dst) -> None:  # noqa: ANN001
        raise PermissionError("operation not permitted")

    monkeypatch.setattr(run_lock.os, "link", no_links)
    with run_lock.claim_run(tmp_path / "run") as owner:
        assert owner is None
        held = json.loads((tmp_path / "run" / run_lock.LOCK_NAME).read_text())
        assert held["pid"] == os.getpid()
        assert not run_lock._create_with_content(
            tmp_path / "run" / run_lock.LOCK_NAME, run_lock.LockOwner(1, "h", "t")
        )
    assert [p.name for p in (tmp_path / "run").iterdir()] == []
