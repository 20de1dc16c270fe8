"""Hungarian matching, SpecDETR's one-to-many assignment and the set losses."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from hsi.detection.matching import (
    SetCriterion,
    cxcywh_to_xyxy,
    hungarian_match,
    match_cost,
    one_to_many_match,
    xyxy_to_cxcywh,
)
from hsi.errors import ConfigError


def _brute_force(cost: np.ndarray) -> float:
    """Minimum total cost over every injective map objects → predictions."""
    q, m = cost.shape
    return min(
        sum(cost[rows[j], j] for j in range(m)) for rows in itertools.permutations(range(q), m)
    )


@pytest.mark.parametrize("seed", range(6))
def test_hungarian_equals_brute_force_optimum(seed: int) -> None:
    rng = np.random.default_rng(seed)
    q, m = int(rng.integers(3, 7)), int(rng.integers(1, 4))
    cost = rng.normal(size=(q, m))
    rows, cols = hungarian_match(cost)
    assert len(rows) == m and len(set(rows)) == m and sorted(cols) == list(range(m))
    assert cost[rows, cols].sum() == pytest.approx(_brute_force(cost))


def test_one_to_many_assigns_k_distinct_queries_per_target() -> None:
    rng = np.random.default_rng(0)
    cost = rng.uniform(size=(20, 3))
    rows, cols = one_to_many_match(cost, match_num=4, dynamic=False)
    assert len(set(rows.tolist())) == len(rows) == 12  # no query used twice
    assert np.bincount(cols, minlength=3).tolist() == [4, 4, 4]
    # the first round is the one-to-one optimum
    r1, c1 = hungarian_match(cost)
    assert sorted(zip(rows[:3], cols[:3], strict=True)) == sorted(zip(r1, c1, strict=True))


def test_one_to_many_is_capped_by_queries_and_total() -> None:
    cost = np.random.default_rng(1).uniform(size=(5, 2))
    rows, cols = one_to_many_match(cost, match_num=10, dynamic=False)
    assert sorted(rows.tolist()) == list(range(5))  # every query once, then stop
    rows, _ = one_to_many_match(cost, match_num=10, dynamic=False, max_total=3)
    assert len(rows) == 3


def test_dynamic_rounds_keep_only_tight_iou_pairs() -> None:
    cost = np.array([[0.0, 9.0], [9.0, 0.0], [1.0, 9.0], [1.0, 9.0], [9.0, 1.0]])
    iou_cost = np.array([[0.0, 1.0], [1.0, 0.0], [0.01, 1.0], [0.02, 1.0], [1.0, 0.5]])
    rows, cols = one_to_many_match(cost, iou_cost, match_num=5, iou_threshold=0.05)
    pairs = set(zip(rows.tolist(), cols.tolist(), strict=True))
    # round 1: (0,0), (1,1); then queries 2 and 3 fit object 0 tightly (IoU > 0.95) and
    # join it one per round; query 4 overlaps object 1 with IoU 0.5 only and never does
    assert pairs == {(0, 0), (1, 1), (2, 0), (3, 0)}
    with pytest.raises(ConfigError, match="IoU cost"):
        one_to_many_match(cost, None, match_num=3, dynamic=True)


def test_match_cost_prefers_the_right_box_and_class() -> None:
    gt_boxes = torch.tensor([[0.25, 0.25, 0.1, 0.1], [0.75, 0.75, 0.1, 0.1]])
    gt_labels = torch.tensor([1, 0])
    boxes = torch.tensor([[0.75, 0.75, 0.1, 0.1], [0.26, 0.25, 0.1, 0.1], [0.5, 0.5, 0.3, 0.3]])
    logits = torch.tensor([[4.0, -4.0], [-4.0, 4.0], [0.0, 0.0]])
    cost = match_cost(logits, boxes, gt_labels, gt_boxes, (32, 32))
    rows, cols = hungarian_match(cost)
    assert dict(zip(cols.tolist(), rows.tolist(), strict=True)) == {0: 1, 1: 0}


def test_box_conversions_round_trip() -> None:
    b = torch.tensor([[0.3, 0.4, 0.2, 0.1]])
    assert torch.allclose(xyxy_to_cxcywh(cxcywh_to_xyxy(b)), b)


def test_set_criterion_is_zero_box_loss_for_perfect_boxes_and_counts_aux() -> None:
    torch.manual_seed(0)
    targets = [{"labels": torch.tensor([0]), "boxes": torch.tensor([[0.5, 0.5, 0.1, 0.1]])}]
    boxes = torch.tensor([[[0.5, 0.5, 0.1, 0.1], [0.1, 0.1, 0.05, 0.05]]])
    logits = torch.tensor([[[6.0], [-6.0]]])
    crit = SetCriterion(1, match_num=1, dynamic=False)
    out = {"logits": logits, "boxes": boxes, "aux": [], "enc": None}
    losses = crit(out, targets, (32, 32))
    assert losses["loss_l1"].item() == pytest.approx(0.0, abs=1e-6)
    assert losses["loss_giou"].item() == pytest.approx(0.0, abs=1e-6)
    assert 0 < losses["loss_class"].item() < 1e-3  # confident and right: tiny focal loss
    with_aux = crit({**out, "aux": [{"logits": logits, "boxes": boxes}]}, targets, (32, 32))
    assert with_aux["loss"].item() == pytest.approx(2 * losses["loss"].item())
    empty = [{"labels": torch.zeros(0, dtype=torch.long), "boxes": torch.zeros(0, 4)}]
    assert crit(out, empty, (32, 32))["loss"].item() > 0  # the positive logit is penalised
