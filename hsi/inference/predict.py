"""``predict_scene``: a checkpoint over a whole scene of any size, in bounded memory."""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from contextlib import ExitStack
from typing import Any

import torch

from hsi.inference.dense import classify_cube
from hsi.inference.outputs import _SceneOutputs
from hsi.inference.plan import _plan_prediction
from hsi.inference.scenes import PathLike
from hsi.inference.windows import _window_maps


def predict_scene(
    checkpoint: PathLike,
    inputs: PathLike | Sequence[PathLike],
    output: PathLike,
    *,
    tile: int = 256,
    batch_size: int = 256,
    probabilities: bool = False,
    confidence: bool = False,
    overwrite: bool = False,
    quicklook: bool = True,
    device: str = "cpu",
    progress: bool = True,
) -> dict[str, Any]:
    """Classify every pixel of a scene with a trained checkpoint into a GeoTIFF class map.

    Args:
        checkpoint: a ``.ckpt`` of a :class:`~hsi.tasks.classification.ClassificationTask`,
            a weight file exported by :mod:`hsi.pretrained`, or shipped weights by name
            (``"indian_pines"``, ``"hybridsn/indian_pines"``).
        inputs: one GeoTIFF/VRT/ENVI (or ``.mat``/``.npy``, read whole) file, or a list of
            GeoTIFF tiles on one pixel grid, mosaicked window by window (never in memory).
        output: the class map (uint8, or uint16 beyond 255 classes): values 1..K, 0 where
            the input has no data; colour table, class names (``class_names`` tag as JSON
            and the band description), the input's CRS and transform.
        tile: window side in pixels; each read is ``tile + 2r`` (r = patch_size // 2).
        batch_size: bounds inference memory (see :func:`classify_cube`).
        probabilities: also write ``<stem>_probabilities.tif`` (float32, one band per class).
        confidence: also write ``<stem>_confidence.tif`` (float32 maximum probability).
        overwrite: replace existing outputs (otherwise they are refused).
        quicklook: also write ``<stem>.png``, the class map at most 2048 pixels a side.
        device: torch device to run the model on.
        progress: show a tqdm bar (pixels/s) over the windows.

    The scene is preprocessed with the checkpoint's preprocessing (fitted on the training
    pixels) and padded with the training pad mode at the true scene border only, so the
    map equals a whole-scene :func:`classify_cube` whatever the tile size. All checks
    (band count, wavelengths, existing outputs, writable directory) run before any output
    is created, and outputs are renamed into place only when complete: an interrupted run
    leaves no file behind. Windows without valid pixels are written as no-data without
    running the model. Float outputs use NaN as no-data.

    Returns a summary: ``pixels``, ``valid_pixels``, ``seconds``, ``pixels_per_second``,
    ``class_histogram`` (class name -> pixels), ``outputs`` (kind -> path) and more.
    """
    plan = _plan_prediction(
        checkpoint,
        inputs,
        output,
        tile=tile,
        batch_size=batch_size,
        probabilities=probabilities,
        confidence=confidence,
        overwrite=overwrite,
        quicklook=quicklook,
        device=device,
    )
    scene, windows = plan.scene, plan.windows
    reader = plan.reader()
    from rasterio.errors import NotGeoreferencedWarning
    from tqdm.auto import tqdm

    start = time.perf_counter()
    with ExitStack() as stack, warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        outputs = _SceneOutputs(plan, stack)
        bar = stack.enter_context(
            tqdm(
                total=scene.height * scene.width,
                unit="px",
                unit_scale=True,
                desc="predict",
                disable=not progress,
            )
        )
        for window in windows:
            padded, core_valid = reader.read(window)
            if padded is None:
                outputs.write_nodata(window)
            else:
                probs = classify_cube(
                    plan.task.net, torch.from_numpy(padded), plan.patch, batch_size, plan.device
                )
                outputs.write(
                    window,
                    *_window_maps(
                        probs, core_valid, plan.map_dtype, outputs.confidence, outputs.probabilities
                    ),
                )
            bar.update(core_valid.size)
            bar.set_postfix(
                windows=f"{len(windows) - outputs.skipped}/{len(windows)}", refresh=False
            )
        seconds = time.perf_counter() - start
        outputs.finish()
    summary = outputs.summary(seconds, time.perf_counter() - start, str(plan.device))
    if reader.abs_count:
        summary["mean_abs_preprocessed"] = reader.abs_sum / reader.abs_count
    return summary
