"""`hsi fit --resume_dir`: a run killed between epochs continues where it stopped."""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml
from lightning.pytorch.callbacks import Callback
from test_cli_e2e import _config, _write_scene

from hsi import run_lock
from hsi.callbacks import ResumeCheckpoint, StopBeforeDeadline
from hsi.cli import main
from hsi.deadline import EXIT_TIME_LIMIT


class EpochProbe(Callback):
    """Test helper: records the epochs trained (and the best score at the start) into JSON
    files; optionally dies at the start of one epoch, the way a killed process would (no
    after-fit code runs): by an exception, or by one SIGTERM, as ``timeout`` sends it."""

    def __init__(
        self,
        record: str,
        crash_at: int | None = None,
        sigterm_once: str | None = None,
        swallow: bool = False,
    ) -> None:
        self.record = Path(record)
        self.crash_at = crash_at
        self.sigterm_once = Path(sigterm_once) if sigterm_once else None
        self.swallow = swallow  # lose the handler's exception, as some C code does

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        score = trainer.checkpoint_callback.best_model_score
        best = self.record.with_suffix(".best")
        best.write_text(json.dumps(None if score is None else float(score)))

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch == self.crash_at:
            if self.sigterm_once is None:
                raise RuntimeError("killed")
            if not self.sigterm_once.exists():  # `timeout` sends SIGTERM, once
                self.sigterm_once.touch()
                try:
                    signal.raise_signal(signal.SIGTERM)
                except BaseException:
                    if not self.swallow:
                        raise
        seen = json.loads(self.record.read_text()) if self.record.is_file() else []
        self.record.write_text(json.dumps([*seen, trainer.current_epoch]))


def _probe(record: Path, crash_at: int | None = None) -> str:
    spec = {"class_path": "test_resume.EpochProbe", "init_args": {"record": str(record)}}
    if crash_at is not None:
        spec["init_args"]["crash_at"] = crash_at
    return "--trainer.callbacks=" + json.dumps([spec])


