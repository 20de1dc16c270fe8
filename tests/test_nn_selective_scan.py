"""Every selective-scan backend against the step-by-step reference, forward and backward."""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hsi.errors import ConfigError
from hsi.nn.selective_scan import (
    mamba_ssm_available,
    resolve_backend,
    selective_scan,
    selective_scan_reference,
)

# the module itself (``hsi.nn.selective_scan`` the attribute is the re-exported function)
scan_module = importlib.import_module("hsi.nn.selective_scan")

TOL = 1e-4


def _backends() -> list:
    """chunked always; mamba_ssm only where it can run (skipped, with the reason, elsewhere)."""
    reason = None
    if not torch.cuda.is_available():
        reason = "mamba_ssm backend needs a CUDA device (none here)"
    elif not mamba_ssm_available():
        reason = "mamba_ssm backend needs the mamba-ssm package (pip install 'hsi[gpu]')"
    triton_reason = None
    if not torch.cuda.is_available():
        triton_reason = "triton backend on CUDA needs a CUDA device (none here; the "
        triton_reason += "interpreted kernels are tested on CPU below)"
    elif importlib.util.find_spec("triton") is None:
        triton_reason = "triton backend needs Triton (bundled with PyTorch's CUDA wheels)"
    return [
        pytest.param("chunked", "cpu", id="chunked"),
        pytest.param(
            "mamba_ssm",
            "cuda",
            id="mamba_ssm",
            marks=pytest.mark.skipif(reason is not None, reason=reason or ""),
        ),
        pytest.param(
            "triton",
            "cuda",
            id="triton-cuda",
            marks=pytest.mark.skipif(triton_reason is not None, reason=triton_reason or ""),
        ),
    ]


def _inputs(
    batch: int,
    dim: int,
    n_state: int,
    length: int,
    groups: int | None = None,
    softplus: bool = True,
    delta_scale: float = 0.5,
    seed: int = 0,
    device: str = "cpu",
) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    bc_shape = (batch, n_state, length) if groups is None else (batch, groups, n_state, length)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen)

    tensors = {
        "u": randn(batch, dim, length),
        # raw Δ without softplus must be positive, as in Mamba (negative Δ grows h without bound)
        "delta": randn(batch, dim, length).abs_() * delta_scale
        if not softplus
        else randn(batch, dim, length) * delta_scale,
        "A": -(torch.rand(dim, n_state, generator=gen) * 2 + 0.2),
        "B": randn(*bc_shape),
        "C": randn(*bc_shape),
        "D": randn(dim),
        "z": randn(batch, dim, length),
        "delta_bias": randn(dim) * 0.5,
    }
    return {k: v.to(device) for k, v in tensors.items()}


def _strided(x: torch.Tensor) -> torch.Tensor:
    """The same values in a non-contiguous (last two dims swapped in memory) layout."""
    return x.mT.contiguous().mT if x.ndim >= 2 else x[::-1].contiguous()[::-1]


def _run(fn, tensors, options, grad_out, grad_last=None, **kwargs):
    """Output, last state and the gradients of every tensor argument.

    ``options["strided"]`` passes every ≥2-D input as a non-contiguous view;
    ``grad_last`` also backpropagates through the returned last state.
    """
    leaves = {k: v.detach().clone() for k, v in tensors.items()}
    if options.get("strided"):
        leaves = {k: _strided(v) if v.ndim >= 2 else v for k, v in leaves.items()}
        assert not leaves["u"].is_contiguous() and not leaves["B"].is_contiguous()
    leaves = {k: v.requires_grad_() for k, v in leaves.items()}
    args = {k: leaves[k] for k in ("u", "delta", "A", "B", "C")}
    for name in ("D", "z", "delta_bias"):
        if options.get(name):
            args[name] = leaves[name]
    out, last = fn(
        **args, delta_softplus=options.get("softplus", False), return_last_state=True, **kwargs
    )
    loss = (out * grad_out).sum()
    if grad_last is not None:
        loss = loss + (last * grad_last).sum()
    loss.backward()
    grads = {k: v.grad for k, v in leaves.items() if v.grad is not None}
    return out.detach(), last.detach(), grads


