"""Lightning tasks: one LightningModule per task type, building any registry model."""

from hsi.tasks.classification import ClassificationTask

__all__ = ["ClassificationTask"]

from hsi.tasks.restoration import RestorationTask  # noqa: E402

__all__ += ["RestorationTask"]

from hsi.tasks.detection import DetectionTask  # noqa: E402

__all__ += ["DetectionTask"]
