"""Writing a task's checkpoint without a Trainer run (tests, conversions, release assets)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch


class ExportableCheckpoint:
    """Mixin for hsi tasks: ``export_checkpoint(path)`` writes what ``load_from_checkpoint``
    and ``hsi predict`` read — Lightning's layout minus optimizer and loop state — with the
    task's own ``hsi`` section from ``_hsi_meta()``."""

    def _hsi_meta(self) -> dict[str, Any]:  # pragma: no cover - every task defines it
        raise NotImplementedError

    def export_checkpoint(self, path: str | Path) -> Path:
        checkpoint = {
            "state_dict": self.state_dict(),  # type: ignore[attr-defined]
            "hyper_parameters": dict(self.hparams),  # type: ignore[attr-defined]
            "pytorch-lightning_version": L.__version__,
            "hsi": self._hsi_meta(),
        }
        torch.save(checkpoint, path)
        return Path(path)
