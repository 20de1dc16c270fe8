"""The ``hsi`` command line: LightningCLI for fit/validate/test/predict, plus ``datasets``,
``convert`` and whole-scene ``predict --input``.

The CLI only wires registry models, tasks and data modules together; every option is a
constructor argument of one of them, so YAML configs and command-line overrides are the
same thing (``--data.protocol random``, ``--trainer.max_epochs 5``).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from hsi.deadline import EXIT_TIME_LIMIT, TimeLimitReached
from hsi.errors import ConfigError, HsiError
from hsi.provenance import git_commit

log = logging.getLogger("hsi")


def _build_cli_class() -> type:
    # Lightning is imported lazily so `hsi datasets list` starts fast.
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

    from hsi.callbacks import ResumeCheckpoint, StopBeforeDeadline
    from hsi.deadline import parse_deadline

    class HsiCLI(LightningCLI):
        """LightningCLI with hsi's defaults: best-on-validation checkpoints, test after fit."""

        def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
            parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
            parser.set_defaults(
                {
                    "checkpoint.monitor": "val/OA",
                    "checkpoint.mode": "max",
                    "checkpoint.filename": "best-epoch{epoch:03d}",
                    "checkpoint.auto_insert_metric_name": False,
                    # Lightning's save_last only copies a checkpoint when one is saved, so
                    # last.ckpt would just duplicate the best (60 MB with optimizer state)
                    "checkpoint.save_last": False,
                }
            )
            parser.add_argument(
                "--resume_dir",
                type=str | None,
                default=None,
                help="fit: keep a resume checkpoint (DIR/last.ckpt) after every epoch and, "
                "when one is there, continue from it; removed once the run finishes. For "
                "runs that may be killed (time limits, closed sessions)",
            )
            parser.add_argument(
                "--stop_by",
                type=str | None,
                default=None,
                help="fit with --resume_dir: do not start an epoch that would end after this "
                "time (ISO 8601, e.g. 2026-11-24T23:25, or a duration from now: 2h20m, 90m); "
                f"exit code {EXIT_TIME_LIMIT}, and the same command goes on from there",
            )
            parser.add_argument(
                "--test_after_fit",
                type=bool,
                default=True,
                help="after `fit`, test the best (validation-selected) checkpoint and write "
                "the report",
            )

        def _option(self, name: str) -> Any:
            """One of the arguments added above, as the subcommand's config gives it."""
            return self.config[self.subcommand].get(name) if self.subcommand else None

        def instantiate_trainer(self, **kwargs: Any) -> L.Trainer:
            trainer = super().instantiate_trainer(**kwargs)
            resume_dir = self._option("resume_dir")
            if resume_dir and self.subcommand == "fit":
                # appended last: it must save after the best-model checkpoint's bookkeeping
                trainer.callbacks.append(ResumeCheckpoint(resume_dir, self._model_fingerprint()))
            stop_by = self._option("stop_by")
            if stop_by and self.subcommand == "fit":
                if not resume_dir:
                    raise ConfigError(
                        "--stop_by stops a run to be continued later: give --resume_dir DIR "
                        "too, or the epochs trained so far would be lost"
                    )
                trainer.callbacks.append(StopBeforeDeadline(parse_deadline(stop_by)))
            return trainer

        def _model_fingerprint(self) -> dict[str, Any]:
            """The config's model section as plain JSON (where reports go may change)."""
            section = self.config[self.subcommand]["model"]
            plain = json.loads(json.dumps(section.as_dict(), default=str))
            (plain.get("init_args") or {}).pop("report_dir", None)
            return plain

        def _resume_callback(self) -> ResumeCheckpoint | None:
            found = [c for c in self.trainer.callbacks if isinstance(c, ResumeCheckpoint)]
            return found[0] if found else None

        def before_fit(self) -> None:
            resume = self._resume_callback()
            fit_config = self.config_init["fit"]
            if resume is None or not resume.path.is_file() or fit_config.get("ckpt_path"):
                return
            checkpoint = resume.read()
            resume.check_same_run(checkpoint)
            log.info("resuming an interrupted run from %s", resume.path)
            fit_config["ckpt_path"] = str(resume.path)
            # an auto-numbered log folder (CSV/TensorBoard) goes on in the interrupted run's
            # folder instead of a new one; a version the config names is left alone
            logger, version = self.trainer.logger, resume.saved_logger_version(checkpoint)
            if version is not None and getattr(logger, "_version", "") is None:
                logger._version = version  # type: ignore[union-attr]
            resume.keep_logged_metrics(logger, checkpoint)

        def after_fit(self) -> None:
            self._test_after_fit()
            resume = self._resume_callback()
            if resume is not None and not self.trainer.interrupted:
                resume.remove()

        def _test_after_fit(self) -> None:
            if not self.config[self.subcommand].get("test_after_fit", True):
                return
            if self.trainer.checkpoint_callback is None or not getattr(
                self.trainer.checkpoint_callback, "best_model_path", ""
            ):
                ckpt = None
            else:
                ckpt = "best"
            self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=ckpt)

    HsiCLI.base_module = L.LightningModule  # type: ignore[attr-defined]
    return HsiCLI


