"""Train/validation/test protocols (splits) over a labelled scene.

Two protocols, both seeded and saved to JSON with the fingerprint of the cube they were
made for, so a split file can be reloaded and can never be applied to another image:

``random``
    The papers' protocol: per-class stratified random sampling of pixels (a ratio or a
    count per class). Training patches then overlap test pixels, so accuracies under it
    are optimistic; it exists to reproduce published numbers and every report names it.

``disjoint``
    hsi's leak-free default. The image is cut into square blocks; whole blocks go to
    train, validation or test (greedily, rarest class first, to approach the requested
    per-class ratios), and then every validation/test pixel that lies inside the patch
    window of any training pixel (Chebyshev distance ≤ patch radius) is dropped. No
    training patch therefore contains a single test or validation pixel.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from scipy import ndimage

from hsi.errors import ConfigError, DataError

Protocol = Literal["random", "disjoint"]
SPLIT_FORMAT_VERSION = 1
UNUSED, TRAIN, VAL, TEST = 0, 1, 2, 3
PART_CODES = {"train": TRAIN, "val": VAL, "test": TEST}


@dataclass
class Split:
    """Pixel assignment of one labelled scene to train/val/test.

    ``assignment`` is an ``(H, W)`` uint8 map: 0 unused (unlabelled or dropped by the
    leak buffer), 1 train, 2 validation, 3 test.
    """

    protocol: str
    seed: int
    assignment: np.ndarray
    params: dict[str, Any] = field(default_factory=dict)
    fingerprint: str | None = None
    dataset: str | None = None

    def indices(self, part: str) -> np.ndarray:
        """``(n, 2)`` array of (row, col) of the pixels in ``part`` ("train", "val", "test")."""
        if part not in PART_CODES:
            raise ConfigError(f"unknown split part {part!r}; use train, val or test")
        return np.argwhere(self.assignment == PART_CODES[part])

    def counts(self, labels: np.ndarray, num_classes: int) -> dict[str, list[int]]:
        """Per-class pixel counts of each part (class ids 1..num_classes)."""
        out = {}
        for part, code in PART_CODES.items():
            sel = labels[self.assignment == code]
            out[part] = np.bincount(sel, minlength=num_classes + 1)[1:].tolist()
        return out

    @property
    def is_leaky(self) -> bool:
        return self.protocol == "random"

    def save(self, path: str | Path) -> Path:
        """Write the split as JSON: flat pixel indices per part, the seed and the cube sha256."""
        from hsi.data.writers import atomic_output

        path = Path(path)
        payload = {
            "format_version": SPLIT_FORMAT_VERSION,
            "protocol": self.protocol,
            "seed": self.seed,
            "params": self.params,
            "dataset": self.dataset,
            "fingerprint": self.fingerprint,
            "shape": list(self.assignment.shape),
            "parts": {
                part: np.flatnonzero(self.assignment.ravel() == code).tolist()
                for part, code in PART_CODES.items()
            },
        }
        with atomic_output(path, overwrite=True) as tmp:
            tmp.write_text(json.dumps(payload))
        return path

    @classmethod
    def load(cls, path: str | Path, *, fingerprint: str | None = None) -> Split:
        """Read a split saved by :meth:`save`; refuse it if made for another cube."""
        path = Path(path)
        if not path.is_file():
            raise DataError(f"split file {path} does not exist; omit split_file to make one")
        try:
            payload = json.loads(path.read_text())
            shape = tuple(payload["shape"])
            assignment = np.zeros(int(np.prod(shape)), dtype=np.uint8)
            for part, code in PART_CODES.items():
                assignment[np.asarray(payload["parts"][part], dtype=np.int64)] = code
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise DataError(f"split file {path} is not a valid hsi split ({exc})") from exc
        saved = payload.get("fingerprint")
        if fingerprint and saved and fingerprint != saved:
            raise DataError(
                f"split file {path} was made for another cube (sha256 {saved[:12]}…, this "
                f"cube {fingerprint[:12]}…); delete it or point split_file elsewhere"
            )
        return cls(
            protocol=payload["protocol"],
            seed=int(payload["seed"]),
            assignment=assignment.reshape(shape),
            params=payload.get("params", {}),
            fingerprint=saved,
            dataset=payload.get("dataset"),
        )

    def check_labels(self, labels: np.ndarray) -> None:
        """Raise if this split does not fit ``labels`` (another shape, unlabelled pixels)."""
        if labels.shape != self.assignment.shape:
            raise DataError(
                f"split is for an image of shape {self.assignment.shape}, labels are "
                f"{labels.shape}; make a new split for this scene"
            )
        if (labels[self.assignment != UNUSED] == 0).any():
            raise DataError("split assigns unlabelled pixels; it was made for other labels")


def _per_class_quota(n: int, amount: float | int) -> int:
    """How many of ``n`` pixels a ratio (0<r<1) or a count (>=1) asks for."""
    if isinstance(amount, float) and 0 < amount < 1:
        return int(round(n * amount))
    if amount >= 1 and float(amount).is_integer():
        return min(int(amount), n)
    if amount == 0:
        return 0
    raise ConfigError(f"a split size must be a ratio in (0, 1) or a count ≥ 1, got {amount}")


def random_split(
    labels: np.ndarray,
    train: float | int = 0.3,
    val: float | int = 0.05,
    seed: int = 0,
    min_train_per_class: int = 1,
) -> Split:
    """Stratified random split: ``train``/``val`` as per-class ratios or counts.

    Validation pixels are drawn from the pixels not used for training, so the training
    set has exactly the size the papers use and the test set is the rest.
    """
    rng = np.random.default_rng(seed)
    assignment = np.zeros(labels.shape, dtype=np.uint8)
    flat_labels = labels.ravel()
    flat = assignment.ravel()
    for cls in np.unique(flat_labels[flat_labels > 0]):
        idx = rng.permutation(np.flatnonzero(flat_labels == cls))
        n_train = max(_per_class_quota(len(idx), train), min(min_train_per_class, len(idx)))
        rest = len(idx) - n_train
        n_val = min(_per_class_quota(len(idx), val), rest) if rest > 1 else 0
        flat[idx[:n_train]] = TRAIN
        flat[idx[n_train : n_train + n_val]] = VAL
        flat[idx[n_train + n_val :]] = TEST
    return Split("random", seed, assignment, params={"train": train, "val": val})


def _buffer_mask(train_mask: np.ndarray, radius: int) -> np.ndarray:
    """Pixels within Chebyshev distance ``radius`` of any training pixel."""
    if radius <= 0:
        return train_mask.copy()
    # a max filter is a separable binary dilation with a square window: fast on big scenes
    return ndimage.maximum_filter(train_mask.astype(np.uint8), size=2 * radius + 1) > 0


def _apply_blocks(
    owner: np.ndarray, block_id: np.ndarray, labels: np.ndarray, radius: int
) -> np.ndarray:
    """Pixel assignment from a block assignment, with the leak buffer applied."""
    assignment = owner[block_id]
    assignment[labels == 0] = UNUSED
    near_train = _buffer_mask(assignment == TRAIN, radius)
    assignment[(assignment != TRAIN) & near_train] = UNUSED
    return assignment


def _split_loss(
    assignment: np.ndarray, labels: np.ndarray, totals: np.ndarray, targets: np.ndarray
) -> float:
    """Relative squared deviation of per-class part fractions from their targets.

    Classes weigh equally (a 20-pixel class counts as much as a 2,000-pixel one), and a
    class missing from training costs most: the model could never predict it.
    """
    present = totals > 0
    loss = 0.0
    for code, target, weight in zip((TRAIN, VAL, TEST), targets, (2.0, 0.5, 1.0), strict=True):
        if target <= 0:
            continue
        got = np.bincount(labels[assignment == code], minlength=len(totals))
        frac = got[present] / totals[present]
        loss += weight * float((((frac - target) / target) ** 2).sum())
    return loss


def _search_blocks(
    hist: np.ndarray,
    block_id: np.ndarray,
    labels: np.ndarray,
    totals: np.ndarray,
    targets: np.ndarray,
    radius: int,
    rng: np.random.Generator,
    max_passes: int,
) -> tuple[np.ndarray, float]:
    """One greedy start plus hill climbing; returns the block owners and their loss."""
    n_blocks, n_labels = hist.shape
    # greedy start: rarest classes first so the large ones do not starve them
    owner = np.zeros(n_blocks, dtype=np.uint8)
    order = rng.permutation(n_blocks)
    for code, ratio in ((TRAIN, targets[0]), (VAL, targets[1])):
        got = np.zeros(n_labels)
        for cls in np.argsort(totals):
            if cls == 0 or totals[cls] == 0:
                continue
            for b in order:
                if got[cls] >= totals[cls] * ratio:
                    break
                if owner[b] == 0 and hist[b, cls] > 0:
                    owner[b] = code
                    got += hist[b]
    owner[owner == 0] = TEST

    # hill climbing on the post-buffer fractions; only blocks holding labels matter
    labelled_blocks = np.flatnonzero(hist.sum(axis=1) > 0)
    best = _split_loss(_apply_blocks(owner, block_id, labels, radius), labels, totals, targets)
    for _ in range(max_passes):
        improved = False
        for b in rng.permutation(labelled_blocks):
            current = owner[b]
            for code in (TRAIN, VAL, TEST):
                if code == current:
                    continue
                owner[b] = code
                loss = _split_loss(
                    _apply_blocks(owner, block_id, labels, radius), labels, totals, targets
                )
                if loss < best - 1e-12:
                    best, current, improved = loss, code, True
                owner[b] = current
        if not improved:
            break

    return owner, best


def disjoint_split(
    labels: np.ndarray,
    train: float = 0.3,
    val: float = 0.1,
    patch_size: int = 25,
    block_size: int | None = None,
    seed: int = 0,
    max_passes: int = 8,
    restarts: int = 4,
) -> Split:
    """Spatially disjoint split: whole blocks per part, then a leak buffer.

    Blocks are first assigned greedily (rarest class first) towards the per-class
    targets, then improved by hill climbing on the per-class fractions measured *after*
    the buffer has removed the pixels near training blocks, so the buffer's losses are
    part of what the search minimises. Classes living in a single small field cannot be
    split with a buffer; they end up in one part only, and the split's counts show it.

    Args:
        labels: ``(H, W)`` labels, 0 = unlabelled, classes 1..N.
        train, val: target per-class fractions of labelled pixels (test: the rest).
        patch_size: the model's patch side; its radius is the buffer width.
        block_size: block side in pixels (default: ``patch_size``).
        seed: seeds the block order.
        max_passes: hill-climbing passes over all blocks.
        restarts: independent (seeded) searches; the best is kept.
    """
    if not (0 < train < 1 and 0 <= val < 1 and train + val < 1):
        raise ConfigError(
            f"disjoint split needs ratios with 0 < train, 0 <= val and train + val < 1, "
            f"got train={train}, val={val}"
        )
    radius = patch_size // 2
    block = block_size or patch_size
    if block < 1:
        raise ConfigError(f"block_size must be ≥ 1, got {block}")
    height, width = labels.shape
    rng = np.random.default_rng(seed)
    n_block_cols = -(-width // block)
    block_id = (np.arange(height) // block)[:, None] * n_block_cols + (np.arange(width) // block)[
        None, :
    ]
    n_blocks = int(block_id.max()) + 1
    hist = np.zeros((n_blocks, int(labels.max()) + 1), dtype=np.int64)
    np.add.at(hist, (block_id.ravel(), labels.ravel()), 1)
    hist[:, 0] = 0
    totals = hist.sum(axis=0)
    targets = np.array([train, val, 1 - train - val])

    best_owner, best_loss = None, np.inf
    for _ in range(max(restarts, 1)):
        owner, loss = _search_blocks(
            hist, block_id, labels, totals, targets, radius, rng, max_passes
        )
        if loss < best_loss:
            best_owner, best_loss = owner, loss
    owner = best_owner
    assignment = _apply_blocks(owner, block_id, labels, radius).astype(np.uint8)
    return Split(
        "disjoint",
        seed,
        assignment,
        params={"train": train, "val": val, "patch_size": patch_size, "block_size": block},
    )


def make_split(protocol: str, labels: np.ndarray, *, seed: int = 0, **params: Any) -> Split:
    """Build a split by protocol name (``random`` or ``disjoint``)."""
    if protocol == "random":
        allowed = {"train", "val", "min_train_per_class"}
        fn = random_split
    elif protocol == "disjoint":
        allowed = {"train", "val", "patch_size", "block_size"}
        fn = disjoint_split
    else:
        raise ConfigError(f"unknown protocol {protocol!r}; use 'random' or 'disjoint'")
    unknown = set(params) - allowed
    if unknown:
        raise ConfigError(
            f"protocol {protocol!r} does not take {sorted(unknown)}; it takes {sorted(allowed)}"
        )
    return fn(labels, seed=seed, **params)


def split_summary(split: Split, labels: np.ndarray, class_names: list[str]) -> dict[str, Any]:
    """A JSON-ready description of a split for reports."""
    counts = split.counts(labels, len(class_names))
    return {
        "protocol": split.protocol,
        "leaky": split.is_leaky,
        "seed": split.seed,
        "params": split.params,
        "counts": {part: dict(zip(class_names, c, strict=True)) for part, c in counts.items()},
        "totals": {part: int(sum(c)) for part, c in counts.items()},
    }


__all__ = [
    "Split",
    "disjoint_split",
    "make_split",
    "random_split",
    "split_summary",
]
