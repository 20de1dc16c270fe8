"""The README's commands and file references stay true as the code changes.

Why: the README is what a newcomer pastes. A renamed config, option or suite breaks those
commands without breaking any other test. Each command here is parsed by the parser that
would run it, which checks its options, choices, required arguments and config keys. Nothing
is trained or read: the argparse commands stop right after parsing, and the LightningCLI
commands use ``--print_config``. Every repository path the README names must exist.
"""

from __future__ import annotations

import argparse
import itertools
import re
import runpy
import shlex
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")

# top-level folders whose files the README names as repository paths
_REPO_DIRS = ("configs", "splits", "checkpoints", "benchmarks", "examples", "notebooks", "hsi")
_PATH = re.compile(rf"(?<![\w/.~-])(?:{'|'.join(_REPO_DIRS)})/[\w.{{}},/-]*[\w/}}]")
_ENV_ASSIGNMENT = re.compile(r"^[A-Z_][A-Z0-9_]*=")
# what the README's commands write (git-ignored outputs), not files of the repository
_OUTPUT_DIRS = ("benchmarks/results/",)
# placeholders such as best-epochNNN.ckpt or runs/NAME/
_PLACEHOLDER = re.compile(r"[A-Z]{3,}")


def _expand_braces(text: str) -> list[str]:
    """``a_{x,y}.yaml`` -> ``a_x.yaml``, ``a_y.yaml`` (shell brace expansion, one level)."""
    parts = re.split(r"\{([^{}]*)\}", text)
    choices = [[p] if i % 2 == 0 else p.split(",") for i, p in enumerate(parts)]
    return ["".join(combo) for combo in itertools.product(*choices)]


def readme_paths() -> list[str]:
    """Every repository path the README names, braces expanded (outputs and placeholders
    left out)."""
    found = {p for match in _PATH.findall(README) for p in _expand_braces(match)}
    return sorted(p for p in found if not p.startswith(_OUTPUT_DIRS) and not _PLACEHOLDER.search(p))