CASES = [
    # (batch, dim, n_state, length, groups, chunk, options)
    (2, 4, 3, 37, None, 8, {"D": True, "z": True, "delta_bias": True, "softplus": True}),
    (1, 6, 2, 64, None, 16, {}),
    (2, 6, 4, 29, 3, 8, {"D": True, "softplus": True}),
    (3, 4, 5, 5, None, 32, {"z": True, "delta_bias": True}),
    (2, 5, 3, 23, None, 1, {"D": True, "z": True, "softplus": True}),  # one step per chunk
    (2, 4, 3, 1, None, 4, {"D": True, "softplus": True}),  # a single step
    (2, 6, 3, 31, 2, 7, {"D": True, "z": True, "softplus": True, "strided": True}),
]


@pytest.mark.parametrize("backend,device", _backends())
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"L{c[3]}-chunk{c[5]}-g{c[4]}")
def test_backend_matches_reference_forward_and_backward(backend, device, case) -> None:
    batch, dim, n_state, length, groups, chunk, options = case
    softplus = options.get("softplus", False)
    tensors = _inputs(batch, dim, n_state, length, groups, softplus, device=device)
    grad_out = torch.randn(batch, dim, length, generator=torch.Generator().manual_seed(1))
    grad_out = grad_out.to(device)
    ref = _run(selective_scan_reference, tensors, options, grad_out)
    got = _run(selective_scan, tensors, options, grad_out, backend=backend, chunk_size=chunk)
    assert (got[0] - ref[0]).abs().max() <= TOL
    assert (got[1] - ref[1]).abs().max() <= TOL
    assert got[2].keys() == ref[2].keys()
    for name, grad in ref[2].items():
        err = (got[2][name] - grad).abs().max().item()
        assert err <= TOL, f"gradient of {name} differs by {err}"


@pytest.mark.parametrize(
    "delta_scale,mixed_sign",
    [(8.0, False), (0.3, True)],
    ids=["large-positive-delta", "mixed-sign-delta"],
)
def test_chunked_handles_large_and_mixed_sign_decays(delta_scale: float, mixed_sign: bool) -> None:
    """Δ·A summing far past float32's ``exp`` range within a chunk: finite, equal to the loop.

    (A closed form over a chunk would need ``exp(±Σ Δ·A)``; the chunked scan only ever
    exponentiates one step's ``Δ_t·A``, as the loop does.) ``mixed-sign-delta`` feeds raw
    Δ of both signs (no softplus, so the partial sums are not monotone) with A = −16,
    where some steps grow the state. The gradient of A sums over
    batch and steps and reaches ~100, so gradients are compared relative to their size
    (float32 rounding of such a sum alone is ~1e-6 of it).
    """
    # _inputs draws Δ of both signs when told softplus will follow; here none does
    tensors = _inputs(2, 3, 4, 40, softplus=mixed_sign, delta_scale=delta_scale)
    if mixed_sign:
        tensors["A"] = torch.full((3, 4), -16.0)
    options = {"D": True}
    grad_out = torch.randn(2, 3, 40, generator=torch.Generator().manual_seed(2))
    ref = _run(selective_scan_reference, tensors, options, grad_out)
    got = _run(selective_scan, tensors, options, grad_out, backend="chunked", chunk_size=16)
    assert torch.isfinite(got[0]).all()
    assert (got[0] - ref[0]).abs().max() <= TOL * max(1.0, ref[0].abs().max().item())
    for name, grad in ref[2].items():
        assert torch.isfinite(got[2][name]).all()
        scale = max(1.0, grad.abs().max().item())
        assert (got[2][name] - grad).abs().max() <= TOL * scale, name