def _build_parser_class() -> type:
    from lightning.pytorch.cli import LightningArgumentParser

    class HsiArgumentParser(LightningArgumentParser):
        """jsonargparse's parser, with errors a user can act on: the problem and, for a
        mistyped option, the closest valid names, instead of a 200-line usage dump above
        the one line that matters."""

        def error(self, message: str, ex: Exception | None = None):  # type: ignore[override]
            if not self.exit_on_error:
                return super().error(message, ex)
            parser = getattr(ex, "subcommand_parser", None) or self
            prog = parser.prog.replace(" [options]", "")
            text = f"error: {message.rstrip()}\n"
            hint = "\n".join(
                h
                for h in (option_suggestions(message, _option_names(parser)), config_hints(message))
                if h
            )
            if hint:
                text += hint + "\n"
            sys.stderr.write(text + f"({prog} --help lists every option)\n")
            self.exit(2)

    return HsiArgumentParser


def _option_names(parser: Any) -> list[str]:
    return [s for s in getattr(parser, "_option_string_actions", {}) if s.startswith("--")]


def option_suggestions(message: str, options: list[str]) -> str:
    """``did you mean ...`` for the mistyped names in a jsonargparse error message: an
    option a class does not accept (matched against that class's constructor) or an
    unrecognised command-line flag (matched against the parser's options)."""
    import difflib
    import importlib
    import inspect
    import re

    hints = []
    for cls_path, bad in re.findall(
        r"class_path '([\w.]+)':\s*Option '(\w+)' is not accepted", message
    ):
        module, _, name = cls_path.rpartition(".")
        try:
            cls = getattr(importlib.import_module(module), name)
            params = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
        except (ImportError, AttributeError, TypeError, ValueError):
            continue
        close = difflib.get_close_matches(bad, params, n=3, cutoff=0.6)
        if close:
            hints.append(f"{name} takes no '{bad}': did you mean {', '.join(map(repr, close))}?")
    unrecognised = re.search(r"unrecognized arguments:(.*)", message, re.IGNORECASE)
    flags = re.findall(r"(--[\w.]+)", unrecognised[1] if unrecognised else "")
    # a config file's key: "Subcommand 'fit' does not accept option 'trainer.max_epoch'"
    flags += [f"--{key}" for key in re.findall(r"does not accept option '([\w.]+)'", message)]
    for flag in flags:
        close = difflib.get_close_matches(flag, options, n=3, cutoff=0.75)
        if close:
            names = ", ".join(c.removeprefix("--") for c in close)
            hints.append(f"no option {flag.removeprefix('--')}: did you mean {names}?")
    return "\n".join(hints)


def config_hints(message: str, cwd: Path | None = None) -> str:
    """What to do about a missing ``--config``: which configs exist, and where.

    Why: ``configs/`` lives in the hsi repository, so a README command run from another
    folder, a mistyped file name, or a forgotten ``--config`` all end in jsonargparse errors
    ("File does not exist", "required: fit.data, fit.model") that do not say so.
    """
    import difflib
    import re

    from hsi.pretrained.index import REPO_ROOT as root  # where configs/ is in a checkout

    cwd = cwd or Path.cwd()
    if re.search(r"arguments are required: \w+\.(data|model)", message):
        return (
            "pass --config CONFIG.yaml: configs/ in the hsi repository has one per model, "
            "dataset and protocol, e.g. configs/hybridsn/indian_pines_disjoint.yaml"
        )
    missing = re.search(r"File does not exist: '([^']+\.ya?ml)'", message)
    if not missing:
        return ""
    path = Path(missing[1])
    try:
        relative = path.relative_to(cwd)
    except ValueError:
        relative = None
    if relative is not None and cwd != root and (root / relative).is_file():
        return (
            f"{relative} is in the hsi repository ({root}): run hsi from there, or pass "
            f"--config {root / relative}"
        )
    wanted = [str(relative)] if relative is not None else []
    if path.is_relative_to(root):
        wanted.append(str(path.relative_to(root)))
    for base in dict.fromkeys((cwd, root)):
        known = [str(c.relative_to(base)) for c in base.glob("configs/**/*.y*ml")]
        for name in wanted:
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.8)
            if close:
                prefix = "" if base == cwd else f"{base}/"
                return f"did you mean --config {prefix}{close[0]}?"
    return ""


