"""Writing a task's checkpoint without a Trainer run (tests, conversions, release assets)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch


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
