"""Lightning tasks: one LightningModule per task type, building any registry model."""

from hsi.tasks.classification import ClassificationTask

__all__ = ["ClassificationTask"]