def test_killed_run_resumes_from_its_last_epoch(tmp_path: Path, one_thread) -> None:
    image, gt = _write_scene(tmp_path)
    cfg = _config(tmp_path, image, gt)
    resume = tmp_path / "resume"
    common = ["fit", "--config", str(cfg), "--trainer.max_epochs=4", f"--resume_dir={resume}"]
    first, second = tmp_path / "first.json", tmp_path / "second.json"

    # killed at the start of epoch 2: epochs 0 and 1 were trained and saved
    with pytest.raises(RuntimeError, match="killed"):
        main([*common, _probe(first, crash_at=2)])
    assert json.loads(first.read_text()) == [0, 1]
    saved = torch.load(resume / "last.ckpt", map_location="cpu", weights_only=True)
    assert saved["epoch"] == 1 and len(saved["hsi_epoch_seconds"]) == 2
    assert len(saved["hsi_epoch_cpu_seconds"]) == 2
    best_state = next(v for k, v in saved["callbacks"].items() if "val/OA" in k)
    first_best = float(best_state["best_model_score"])
    first_best_epoch = int(Path(best_state["best_model_path"]).stem.split("epoch")[1])
    run = tmp_path / "runs" / "toy" / "version_0"
    assert not (run / "test_report.json").exists()

    # the same command again trains only epochs 2 and 3, then tests and cleans up
    assert main([*common, _probe(second)]) == 0
    assert json.loads(second.read_text()) == [2, 3]
    # the best-model checkpoint went on from the first segment's best score
    assert json.loads(second.with_suffix(".best").read_text()) == pytest.approx(first_best)
    # in the interrupted run's auto-numbered log folder, not a new one
    assert not (tmp_path / "runs" / "toy" / "version_1").exists()
    report = json.loads((run / "test_report.json").read_text())
    assert report["epochs_run"] == 4  # the timings of the killed segment travelled along
    assert len(report["timings"]["train_epoch_seconds"]) == 4
    cpu = report["timings"]["train_epoch_cpu_seconds"]  # travelled along too
    assert len(cpu) == 4 and all(c > 0 for c in cpu)
    # the learning curve covers both segments, each epoch once (Lightning's CSV logger
    # deletes metrics.csv when it reopens the folder; the finished epochs' rows are put back)
    with (run / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    val_rows = [(int(r["epoch"]), float(r["val/OA"])) for r in rows if r["val/OA"]]
    assert [e for e, _ in val_rows] == [0, 1, 2, 3]
    val = dict(val_rows)
    assert val[first_best_epoch] == pytest.approx(first_best, abs=1e-4)
    assert any(r["test/OA"] for r in rows)  # the test after fit logged into the same file
    # the best epoch is chosen over both segments: the first segment's best score survived
    best = max(val.values())
    assert report["checkpoint_epoch"] == min(e for e, v in val.items() if v == best)
    assert not resume.exists()


def test_resume_file_is_replaced_whole_each_epoch(tmp_path: Path, one_thread) -> None:
    image, gt = _write_scene(tmp_path)
    cfg = _config(tmp_path, image, gt)
    resume = tmp_path / "resume"
    with pytest.raises(RuntimeError, match="killed"):
        main(
            [
                "fit",
                "--config",
                str(cfg),
                f"--resume_dir={resume}",
                _probe(tmp_path / "seen.json", crash_at=1),
            ]
        )
    # one file, no temporary left beside it
    assert sorted(p.name for p in resume.iterdir()) == [ResumeCheckpoint.FILENAME]


def test_finished_run_leaves_no_resume_file_and_plain_fit_writes_none(
    tmp_path: Path, one_thread
) -> None:
    image, gt = _write_scene(tmp_path)
    cfg = _config(tmp_path, image, gt)
    resume = tmp_path / "resume"
    assert (
        main(["fit", "--config", str(cfg), "--trainer.max_epochs=1", f"--resume_dir={resume}"]) == 0
    )
    assert not resume.exists()
    assert main(["fit", "--config", str(cfg), "--trainer.max_epochs=1"]) == 0
    assert not list(tmp_path.rglob(ResumeCheckpoint.FILENAME))


@pytest.mark.parametrize("swallow", [False, True])
def test_benchmark_suite_stopped_by_sigterm_continues_its_run(
    tmp_path: Path, one_thread, swallow: bool
) -> None:
    image, gt = _write_scene(tmp_path)
    cfg = _config(tmp_path, image, gt)
    record, marker = tmp_path / "epochs.json", tmp_path / "killed"
    probe = {
        "class_path": "test_resume.EpochProbe",
        "init_args": {
            "record": str(record),
            "crash_at": 1,
            "sigterm_once": str(marker),
            "swallow": swallow,
        },
    }
    run = {
        "name": "toy_run",
        "config": str(cfg),
        "seeds": [0],
        "overrides": ["--trainer.callbacks=" + json.dumps([probe])],
    }
    suites = tmp_path / "suites.yaml"
    suites.write_text(yaml.safe_dump({"suites": {"toy": {"description": "x", "runs": [run]}}}))
    out = tmp_path / "out"
    argv = ["benchmark", "--suite", "toy", "--suites-file", str(suites), "--out", str(out)]

    # SIGTERM at the start of epoch 1, as `timeout` would send it: the suite stops (128 + 15);
    # a swallowed SuiteStopped lets epoch 1 begin until Lightning's own check ends the fit
    assert main(argv) == 143
    target = out / "toy_run" / "seed0"
    assert (target / "resume" / "last.ckpt").is_file()
    assert not (target / "test_report.json").exists()
    assert not (target / "benchmark_failed.json").exists()  # stopped, not failed
    begun = [0, 1] if swallow else [0]
    assert json.loads(record.read_text()) == begun

    # the same command continues with epochs 1 and 2, then tests
    assert main(argv) == 0
    assert json.loads(record.read_text()) == [*begun, 1, 2]
    report = json.loads((target / "test_report.json").read_text())
    assert report["epochs_run"] == 3
    sidecar = json.loads((target / "benchmark_run.json").read_text())
    assert sidecar["resumed"] is True
    assert not (target / "resume").exists()


def test_a_suite_under_a_time_limit_stops_between_epochs_and_goes_on_later(
    tmp_path: Path, one_thread, monkeypatch, capsys
) -> None:
    image, gt = _write_scene(tmp_path)
    cfg = _config(tmp_path, image, gt)
    run = {"name": "toy_run", "config": str(cfg), "seeds": [0], "overrides": []}
    suites = tmp_path / "suites.yaml"
    suites.write_text(yaml.safe_dump({"suites": {"toy": {"description": "x", "runs": [run]}}}))
    out = tmp_path / "out"
    argv = ["benchmark", "--suite", "toy", "--suites-file", str(suites), "--out", str(out)]
    # once an epoch has been timed, each is taken to last an hour: 30 minutes leave room
    # for the first epoch only
    with monkeypatch.context() as patch:
        patch.setattr(
            StopBeforeDeadline,
            "next_epoch_estimate",
            lambda self, module: 3600.0 if self._durations else None,
        )
        assert main([*argv, "--time-limit", "30m"]) == EXIT_TIME_LIMIT
    printed = capsys.readouterr().out
    assert "toy_run seed 0: stopped by its time limit" in printed
    assert "this one goes on from its last finished epoch" in printed
    target = out / "toy_run" / "seed0"
    saved = torch.load(target / "resume" / "last.ckpt", map_location="cpu", weights_only=True)
    assert saved["epoch"] == 0  # epoch 0 finished and saved; epoch 1 was never begun
    assert not (target / "test_report.json").exists()
    assert not (target / "benchmark_failed.json").exists()  # stopped, not failed

    # the same command with time to spare trains epochs 1 and 2 (measured: a toy's epochs
    # fit in an hour), then tests
    assert main([*argv, "--time-limit", "1h"]) == 0
    report = json.loads((target / "test_report.json").read_text())
    assert report["epochs_run"] == 3
    assert not (target / "resume").exists()
    with (target / "metrics.csv").open() as f:  # each epoch's validation row, once
        assert [int(r["epoch"]) for r in csv.DictReader(f) if r["val/OA"]] == [0, 1, 2]
    # a time limit with nothing to resume into would lose the run: refused
    plain = ["fit", "--config", str(cfg), "--stop_by=1h"]
    assert main(plain) == 2
    assert "give --resume_dir" in capsys.readouterr().err


def test_resume_file_of_another_model_or_a_corrupt_one_is_a_clear_error(
    tmp_path: Path, one_thread, capsys
) -> None:
    image, gt = _write_scene(tmp_path)
    cfg = _config(tmp_path, image, gt)
    resume = tmp_path / "resume"
    common = ["fit", "--config", str(cfg), f"--resume_dir={resume}"]
    with pytest.raises(RuntimeError, match="killed"):
        main([*common, _probe(tmp_path / "seen.json", crash_at=1)])

    # the same folder, another model configuration
    assert main([*common, '--model.init_args.model_kwargs={"dropout": 0.1}']) == 2
    err = capsys.readouterr().err
    assert "another model configuration" in err
    assert "init_args.model_kwargs.dropout: '(unset)' there, 0.1 now" in err

    # a truncated file (a full disk, a copy cut short)
    data = (resume / "last.ckpt").read_bytes()
    (resume / "last.ckpt").write_bytes(data[: len(data) // 2])
    assert main(common) == 2
    assert "cannot be read" in capsys.readouterr().err


def test_a_damaged_csv_log_does_not_stop_the_resume(tmp_path: Path, one_thread, caplog) -> None:
    """The learning curve is put back when it can be; a damaged one only costs the curve."""
    image, gt = _write_scene(tmp_path)
    cfg = _config(tmp_path, image, gt)
    resume = tmp_path / "resume"
    common = ["fit", "--config", str(cfg), "--trainer.max_epochs=3", f"--resume_dir={resume}"]
    with pytest.raises(RuntimeError, match="killed"):
        main([*common, _probe(tmp_path / "first.json", crash_at=1)])
    log_csv = tmp_path / "runs" / "toy" / "version_0" / "metrics.csv"
    log_csv.write_text("epoch,step,val/OA\n0,3,50.0,unexpected,extra\n")  # a damaged row
    with caplog.at_level("WARNING", logger="hsi.callbacks"):
        assert main([*common, _probe(tmp_path / "second.json")]) == 0
    assert "was not put back" in caplog.text
    with log_csv.open() as f:
        epochs = {int(r["epoch"]) for r in csv.DictReader(f) if r.get("val/OA")}
    assert epochs == {1, 2}  # the resumed segment's rows, under a proper header


def test_a_resume_dir_in_use_by_another_run_is_a_clear_error(
    tmp_path: Path, one_thread, capsys, dead_pid
) -> None:
    """Two `hsi fit` on one --resume_dir would overwrite each other's resume file and logs."""
    image, gt = _write_scene(tmp_path)
    cfg = _config(tmp_path, image, gt)
    resume = tmp_path / "resume"
    resume.mkdir()
    lock = resume / run_lock.LOCK_NAME
    held = {"pid": os.getppid(), "host": socket.gethostname(), "since": "2026-11-24T09:00:00"}
    lock.write_text(json.dumps(held))  # a live process (this test's parent) trains there
    argv = ["fit", "--config", str(cfg), "--trainer.max_epochs=1", f"--resume_dir={resume}"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"--resume_dir {resume} is in use by another run (pid {os.getppid()} on" in err
    assert json.loads(lock.read_text()) == held  # the other run's lock is left alone
    assert sorted(p.name for p in resume.iterdir()) == [run_lock.LOCK_NAME]

    # once its owner is gone, the lock is stale: the run trains, and cleans up after itself
    lock.write_text(json.dumps({**held, "pid": dead_pid}))
    assert main(argv) == 0
    assert not resume.exists()