def test_reference_matches_a_hand_unrolled_two_step_scan() -> None:
    u = torch.tensor([[[1.0, 2.0]]])  # batch 1, one channel, L = 2
    delta = torch.tensor([[[0.5, 0.25]]])
    A = torch.tensor([[-1.0]])
    B = torch.tensor([[[2.0, 3.0]]])
    C = torch.tensor([[[1.0, -1.0]]])
    D = torch.tensor([0.5])
    out = selective_scan_reference(u, delta, A, B, C, D)
    h0 = 0.5 * 2.0 * 1.0
    h1 = torch.exp(torch.tensor(-0.25)) * h0 + 0.25 * 3.0 * 2.0
    expected = torch.tensor([[[h0 + 0.5, -h1 + 1.0]]])
    torch.testing.assert_close(out, expected)


def test_low_precision_inputs_come_back_in_their_dtype() -> None:
    t = _inputs(1, 4, 2, 12)
    out = selective_scan(t["u"].bfloat16(), t["delta"].bfloat16(), t["A"], t["B"], t["C"])
    assert out.dtype == torch.bfloat16


def _triton_errors(case: tuple) -> dict[str, float]:
    """Largest differences between the triton backend and the reference on one case (output,
    last state, every gradient); run inside the interpreter process below."""
    batch, dim, n_state, length, groups, chunk, options = case
    tensors = _inputs(batch, dim, n_state, length, groups, options.get("softplus", False))
    grad_out = torch.randn(batch, dim, length, generator=torch.Generator().manual_seed(1))
    grad_last = torch.randn(batch, dim, n_state, generator=torch.Generator().manual_seed(2))
    ref = _run(selective_scan_reference, tensors, options, grad_out, grad_last)
    got = _run(
        selective_scan, tensors, options, grad_out, grad_last, backend="triton", chunk_size=chunk
    )
    errors = {"out": (got[0] - ref[0]).abs().max().item()}
    errors["last"] = (got[1] - ref[1]).abs().max().item()
    for name, grad in ref[2].items():
        other = got[2].get(name)
        errors[name] = float("inf") if other is None else (other - grad).abs().max().item()
    return errors


TRITON_CASES = [
    *CASES,
    # 80 channels in 2 groups of 40: two channel blocks (32 + 8) per group, N = 5 padded to 8
    (1, 80, 5, 9, 2, 4, {"D": True, "softplus": True}),
    # a Mamba block's shape: 64 channels, 16 states, 100 steps in chunks of 32
    (2, 64, 16, 100, None, 32, {"D": True, "z": True, "delta_bias": True, "softplus": True}),
]

_INTERPRETED = """
import json, sys
sys.path.insert(0, sys.argv[1])
import test_nn_selective_scan as t
from hsi.nn.selective_scan_triton import _blocks
assert _blocks(40, 5) == (32, 8, 2)
print(json.dumps([t._triton_errors(case) for case in t.TRITON_CASES]))
"""


@pytest.fixture(scope="module")
def interpreted_triton_errors() -> list[dict[str, float]]:
    """hsi's Triton kernels run in Triton's CPU interpreter, so their arithmetic is checked on
    machines without a GPU. A fresh process: TRITON_INTERPRET is read when Triton and each
    kernel are first imported, so it cannot be switched on inside this one."""
    if importlib.util.find_spec("triton") is None:
        pytest.skip("Triton is not installed with this torch build")
    env = {**os.environ, "TRITON_INTERPRET": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", _INTERPRETED, str(Path(__file__).parent)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "index", range(len(TRITON_CASES)), ids=lambda i: "L{3}-chunk{5}-g{4}".format(*TRITON_CASES[i])
)
def test_triton_kernels_match_reference_forward_and_backward(
    interpreted_triton_errors, index
) -> None:
    errors = interpreted_triton_errors[index]
    expected = {"out", "last", "u", "delta", "A", "B", "C"}
    expected |= {k for k in ("D", "z", "delta_bias") if TRITON_CASES[index][6].get(k)}
    assert set(errors) == expected
    worst = {k: v for k, v in errors.items() if not v <= TOL}
    assert not worst, f"triton differs from the reference: {worst}"


