"""Rectangles of a scene: the train | validation | test strips of the held-out-regions protocol,
the centre crops of the papers' test protocols, and the overlap test behind the leak checks."""

from __future__ import annotations

from dataclasses import dataclass

from hsi.errors import ConfigError


@dataclass(frozen=True)
class Region:
    """Rows ``r0:r1`` and columns ``c0:c1`` of scene ``scene`` (index into the cube list)."""

    scene: int
    r0: int
    r1: int
    c0: int
    c1: int

    @property
    def height(self) -> int:
        return self.r1 - self.r0

    @property
    def width(self) -> int:
        return self.c1 - self.c0

    def as_dict(self) -> dict[str, int]:
        return {"scene": self.scene, "rows": [self.r0, self.r1], "cols": [self.c0, self.c1]}


def regions_overlap(a: Region, b: Region) -> bool:
    """True when two regions of the same scene share a pixel."""
    return (
        a.scene == b.scene
        and max(a.r0, b.r0) < min(a.r1, b.r1)
        and max(a.c0, b.c0) < min(a.c1, b.c1)
    )


def _strip_regions(
    scene: int, height: int, width: int, val: float, test: float, multiple: int
) -> dict[str, Region]:
    """Train | val | test vertical strips, each width a multiple of ``multiple``."""
    n_test = int(round(width * test)) // multiple * multiple
    n_val = int(round(width * val)) // multiple * multiple
    n_train = (width - n_test - n_val) // multiple * multiple
    if min(n_test, n_val, n_train) <= 0:
        raise ConfigError(
            f"a {width}-pixel-wide scene cannot give train/val/test strips of fractions "
            f"{1 - val - test:.2f}/{val:.2f}/{test:.2f} (widths multiple of {multiple}); "
            "change val_fraction/test_fraction"
        )
    h = height // multiple * multiple
    return {
        "train": Region(scene, 0, h, 0, n_train),
        "val": Region(scene, 0, h, width - n_test - n_val, width - n_test),
        "test": Region(scene, 0, h, width - n_test, width),
    }


def _center_box(reg: Region, size: int, what: str) -> Region:
    """The central ``size`` x ``size`` square of ``reg`` (QRNN3D's ``crop_center``)."""
    if reg.height < size or reg.width < size:
        raise ConfigError(
            f"eval_center_crop {size} is larger than the {what} ({reg.height}x{reg.width}); "
            "lower eval_center_crop or leave it unset"
        )
    r0, c0 = reg.r0 + (reg.height - size) // 2, reg.c0 + (reg.width - size) // 2
    return Region(reg.scene, r0, r0 + size, c0, c0 + size)
