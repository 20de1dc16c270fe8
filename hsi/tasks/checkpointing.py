"""Writing a task's checkpoint without a Trainer run (tests, conversions, release assets)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import lightning as L
import torch

from hsi.errors import DataError, HsiError


class ExportableCheckpoint:
    """Mixin for hsi tasks: every checkpoint carries the task's ``hsi`` section
    (``_hsi_meta()``: task kind, fitted preprocessing, data facts) so it alone rebuilds the
    input pipeline; ``export_checkpoint(path)`` writes what ``load_from_checkpoint`` and
    ``hsi predict`` read — Lightning's layout minus optimizer and loop state."""

    def _hsi_meta(self) -> dict[str, Any]:  # pragma: no cover - every task defines it
        raise NotImplementedError

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["hsi"] = self._hsi_meta()

    def export_checkpoint(self, path: str | Path) -> Path:
        checkpoint = {
            "state_dict": self.state_dict(),  # type: ignore[attr-defined]
            "hyper_parameters": dict(self.hparams),  # type: ignore[attr-defined]
            "pytorch-lightning_version": L.__version__,
            "hsi": self._hsi_meta(),
        }
        torch.save(checkpoint, path)
        return Path(path)


def checkpoint_task(checkpoint: str | os.PathLike[str]) -> str:
    """``classification``, ``restoration`` or ``detection``: which task wrote a checkpoint,
    an exported weight file, or the shipped weights of that name.

    Reads the file with ``weights_only=True``, memory-mapped where possible (tensors are not
    read), so routing ``hsi predict`` costs little and executes nothing. Files that are not
    checkpoints, and unknown names, count as ``classification``, whose loader reports the
    problem.
    """
    from hsi.errors import HsiError
    from hsi.pretrained.index import FORMAT, looks_like_name, resolve

    text = os.fspath(checkpoint)
    path = Path(text).expanduser()
    if not path.is_file() and looks_like_name(text):
        try:
            path = resolve(text).path
        except HsiError:
            return "classification"
    if not path.is_file():
        return "classification"
    try:
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # legacy (non-zip) files cannot be memory-mapped
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - not a checkpoint: let the classification loader say so
        return "classification"
    if isinstance(ckpt, dict) and ckpt.get("format") == FORMAT:  # an exported weight file
        return str(ckpt.get("task", "classification"))
    meta = ckpt.get("hsi") if isinstance(ckpt, dict) else None
    return str(meta.get("task", "classification")) if isinstance(meta, dict) else "classification"


def load_task_checkpoint(
    task_cls: type[L.LightningModule],
    path: Path,
    device: torch.device | str,
    kind: str,
    hint: str = "pass a checkpoint written by `hsi fit`",
) -> Any:
    """``task_cls.load_from_checkpoint`` (weights only) with one-line errors for a missing,
    corrupt or foreign file; ``kind`` names the task in the message (``restoration``)."""
    if not path.is_file():
        raise DataError(f"{path}: checkpoint not found; {hint}")
    try:
        return task_cls.load_from_checkpoint(path, map_location=device, weights_only=True)
    except HsiError:
        raise
    except Exception as exc:  # corrupt file, another task's checkpoint, ...
        msg = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise DataError(f"{path}: cannot load as an hsi {kind} checkpoint ({msg}); {hint}") from exc
