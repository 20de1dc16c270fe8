"""Reports name the commit of the code that made them, and say when it was not a commit."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from hsi.provenance import checkout_holding, commit_of, git_commit, provenance

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def _git(repo: Path, *args: str) -> str:
    cmd = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args]
    return subprocess.run(cmd, cwd=repo, check=True, capture_output=True, text=True).stdout


def test_commit_of_a_clean_and_a_changed_checkout(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "model.py").write_text("x = 1\n")
    _git(repo, "add", "model.py")
    _git(repo, "commit", "-q", "-m", "first")
    head = _git(repo, "rev-parse", "--short", "HEAD").strip()
    assert commit_of(repo) == head
    (repo / "notes.txt").write_text("untracked files do not change the code\n")
    assert commit_of(repo) == head
    (repo / "model.py").write_text("x = 2\n")
    assert commit_of(repo) == f"{head}+dirty"


def test_no_checkout_is_none(tmp_path: Path) -> None:
    assert commit_of(tmp_path) is None
    assert checkout_holding(tmp_path) is None


def test_a_package_installed_inside_another_repository_is_not_its_source(tmp_path: Path) -> None:
    repo = tmp_path / "project"
    source = repo / "hsi"
    installed = repo / ".venv" / "lib" / "site-packages" / "hsi"
    for folder in (source, installed):
        folder.mkdir(parents=True)
        (folder / "__init__.py").write_text("")
    _git(repo, "init", "-q")
    assert checkout_holding(source) == repo.resolve()  # a source checkout of the package
    assert checkout_holding(installed) is None  # someone else's repository around a venv


def test_the_commit_is_asked_once_per_process() -> None:
    first = git_commit()
    assert git_commit() is first and git_commit.cache_info().currsize == 1
    assert provenance()["git"] == first