def test_auto_picks_the_chunked_scan_without_mamba_ssm() -> None:
    assert resolve_backend("auto", torch.device("cpu")) == "chunked"
    if importlib.util.find_spec("triton") is not None and not mamba_ssm_available():
        # CUDA tensors without mamba-ssm get hsi's own kernels (no tensor is made here)
        assert resolve_backend("auto", torch.device("cuda")) == "triton"
    assert resolve_backend("auto", torch.device("cpu"), width=64 * 64 * 16) == "chunked"


def test_chunked_gradient_through_the_last_state_and_capped_chunks(monkeypatch) -> None:
    """Backprop through the returned state too, with chunks cut below ``chunk_size``.

    A tiny ``_TILE_ELEMENTS`` forces the chunked scan to use fewer steps per chunk than it
    was asked for (2 · 4 · 3 = 24 elements per step, so 2 steps), as it does on wide inputs.
    """
    monkeypatch.setattr(scan_module, "_TILE_ELEMENTS", 50)
    options = {"D": True, "z": True, "softplus": True}
    tensors = _inputs(2, 4, 3, 19)
    gen = torch.Generator().manual_seed(3)
    grad_out = torch.randn(2, 4, 19, generator=gen)
    grad_last = torch.randn(2, 4, 3, generator=gen)
    ref = _run(selective_scan_reference, tensors, options, grad_out, grad_last)
    got = _run(
        selective_scan, tensors, options, grad_out, grad_last, backend="chunked", chunk_size=16
    )
    assert (got[0] - ref[0]).abs().max() <= TOL
    assert (got[1] - ref[1]).abs().max() <= TOL
    for name, grad in ref[2].items():
        assert (got[2][name] - grad).abs().max() <= TOL, name


def test_chunked_backward_passes_gradcheck_in_float64() -> None:
    """The hand-written backward against finite differences (not only against autograd)."""
    t = {k: v.double() for k, v in _inputs(1, 4, 2, 6, groups=2).items()}
    names = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")
    leaves = [t[k].requires_grad_() for k in names]

    def fn(*args: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        kwargs = dict(zip(names, args, strict=True))
        return selective_scan(
            **kwargs, delta_softplus=True, return_last_state=True, backend="chunked", chunk_size=4
        )

    assert torch.autograd.gradcheck(fn, leaves, eps=1e-6, atol=1e-6)


def test_empty_sequence_gives_empty_output() -> None:
    t = _inputs(2, 4, 3, 0)
    out, last = selective_scan(
        t["u"], t["delta"], t["A"], t["B"], t["C"], return_last_state=True, backend="chunked"
    )
    assert out.shape == (2, 4, 0) and last.shape == (2, 4, 3) and not last.any()


def test_backend_errors_are_clear() -> None:
    t = _inputs(1, 2, 2, 4)
    with pytest.raises(ConfigError, match="unknown selective-scan backend 'fast'"):
        selective_scan(t["u"], t["delta"], t["A"], t["B"], t["C"], backend="fast")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="needs CUDA tensors and the mamba-ssm package"):
            selective_scan(t["u"], t["delta"], t["A"], t["B"], t["C"], backend="mamba_ssm")
        if os.environ.get("TRITON_INTERPRET") != "1":
            with pytest.raises(ConfigError, match="'triton' needs CUDA tensors and Triton"):
                selective_scan(t["u"], t["delta"], t["A"], t["B"], t["C"], backend="triton")


def test_shape_errors_name_the_expected_shape() -> None:
    t = _inputs(2, 4, 3, 5)
    with pytest.raises(ConfigError, match=r"B must be real \(batch=2, d_state=3, length=5\)"):
        selective_scan(t["u"], t["delta"], t["A"], t["B"][:, :, :4], t["C"])
    with pytest.raises(ConfigError, match=r"D must have shape \(4,\)"):
        selective_scan(t["u"], t["delta"], t["A"], t["B"], t["C"], D=torch.ones(3))
    with pytest.raises(ConfigError, match="chunk_size must be >= 1"):
        selective_scan(t["u"], t["delta"], t["A"], t["B"], t["C"], backend="chunked", chunk_size=0)
