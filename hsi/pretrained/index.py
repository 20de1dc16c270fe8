"""The index of shipped weights (``checkpoints/index.yaml``): where the folder is, what each
entry records, and how a name such as ``indian_pines`` or ``hybridsn/indian_pines`` resolves."""

from __future__ import annotations

import difflib
import hashlib
import importlib.resources
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hsi.errors import ConfigError, DataError

FORMAT = "hsi-pretrained"

FORMAT_VERSION = 1

INDEX_NAME = "index.yaml"

# Above this a weight belongs in a release asset, not in git (the repository is cloned
# by every user and CI run; git keeps every version of a binary forever).
MAX_GIT_BYTES = 20 * 1024 * 1024

CHECKPOINTS_ENV = "HSI_CHECKPOINTS"

REPO_ROOT = Path(__file__).resolve().parents[2]

_TAG = re.compile(r"^[a-z0-9][a-z0-9_]*$")

PathLike = str | os.PathLike[str]


def checkpoints_dir() -> Path:
    """The folder holding ``index.yaml`` and the weights.

    ``$HSI_CHECKPOINTS`` when set (your own collection, or a test's), else the packaged
    ``hsi._checkpoints``, else ``checkpoints/`` beside ``hsi/`` in a source checkout.
    """
    env = os.environ.get(CHECKPOINTS_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    try:
        packaged = Path(str(importlib.resources.files("hsi._checkpoints")))
        if (packaged / INDEX_NAME).is_file():
            return packaged
    except (ModuleNotFoundError, TypeError):
        pass
    return REPO_ROOT / "checkpoints"


@dataclass(frozen=True)
class PretrainedEntry:
    """One row of ``index.yaml``: a shipped weight and what was measured with it."""

    model: str
    tag: str
    file: str
    sha256: str
    dataset: str
    protocol: str
    leaky: bool
    split_file: str | None
    metrics: dict[str, float]
    directory: Path
    card: str | None = None
    dtype: str = "float32"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.model}/{self.tag}"

    @property
    def path(self) -> Path:
        return self.directory / self.file


def _norm_model(name: str) -> str:
    return name.strip().lower().replace("-", "_")


_ENTRY_FIELDS = frozenset(
    "model tag file sha256 dataset protocol leaky split_file metrics card dtype".split()
)


def load_index(directory: PathLike | None = None) -> list[PretrainedEntry]:
    """The entries of ``index.yaml`` (an empty list when the folder has no index)."""
    folder = Path(directory) if directory is not None else checkpoints_dir()
    path = folder / INDEX_NAME
    if not path.is_file():
        return []
    try:
        doc = yaml.safe_load(path.read_text()) or {}
        rows = doc.get("weights") or []
        entries = []
        for row in rows:
            entries.append(
                PretrainedEntry(
                    model=_norm_model(str(row["model"])),
                    tag=str(row["tag"]).lower(),
                    file=str(row["file"]),
                    sha256=str(row["sha256"]).lower(),
                    dataset=str(row["dataset"]),
                    protocol=str(row["protocol"]),
                    leaky=bool(row["leaky"]),
                    split_file=row.get("split_file"),
                    metrics={k: float(v) for k, v in (row.get("metrics") or {}).items()},
                    directory=folder,
                    card=row.get("card"),
                    dtype=str(row.get("dtype", "float32")),
                    extra={k: v for k, v in row.items() if k not in _ENTRY_FIELDS},
                )
            )
    except (yaml.YAMLError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise DataError(f"{path}: not a valid pretrained-weights index ({exc})") from exc
    return entries


def list_pretrained(model: str | None = None, directory: PathLike | None = None) -> list[str]:
    """Names (``model/tag``) of the listed weights, optionally of one model only."""
    entries = load_index(directory)
    if model is not None:
        entries = [e for e in entries if e.model == _norm_model(model)]
    return sorted(e.name for e in entries)


def resolve(
    ref: str, model: str | None = None, directory: PathLike | None = None
) -> PretrainedEntry:
    """The index entry named by ``ref``: ``model/tag``, or a tag unique among the weights
    (of ``model``, when given).

    Unknown names list the known ones; a tag that exists only for another model says so.
    """
    entries = load_index(directory)
    known = sorted(e.name for e in entries)
    known_text = ", ".join(known) if known else "none (no index.yaml found)"
    key = ref.strip().lower()
    want = _norm_model(model) if model is not None else None
    if "/" in key:
        owner, _, tag = key.partition("/")
        owner = _norm_model(owner)
        if want is not None and owner != want:
            raise ConfigError(
                f"pretrained weights {ref!r} are for model {owner!r}, not {want!r}; "
                f"use create_model({owner!r}, pretrained={ref!r}) or one of {want!r}'s: "
                f"{', '.join(list_pretrained(want, directory)) or 'none'}"
            )
        matches = [e for e in entries if e.model == owner and e.tag == tag]
    else:
        matches = [e for e in entries if e.tag == key]
        if want is not None:
            mine = [e for e in matches if e.model == want]
            if matches and not mine:
                raise ConfigError(
                    f"pretrained tag {ref!r} is for {', '.join(e.name for e in matches)}, not "
                    f"model {want!r}; {want!r} has: "
                    f"{', '.join(list_pretrained(want, directory)) or 'no shipped weights'}"
                )
            matches = mine
    if not matches:
        close = difflib.get_close_matches(key, known + [e.tag for e in entries], n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown pretrained weights {ref!r}.{hint} Known: {known_text}")
    if len(matches) > 1:
        raise ConfigError(
            f"pretrained tag {ref!r} is ambiguous; name one of: "
            f"{', '.join(e.name for e in matches)}"
        )
    return matches[0]


def looks_like_name(ref: str) -> bool:
    """True for ``tag`` or ``model/tag`` (what :func:`resolve` takes), not a file path."""
    parts = ref.strip().lower().split("/")
    return 1 <= len(parts) <= 2 and all(_TAG.match(p.replace("-", "_")) for p in parts)


def sha256_of(path: PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
