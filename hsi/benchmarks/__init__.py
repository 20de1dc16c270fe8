"""Benchmarks against published numbers: the numbers as data, suites of runs, a runner.

``published.yaml`` holds what each paper reports (OA/AA/kappa per model × dataset ×
protocol, with the table it comes from and the citation); ``suites.yaml`` lists runs of
``hsi fit`` to compare with them; :mod:`hsi.benchmarks.runner` (``hsi benchmark``) runs a
suite (resumable, :mod:`~hsi.benchmarks.running`) or collects existing task reports
(:mod:`~hsi.benchmarks.records`), and writes the comparison table
(:mod:`~hsi.benchmarks.tables`) and chart (:mod:`~hsi.benchmarks.chart`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from hsi.errors import ConfigError

__all__ = [
    "METRICS",
    "PUBLISHED_METRICS",
    "PublishedEntry",
    "Suite",
    "SuiteRun",
    "load_published",
    "load_suites",
    "unresolved_claims",
]

METRICS = ("OA", "AA", "kappa")
# Published entries may also carry restoration figures (mean per-band PSNR in dB and SSIM,
# SAM as the paper prints it) and detection mAP; the classification table shows METRICS.
PUBLISHED_METRICS = (*METRICS, "PSNR", "SSIM", "SAM", "mAP25", "mAP50", "mAP75", "mAP50_95")


@dataclass(frozen=True)
class PublishedEntry:
    """One published result: a model on a dataset under one protocol."""

    key: str
    model: str
    dataset: str
    protocol: str
    leaky: bool | None
    train_ratio: float | None
    metrics: dict[str, float]
    table: str
    paper: str
    citation: str
    std: dict[str, float] = field(default_factory=dict)
    leaky_reasons: tuple[str, ...] = ()
    patch_size: int | None = None
    pca_components: int | None = None
    epochs: int | None = None
    doi: str | None = None
    arxiv: str | None = None

    @property
    def protocol_label(self) -> str:
        leak = {True: " (leaky)", False: "", None: " (leak unknown)"}[self.leaky]
        ratio = "" if self.train_ratio is None else f" {self.train_ratio * 100:g}%"
        return f"{self.protocol}{ratio}{leak}"

    @property
    def reference(self) -> str:
        """Short citation: first author et al., venue id, table."""
        where = f"doi:{self.doi}" if self.doi else f"arXiv:{self.arxiv}" if self.arxiv else ""
        return f"{self.citation.split(',')[0]} et al. ({where}), {self.table}"


@dataclass(frozen=True)
class SuiteRun:
    """One config of a suite, trained once per seed."""

    name: str
    config: str
    seeds: tuple[int, ...] = (0,)
    overrides: tuple[str, ...] = ()
    published: str | None = None


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    runs: tuple[SuiteRun, ...]


def _read_yaml(name: str, path: str | Path | None) -> dict[str, Any]:
    if path is None:
        text = resources.files("hsi.benchmarks").joinpath(name).read_text(encoding="utf-8")
        where = f"hsi/benchmarks/{name}"
    else:
        where = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read {where}: {exc.strerror or exc}") from exc
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must hold a mapping at the top level")
    return data


def _metric_dict(value: Any, where: str) -> dict[str, float]:
    if value is None:
        return {}
    if not isinstance(value, dict) or any(k not in PUBLISHED_METRICS for k in value):
        raise ConfigError(f"{where}: metrics must be a mapping with keys among {PUBLISHED_METRICS}")
    return {k: float(v) for k, v in value.items() if v is not None}


def load_published(path: str | Path | None = None) -> dict[str, PublishedEntry]:
    """The published entries by key (``published.yaml`` shipped with hsi unless ``path``)."""
    data = _read_yaml("published.yaml", path)
    papers = data.get("papers") or {}
    out: dict[str, PublishedEntry] = {}
    for key, raw in (data.get("entries") or {}).items():
        where = f"published entry {key!r}"
        paper = papers.get(raw.get("paper"))
        if paper is None or not paper.get("citation"):
            raise ConfigError(f"{where}: paper {raw.get('paper')!r} has no citation in papers:")
        if not raw.get("table"):
            raise ConfigError(f"{where}: say which table (or section) the numbers come from")
        for required in ("model", "dataset", "protocol"):
            if not raw.get(required):
                raise ConfigError(f"{where}: missing {required}")
        metrics = _metric_dict(raw.get("metrics"), where)
        if not metrics:
            raise ConfigError(f"{where}: no metrics; leave unsourced claims in unresolved:")
        out[key] = PublishedEntry(
            key=key,
            model=raw["model"],
            dataset=raw["dataset"],
            protocol=raw["protocol"],
            leaky=raw.get("leaky"),
            train_ratio=None if raw.get("train_ratio") is None else float(raw["train_ratio"]),
            metrics=metrics,
            std=_metric_dict(raw.get("std"), where),
            table=str(raw["table"]),
            paper=raw["paper"],
            citation=" ".join(str(paper["citation"]).split()),
            leaky_reasons=tuple(raw.get("leaky_reasons") or ()),
            patch_size=raw.get("patch_size"),
            pca_components=raw.get("pca_components"),
            epochs=raw.get("epochs"),
            doi=paper.get("doi"),
            arxiv=None if paper.get("arxiv") is None else str(paper["arxiv"]),
        )
    return out


def unresolved_claims(path: str | Path | None = None) -> list[dict[str, Any]]:
    """Published claims that could not be pinned to a table entry (never compared with)."""
    return list(_read_yaml("published.yaml", path).get("unresolved") or [])


def load_suites(path: str | Path | None = None) -> dict[str, Suite]:
    """The benchmark suites by name (``suites.yaml`` shipped with hsi unless ``path``)."""
    data = _read_yaml("suites.yaml", path)
    suites: dict[str, Suite] = {}
    for name, raw in (data.get("suites") or {}).items():
        runs = []
        for i, run in enumerate(raw.get("runs") or []):
            if not run.get("name") or not run.get("config"):
                raise ConfigError(f"suite {name!r}, run {i}: needs a name and a config")
            runs.append(
                SuiteRun(
                    name=str(run["name"]),
                    config=str(run["config"]),
                    seeds=tuple(int(s) for s in run.get("seeds") or (0,)),
                    overrides=tuple(str(o) for o in run.get("overrides") or ()),
                    published=run.get("published"),
                )
            )
        names = [r.name for r in runs]
        if len(set(names)) != len(names):
            raise ConfigError(f"suite {name!r}: run names must be unique, got {names}")
        suites[name] = Suite(name, " ".join(str(raw.get("description", "")).split()), tuple(runs))
    return suites