def run_lightning(args: list[str] | None = None) -> Any:
    """Run the LightningCLI part (``fit``/``validate``/``test``/``predict``)."""
    import lightning as L

    cli_class = _build_cli_class()
    return cli_class(
        L.LightningModule,
        L.LightningDataModule,
        parser_class=_build_parser_class(),
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=args,
        save_config_kwargs={"overwrite": True},
        trainer_defaults={"default_root_dir": "runs"},
        auto_configure_optimizers=False,
    )


OVERVIEW = """hsi — hyperspectral model zoo

  hsi fit|validate|test|predict --config CONFIG.yaml [--section.key value ...]
                                   train / evaluate with LightningCLI (configs/ has examples);
                                   fit --resume_dir DIR: a killed run goes on from its last epoch
                                   (--stop_by TIME: stop before an epoch that would end later)
  hsi predict --ckpt CKPT --input SCENE.tif --output MAP.tif
                                   classify (or restore, or detect: the checkpoint says) a
                                   whole GeoTIFF/ENVI scene; georeferenced map / cube /
                                   GeoJSON points out
  hsi predict --model hirdiff|dds2m --input NOISY.tif --output RESTORED.tif
              [--model-kwargs '{"steps": 20, "seed": 0}'] [--scale 4]
                                   restore a scene with a training-free diffusion method
                                   (no checkpoint; denoising, or super-resolution by --scale)
  hsi datasets list|info|verify|download
                                   the dataset registry (data root: --root, $HSI_DATA)
  hsi convert IN OUT.tif           any cube hsi reads (.mat, .npy, ENVI) to GeoTIFF
  hsi benchmark --suite S|--quick|--collect DIR  measured vs published OA/AA/kappa
  hsi simulate --dataset D --classes A,B --out DIR
                                   SPOD-style sub-pixel targets implanted in a real scene
  hsi detect --input SCENE.tif --library LIB.csv --detector ace --threshold T --output D.geojson
                                   classical detection (RX/CEM/AMF/ACE), GeoJSON points out
  hsi spod-convert --root SPOD_30b_8c --split train --out DIR
                                   the SpecDETR SPOD benchmark in hsi's detection format
"""


