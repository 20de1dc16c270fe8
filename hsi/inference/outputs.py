"""The rasters a prediction writes (class map, confidence, probabilities, PNG quick-look),
window by window into temporary files that are renamed into place only when complete."""

from __future__ import annotations

import math
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

from hsi.data.writers import atomic_output, geotiff_block_size
from hsi.inference.plan import _Plan
from hsi.inference.scenes import Window, _Scene
from hsi.reports import class_colors

_QUICKLOOK_MAX_SIDE = 2048


def _profile(scene: _Scene, count: int, dtype: str, nodata: float) -> dict[str, Any]:
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "width": scene.width,
        "height": scene.height,
        "count": count,
        "dtype": dtype,
        "nodata": nodata,
        "tiled": True,
        "blockxsize": geotiff_block_size(scene.width),
        "blockysize": geotiff_block_size(scene.height),
        "compress": "deflate",
        "predictor": 3 if dtype.startswith("float") else 2,
        "interleave": "band",
        "BIGTIFF": "IF_SAFER",
    }
    if scene.crs is not None:
        profile["crs"] = scene.crs
    if scene.transform is not None:
        profile["transform"] = scene.transform
    return profile


class _SceneOutputs:
    """The run's rasters, opened atomically in ``stack`` and written window by window.

    Counts the class histogram (0 = no data) and the windows written without the model.
    """

    def __init__(self, plan: _Plan, stack: ExitStack) -> None:
        import rasterio

        self.plan = plan
        scene, names, k = plan.scene, plan.class_names, plan.num_classes
        self.palette = class_colors(k)  # the report palette, so maps look alike
        self.histogram = np.zeros(k + 1, dtype=np.int64)
        self.skipped = 0
        self.tmp = {
            kind: stack.enter_context(atomic_output(path, overwrite=plan.overwrite))
            for kind, path in plan.targets.items()
        }
        self.map_dst = stack.enter_context(
            rasterio.open(self.tmp["map"], "w", **_profile(scene, 1, plan.map_dtype, 0))
        )
        self.map_dst.set_band_description(
            1, "class: " + ", ".join(f"{i}={n}" for i, n in enumerate(names, 1))
        )
        self.map_dst.update_tags(**plan.tags)
        self.map_dst.write_colormap(
            1,
            {0: (0, 0, 0, 0)} | {i: (*map(int, self.palette[i]), 255) for i in range(1, k + 1)},
        )
        self.conf_dst = self.prob_dst = None
        if "confidence" in self.tmp:
            self.conf_dst = stack.enter_context(
                rasterio.open(
                    self.tmp["confidence"], "w", **_profile(scene, 1, "float32", math.nan)
                )
            )
            self.conf_dst.set_band_description(1, "confidence (maximum class probability)")
            self.conf_dst.update_tags(**plan.tags)
        if "probabilities" in self.tmp:
            self.prob_dst = stack.enter_context(
                rasterio.open(
                    self.tmp["probabilities"], "w", **_profile(scene, k, "float32", math.nan)
                )
            )
            for i, name in enumerate(names, start=1):
                self.prob_dst.set_band_description(i, name)
            self.prob_dst.update_tags(**plan.tags)

    @property
    def confidence(self) -> bool:
        return self.conf_dst is not None

    @property
    def probabilities(self) -> bool:
        return self.prob_dst is not None

    def write(
        self,
        window: Window,
        classes: np.ndarray,
        conf: np.ndarray | None = None,
        probs: np.ndarray | None = None,
    ) -> None:
        """One window's results (from :func:`_window_maps`)."""
        from rasterio.windows import Window as RioWindow

        r0, r1, c0, c1 = window
        win = RioWindow(c0, r0, c1 - c0, r1 - r0)
        self.histogram += np.bincount(classes.ravel(), minlength=self.plan.num_classes + 1)
        self.map_dst.write(classes[None], window=win)
        if self.conf_dst is not None:
            assert conf is not None
            self.conf_dst.write(conf[None], window=win)
        if self.prob_dst is not None:
            assert probs is not None
            self.prob_dst.write(probs, window=win)

    def write_nodata(self, window: Window) -> None:
        """A window without valid pixels: no data everywhere, the model not run."""
        r0, r1, c0, c1 = window
        self.skipped += 1
        self.histogram[0] += (r1 - r0) * (c1 - c0)
        from rasterio.windows import Window as RioWindow

        win = RioWindow(c0, r0, c1 - c0, r1 - r0)
        self.map_dst.write(np.zeros((1, r1 - r0, c1 - c0), dtype=self.plan.map_dtype), window=win)
        nan = np.full((r1 - r0, c1 - c0), np.nan, dtype=np.float32)
        if self.conf_dst is not None:
            self.conf_dst.write(nan[None], window=win)
        if self.prob_dst is not None:
            self.prob_dst.write(
                np.full((self.plan.num_classes, *nan.shape), np.nan, np.float32), window=win
            )

    def finish(self) -> None:
        """Flush the map and write the quick-look (call inside the ``stack``)."""
        self.map_dst.close()  # flush before the quick-look reads it back
        if "quicklook" in self.tmp:
            _write_quicklook(self.tmp["map"], self.tmp["quicklook"], self.palette)

    def summary(self, seconds: float, total_seconds: float, device: str) -> dict[str, Any]:
        plan, histogram = self.plan, self.histogram
        pixels = plan.scene.height * plan.scene.width
        return {
            "input": plan.scene.source,
            "checkpoint": str(plan.ckpt_path),
            "height": plan.scene.height,
            "width": plan.scene.width,
            "pixels": pixels,
            "valid_pixels": int(pixels - histogram[0]),
            "windows": len(plan.windows),
            "skipped_windows": self.skipped,
            "seconds": round(total_seconds, 3),
            "inference_seconds": round(seconds, 3),
            "pixels_per_second": pixels / max(seconds, 1e-9),
            "class_histogram": {
                name: int(histogram[i]) for i, name in enumerate(plan.class_names, start=1)
            },
            "nodata_pixels": int(histogram[0]),
            "device": device,
            "outputs": {kind: str(path) for kind, path in plan.targets.items()},
        }


def _write_quicklook(map_path: Path, png_path: Path, palette: np.ndarray) -> None:
    """RGB PNG of the class map, decimated (nearest) to at most 2048 pixels a side."""
    import rasterio
    from PIL import Image
    from rasterio.enums import Resampling

    with rasterio.open(map_path) as src:
        factor = max(1, math.ceil(max(src.height, src.width) / _QUICKLOOK_MAX_SIDE))
        shape = (math.ceil(src.height / factor), math.ceil(src.width / factor))
        classes = src.read(1, out_shape=shape, resampling=Resampling.nearest)
    Image.fromarray(palette[classes]).save(png_path, format="PNG")
