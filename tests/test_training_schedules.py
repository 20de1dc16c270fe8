"""The epoch-set learning-rate schedule (HSDT/QRNN3D's ``{epoch: lr}`` tables)."""

from __future__ import annotations

import pytest
import torch

from hsi.errors import ConfigError
from hsi.tasks import RestorationTask
from hsi.tasks.training import cpu_fused, epoch_set_scheduler, make_optimizer

# HSDT's first-stage ICVL table (hsir/schedule.py, denoise_default), as the configs write it
HSDT_DEFAULT = {0: 1e-3, 20: 1e-4, 30: 1e-3, 45: 1e-4, 55: 5e-5, 60: 1e-5, 65: 5e-6, 75: 1e-6}


def _rates(sched: torch.optim.lr_scheduler.LRScheduler, epochs: int) -> list[float]:
    opt = sched.optimizer
    rates = []
    for _ in range(epochs):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return rates


def test_epoch_set_follows_the_table_down_and_back_up() -> None:
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    rates = _rates(epoch_set_scheduler(opt, 1e-3, HSDT_DEFAULT), 80)
    expected = [
        next(HSDT_DEFAULT[s] for s in sorted(HSDT_DEFAULT, reverse=True) if s <= e)
        for e in range(80)
    ]
    assert rates == pytest.approx(expected, rel=1e-9)
    assert rates[19] == pytest.approx(1e-3) and rates[20] == pytest.approx(1e-4)
    assert rates[30] == pytest.approx(1e-3)  # back up: what MultiStepLR cannot do
    assert rates[79] == pytest.approx(1e-6)


def test_epoch_set_keeps_base_lr_before_the_first_entry_and_takes_string_keys() -> None:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=2e-3)
    # YAML/JSON mappings may arrive with string keys; epochs before 80 keep the base rate
    rates = _rates(epoch_set_scheduler(opt, 2e-3, {"80": 1e-3, "90": 5e-4}), 95)
    assert rates[0] == pytest.approx(2e-3) and rates[79] == pytest.approx(2e-3)
    assert rates[80] == pytest.approx(1e-3) and rates[94] == pytest.approx(5e-4)


@pytest.mark.parametrize("table", [{}, {"x": 1e-3}, {-1: 1e-3}, {0: 0.0}, {0: "fast"}], ids=str)
def test_epoch_set_refuses_bad_tables(table: dict) -> None:
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    with pytest.raises(ConfigError):
        epoch_set_scheduler(opt, 1e-3, table)


def test_restoration_task_builds_the_epoch_set_schedule() -> None:
    task = RestorationTask(
        model="hsdt_s", in_bands=8, scale=1, lr=1e-3, scheduler="epoch_set",
        lr_schedule={0: 1e-3, 2: 1e-4},
    )  # fmt: skip
    config = task.configure_optimizers()
    assert _rates(config["lr_scheduler"], 3) == pytest.approx([1e-3, 1e-3, 1e-4])


@pytest.mark.parametrize(("scheduler", "lr_schedule"), [("epoch_set", None), ("cosine", {0: 1e-3})])
def test_restoration_task_pairs_lr_schedule_with_epoch_set(scheduler, lr_schedule) -> None:
    with pytest.raises(ConfigError, match="epoch_set"):
        RestorationTask(model="hsdt_s", scheduler=scheduler, lr_schedule=lr_schedule)


def test_adam_is_fused_on_the_cpu_and_matches_the_default_update() -> None:
    """Why fused on the CPU: the same update, 3-4x faster for large models (see cpu_fused)."""
    torch.manual_seed(0)
    weights = [torch.randn(5, 3), torch.randn(7)]
    grads = [torch.randn_like(w) for w in weights]
    results = []
    for fused in (True, False):
        params = [torch.nn.Parameter(w.clone()) for w in weights]
        if fused:
            opt = make_optimizer(params, "adamw", lr=0.1, weight_decay=0.01)
            assert opt.defaults["fused"] is True
        else:
            opt = torch.optim.AdamW(params, lr=0.1, weight_decay=0.01)
            assert not opt.defaults["fused"]
        for _ in range(3):
            for p, g in zip(params, grads, strict=True):
                p.grad = g.clone()
            opt.step()
        results.append(params)
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert make_optimizer([torch.nn.Parameter(torch.ones(2))], "sgd", 0.1, 0.0).defaults.get(
        "fused"
    ) in (None, False)


def test_cpu_fused_reads_param_groups_and_leaves_other_cases_to_the_default() -> None:
    p = torch.nn.Parameter(torch.ones(2))
    assert cpu_fused([{"params": [p]}, {"params": [p], "lr": 0.1}]) == {"fused": True}
    assert cpu_fused([]) == {}
    assert cpu_fused([torch.ones(2, dtype=torch.int64)]) == {}  # not a float tensor
    assert cpu_fused([torch.nn.Parameter(torch.ones(2, device="meta"))]) == {}  # not the CPU


def test_optimizer_state_moves_between_fused_and_default_adam() -> None:
    """A run resumed elsewhere (CPU checkpoint on a GPU, or one made before hsi fused the
    CPU update) loads its optimizer state either way and goes on stepping."""
    p = [torch.nn.Parameter(torch.randn(4, 3))]
    default = torch.optim.AdamW(p, lr=0.1)
    p[0].grad = torch.ones(4, 3)
    default.step()
    fused = make_optimizer(p, "adamw", 0.1, 0.01)
    fused.load_state_dict(default.state_dict())
    fused.step()
    again = torch.optim.AdamW(p, lr=0.1)
    again.load_state_dict(fused.state_dict())
    again.step()
    assert again.state[p[0]]["step"].item() == 3 and torch.isfinite(p[0]).all()