def convert_main(argv: list[str]) -> int:
    """``hsi convert IN OUT.tif``: any cube hsi reads (.mat, .npy, ENVI, GeoTIFF) to GeoTIFF."""
    import argparse

    from hsi.data.readers import read_cube
    from hsi.data.writers import write_geotiff

    parser = argparse.ArgumentParser(
        prog="hsi convert",
        description="Write a cube that hsi can read as a tiled, compressed GeoTIFF "
        "(wavelengths, no-data, CRS and transform kept when the source has them).",
    )
    parser.add_argument("input", help="a .mat, .npy, ENVI .hdr or GeoTIFF file")
    parser.add_argument("output", help="the GeoTIFF to write")
    parser.add_argument("--variable", help="variable name inside a .mat file (auto if omitted)")
    parser.add_argument(
        "--layout", help="axis order of a .mat/.npy array: hwb (default, MATLAB) or bhw"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    args = parser.parse_args(argv)
    cube = read_cube(args.input, args.variable, layout=args.layout)
    path = write_geotiff(args.output, cube, overwrite=args.overwrite)
    print(f"wrote {path}: {cube.bands} bands, {cube.height}x{cube.width}, {cube.data.dtype}")
    return 0


def _configure_logging() -> None:
    """Show hsi's INFO messages; Lightning configures its own logger, so the root is left alone
    (configuring it too would print Lightning's lines twice)."""
    logger = logging.getLogger("hsi")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def _checkpoint_task(argv: list[str]) -> str:
    """Which task wrote the ``--ckpt`` checkpoint: ``restoration`` (restored cube out),
    ``detection`` (GeoJSON points out) or ``classification`` (class map out)."""
    ckpt = None
    for i, arg in enumerate(argv):
        if arg == "--ckpt" and i + 1 < len(argv):
            ckpt = argv[i + 1]
        elif arg.startswith("--ckpt="):
            ckpt = arg.split("=", 1)[1]
    if ckpt is None:
        return "classification"
    from hsi.tasks.checkpointing import checkpoint_task

    return checkpoint_task(ckpt)


PREDICT_HELP = """hsi predict: whole-scene inference, GeoTIFF/ENVI in, georeferenced output out.
The options below are a classifier's (class map out). A restoration or detection checkpoint
has its own: hsi predict --ckpt CKPT --input SCENE --help. LightningCLI's predict over a data
module: hsi predict --config CONFIG.yaml --help.
"""


def _flags(argv: list[str]) -> set[str]:
    """The options named in ``argv`` (``--key`` of ``--key=value`` too)."""
    return {a.split("=", 1)[0] for a in argv if a.startswith("-")}


def _asks_predict_help(argv: list[str]) -> bool:
    """``hsi predict --help`` with neither ``--input`` (scene prediction, whose own parser
    answers) nor ``--config`` (LightningCLI's predict): the user wants scene prediction's
    options, not several hundred lines of Lightning's."""
    flags = _flags(argv)
    return (
        argv[:1] == ["predict"]
        and bool(flags & {"-h", "--help"})
        and not flags & {"--input", "--config", "-c"}
    )


def _is_scene_prediction(argv: list[str]) -> bool:
    """``hsi predict`` with ``--input``, or with ``--ckpt``/``--output`` and no ``--config``:
    scene prediction, whose parser names a missing ``--input``; LightningCLI's predict
    would instead ask for a model and data module the user never meant to give."""
    flags = _flags(argv)
    if argv[:1] != ["predict"]:
        return False
    return "--input" in flags or bool(
        flags & {"--ckpt", "--output"} and not flags & {"--config", "-c"}
    )


def _names_model_without_ckpt(argv: list[str]) -> bool:
    """``hsi predict --model NAME --input ...`` with no ``--ckpt``: a training-free restorer
    (HIR-Diff, DDS2M) that needs no checkpoint, so the restoration CLI takes it."""
    flags = _flags(argv)
    return "--model" in flags and "--ckpt" not in flags


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``hsi`` console script."""
    # Lightning's own calls into jsonargparse raise deprecation notices users cannot act on
    os.environ.setdefault("JSONARGPARSE_DEPRECATION_WARNINGS", "off")
    from_console = argv is None
    argv = sys.argv[1:] if argv is None else argv
    _configure_logging()
    try:
        if not argv or argv[0] in ("-h", "--help"):
            print(OVERVIEW)
            if not argv:
                return 0
        if argv and argv[0] == "datasets":
            from hsi.data.datasets_cli import datasets_main

            return datasets_main(argv[1:])
        if argv and argv[0] == "convert":
            return convert_main(argv[1:])
        if argv and argv[0] == "simulate":
            from hsi.detection.simulate_cli import simulate_main

            return simulate_main(argv[1:])
        if argv and argv[0] == "detect":
            from hsi.detection.detect_cli import detect_main

            return detect_main(argv[1:])
        if argv and argv[0] == "spod-convert":
            from hsi.detection.spod import spod_main

            return spod_main(argv[1:])
        if argv and argv[0] == "benchmark":
            from hsi.benchmarks.runner import benchmark_main

            git_commit()  # reports name the code loaded now, not a commit made mid-run
            return benchmark_main(argv[1:])
        if _asks_predict_help(argv):
            from hsi.inference import scene_main

            print(PREDICT_HELP)
            return scene_main(["--help"])
        if _is_scene_prediction(argv):
            # whole-scene inference from a checkpoint (hsi.inference); `predict` without
            # --input stays LightningCLI's predict over a data module
            task = _checkpoint_task(argv)
            if task == "restoration" or _names_model_without_ckpt(argv):
                from hsi.inference.restoration import restore_main

                return restore_main(argv[1:])
            if task == "detection":
                from hsi.detection.scene import detect_main

                return detect_main(argv[1:])
            from hsi.inference import scene_main

            return scene_main(argv[1:])
        git_commit()  # reports name the code loaded now, not a commit made mid-run
        # LightningCLI reads sys.argv itself; passing it too only triggers a warning
        run_lightning(None if from_console else argv)
        return 0
    except HsiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except TimeLimitReached as stopped:  # hsi fit --stop_by: resumable, not failed
        print(f"hsi fit: {stopped}", file=sys.stderr)
        return EXIT_TIME_LIMIT


if __name__ == "__main__":
    sys.exit(main())