def readme_commands() -> list[list[str]]:
    """The ``hsi ...`` and ``python ...`` commands of the README's shell blocks, as argv
    lists (continuation lines joined, comments and leading ``VAR=value`` assignments
    dropped), and the whole ``hsi fit``/``hsi test`` commands its prose quotes."""
    commands = []
    for block in re.findall(r"```(?:bash|sh|console)\n(.*?)```", README, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            argv = shlex.split(line, comments=True)
            while argv and _ENV_ASSIGNMENT.match(argv[0]):
                argv = argv[1:]
            is_script = argv[:1] == ["python"] and argv[1:2] != ["-m"]
            if argv[:1] == ["hsi"] or is_script or argv[:3] == ["python", "-m", "hsi.pretrained"]:
                commands.append(argv)
    # whole `hsi fit|test --config ...` commands quoted in the prose, braces expanded
    for span in re.findall(r"`(hsi (?:fit|test) --config [^`]*)`", README):
        commands.extend(shlex.split(c) for c in _expand_braces(span))
    return commands


def _command_id(argv: list[str]) -> str:
    return " ".join(argv)[:70]


class _Parsed(Exception):
    """Raised in place of running a command once its arguments have parsed."""


@pytest.fixture
def parse_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Make every argparse ``parse_args`` stop the command right after a successful parse."""
    original = argparse.ArgumentParser.parse_args

    def parse_then_stop(self, args=None, namespace=None):  # noqa: ANN001, ANN202
        original(self, args, namespace)  # a bad option exits with argparse's status 2
        raise _Parsed

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_then_stop)
    yield


def _parses(run: Callable[[], object]) -> tuple[bool, str]:
    """Whether ``run`` parsed its arguments without error (and what went wrong if not)."""
    try:
        run()
    except _Parsed:
        return True, ""
    except SystemExit as exc:
        return exc.code in (0, None), f"exited with {exc.code}"
    return False, "the command ran past its argument parsing"


def _scene_predict_mains() -> list[Callable[[list[str]], int]]:
    """The three ``hsi predict --input`` front-ends (which one runs depends on what the
    checkpoint holds, which the README's placeholder paths do not say)."""
    from hsi.detection.scene import detect_main
    from hsi.inference.cli import scene_main
    from hsi.inference.restoration import restore_main

    return [scene_main, restore_main, detect_main]


def _check_suite_names(argv: list[str]) -> None:
    """``--suite`` and ``--runs`` name a shipped suite and its runs (checked after parsing)."""
    from hsi.benchmarks import load_suites

    suites = load_suites()
    suite = argv[argv.index("--suite") + 1]
    assert suite in suites, f"README names an unknown suite {suite!r}"
    if "--runs" in argv:
        names = {run.name for run in suites[suite].runs}
        for name in itertools.takewhile(
            lambda a: not a.startswith("--"), argv[argv.index("--runs") + 1 :]
        ):
            assert name in names, f"README names an unknown run {name!r} of {suite}"


def test_readme_names_only_existing_files() -> None:
    paths = readme_paths()
    assert "configs/hybridsn/indian_pines_disjoint.yaml" in paths  # the scan finds paths
    missing = [p for p in paths if not (ROOT / p).exists()]
    assert not missing, f"README names files that do not exist: {missing}"


def test_readme_has_the_main_job() -> None:
    """Train on Indian Pines and predict a GeoTIFF: the brief's main job is shown."""
    commands = [" ".join(c) for c in readme_commands()]
    assert any(c.startswith("hsi fit --config configs/hybridsn/indian_pines") for c in commands)
    assert any(c.startswith("hsi predict --ckpt") and "--input" in c for c in commands)


@pytest.mark.parametrize("argv", readme_commands(), ids=_command_id)
def test_readme_command_parses(
    argv: list[str],
    parse_only: None,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from hsi.cli import main, run_lightning

    monkeypatch.chdir(ROOT)  # the README's paths are relative to the repository root

    if argv[0] == "python" and argv[1:3] == ["-m", "hsi.pretrained"]:
        from hsi.pretrained.cli import main as pretrained_main

        ok, why = _parses(lambda: pretrained_main(argv[3:]))
    elif argv[0] == "python":
        script = ROOT / argv[1]
        assert script.is_file(), f"{argv[1]} does not exist"
        # a script without an argument parser would run in full here: only parse ones that have
        assert "parse_args(" in script.read_text(encoding="utf-8"), f"{argv[1]}: no argparse"
        saved = sys.argv
        sys.argv = [str(script), *argv[2:]]
        try:
            ok, why = _parses(lambda: runpy.run_path(str(script), run_name="__main__"))
        finally:
            sys.argv = saved
    elif argv[1] in ("fit", "validate", "test") or (argv[1] == "predict" and "--input" not in argv):
        ok, why = _parses(lambda: run_lightning([*argv[1:], "--print_config"]))
    elif argv[1] == "predict":
        results = [_parses(lambda m=m: m(argv[2:])) for m in _scene_predict_mains()]
        ok = any(r[0] for r in results)
        why = "; ".join(r[1] for r in results)
    else:
        ok, why = _parses(lambda: main(argv[1:]))
        if argv[1] == "benchmark" and "--suite" in argv:
            _check_suite_names(argv)
    err = capsys.readouterr().err
    assert ok, f"`{' '.join(argv)}` does not parse ({why}): {err[-600:]}"


def test_a_wrong_option_fails_these_checks(
    parse_only: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """The check above can fail: a mistyped option or config key is caught."""
    from hsi.cli import main, run_lightning

    ok, _ = _parses(lambda: main(["benchmark", "--suite", "hybridsn_indian_pines", "--sed", "0"]))
    assert not ok
    ok, _ = _parses(
        lambda: run_lightning(
            [
                "fit",
                "--config",
                str(ROOT / "configs/hybridsn/indian_pines_disjoint.yaml"),
                "--trainer.max_epochz",
                "5",
                "--print_config",
            ]
        )
    )
    assert not ok
    capsys.readouterr()
