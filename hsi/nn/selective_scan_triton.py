"""Selective scan as our own Triton kernels: the CUDA path when ``mamba_ssm`` is missing.

Why: ``mamba_ssm`` is source-only on PyPI and does not build without nvcc, so most GPU users
of hsi will not have it; the chunked PyTorch scan runs everywhere but launches a few kernels
per time step. Triton ships with PyTorch's CUDA wheels and compiles at run time, so this path
needs no build step. The kernels are written from the recurrence in
:mod:`hsi.nn.selective_scan` (Gu & Dao 2023, Algorithm 2); none of ``mamba_ssm``'s code is
used.

Work split: PyTorch does the element-wise parts that autograd already differentiates
(``softplus(delta + delta_bias)``, the ``D·u`` skip, the ``silu(z)`` gate); the kernels do the
recurrence, the part that needs a fused loop over time::

    h_t = exp(Δ_t · A) ⊙ h_{t-1} + Δ_t · u_t · B_t        y_t = Σ_n C_t[n] · h_t[n]

**Forward** (:func:`_scan_fwd_kernel`): one program per (batch item, group of B/C, block of
channels) holds the block's states ``(BLOCK_D, N)`` in registers and walks the sequence once.
Every ``CHUNK`` steps (``chunk_size``) it writes the state entering the chunk to a
checkpoint buffer.

**Backward** (:func:`_scan_bwd_kernel`): the same programs walk the chunks in reverse. For
each chunk they recompute the states from its checkpoint into a scratch buffer, then run the
adjoint recurrence backwards through it::

    G_t = C_t · ȳ_t + exp(Δ_{t+1} A) ⊙ G_{t+1}          (G: ∂loss/∂h_t, G_L from h_last)
    ∂Δ_t = Σ_n G_t ⊙ exp(Δ_t A) ⊙ A ⊙ h_{t-1} + u_t Σ_n G_t B_t
    ∂u_t = Δ_t Σ_n G_t B_t        ∂A += G_t ⊙ exp(Δ_t A) ⊙ Δ_t h_{t-1}
    ∂B_t = Σ_d G_t Δ_t u_t        ∂C_t = Σ_d ȳ_t h_t

The sums over channels (∂B, ∂C) and over batch and time (∂A) are written per program and
reduced in PyTorch, so no atomics are needed and the result is deterministic. Memory beyond
the inputs: the checkpoints (``L / CHUNK`` states) and one chunk of scratch states.

All arithmetic is float32. Without a GPU the kernels run in Triton's interpreter when
``TRITON_INTERPRET=1`` is set before this module is imported; the tests use that to check
them against the reference scan on any machine.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from hsi.errors import ConfigError
from hsi.nn.selective_scan import _Prepared, effective_delta, resolve_backend, skip_and_gate

try:  # Triton comes with PyTorch's CUDA wheels on Linux; elsewhere it may be missing
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the platform's torch wheel
    triton = None
    tl = None

#: default time steps between two saved states (the backward recomputes one chunk at a time)
CHUNK = 32


def interpreting() -> bool:
    """Whether the kernels run in Triton's CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def triton_available(device: torch.device) -> bool:
    """Whether the Triton scan can run on tensors of ``device``."""
    if triton is None:
        return False
    if device.type == "cuda":
        return True
    return device.type == "cpu" and interpreting()


if triton is not None:

    @triton.jit
    def _program_tile(a_ptr, dim, per_group, n_state, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr):
        """This program's batch item, group, channels and states: indices, masks, its tile of
        A and the offsets of its tile in a (batch, D, N) state buffer."""
        b = tl.program_id(0)
        g = tl.program_id(1)
        block = tl.program_id(2)
        within = block * BLOCK_D + tl.arange(0, BLOCK_D)
        mask_d = within < per_group
        chan = g * per_group + within
        offs_n = tl.arange(0, BLOCK_N)
        mask_n = offs_n < n_state
        mask_dn = mask_d[:, None] & mask_n[None, :]
        a = tl.load(a_ptr + chan[:, None] * n_state + offs_n[None, :], mask=mask_dn, other=0.0)
        state_offs = b * dim * n_state + chan[:, None] * n_state + offs_n[None, :]
        return b, g, block, chan, mask_d, offs_n, mask_n, mask_dn, a, state_offs

    @triton.jit
    def _step_offsets(t, length, batch, dim, n_groups, n_state, b, g, chan, offs_n):
        """Whether step t exists, and its offsets in the (L, batch, D) and (L, batch, G, N)
        buffers for this program's channels and states."""
        row = t * batch * dim + b * dim + chan
        bc = (t * batch + b) * n_groups * n_state + g * n_state + offs_n
        return t < length, row, bc

    @triton.jit
    def _scan_fwd_kernel(
        dt_ptr,  # (L, batch, D) Δ
        x_ptr,  # (L, batch, D) u
        a_ptr,  # (D, N)
        b_ptr,  # (L, batch, G, N)
        c_ptr,  # (L, batch, G, N)
        y_ptr,  # (L, batch, D) out: Σ_n C h
        ckpt_ptr,  # (n_chunks, batch, D, N) out: the state entering each chunk
        last_ptr,  # (batch, D, N) out: h_L
        length,
        batch,
        dim,
        n_groups,
        per_group,
        n_state,
        n_chunks,
        CHUNK: tl.constexpr,
        BLOCK_D: tl.constexpr,
        BLOCK_N: tl.constexpr,
    ):
        b, g, block, chan, mask_d, offs_n, mask_n, mask_dn, a, state_offs = _program_tile(
            a_ptr, dim, per_group, n_state, BLOCK_D, BLOCK_N
        )
        h = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
        for c in range(0, n_chunks):
            tl.store(ckpt_ptr + c * batch * dim * n_state + state_offs, h, mask=mask_dn)
            for s in range(0, CHUNK):
                valid, row, bc = _step_offsets(
                    c * CHUNK + s, length, batch, dim, n_groups, n_state, b, g, chan, offs_n
                )
                dt = tl.load(dt_ptr + row, mask=mask_d & valid, other=0.0)
                x = tl.load(x_ptr + row, mask=mask_d & valid, other=0.0)
                bt = tl.load(b_ptr + bc, mask=mask_n & valid, other=0.0)
                ct = tl.load(c_ptr + bc, mask=mask_n & valid, other=0.0)
                # a step past the end has Δ = 0: exp(0) = 1 and no input, h is unchanged
                h = tl.exp(dt[:, None] * a) * h + (dt * x)[:, None] * bt[None, :]
                y = tl.sum(h * ct[None, :], axis=1)
                tl.store(y_ptr + row, y, mask=mask_d & valid)
        tl.store(last_ptr + state_offs, h, mask=mask_dn)

    @triton.jit
    def _scan_bwd_kernel(
        dt_ptr,  # (L, batch, D)
        x_ptr,  # (L, batch, D)
        a_ptr,  # (D, N)
        b_ptr,  # (L, batch, G, N)
        c_ptr,  # (L, batch, G, N)
        gy_ptr,  # (L, batch, D) ∂loss/∂y
        glast_ptr,  # (batch, D, N) ∂loss/∂h_L
        ckpt_ptr,  # (n_chunks, batch, D, N) from the forward
        scratch_ptr,  # (CHUNK, batch, D, N) states entering each step of the current chunk
        gdt_ptr,  # (L, batch, D) out
        gx_ptr,  # (L, batch, D) out
        ga_ptr,  # (batch, D, N) out: this item's share of ∂A
        gb_ptr,  # (L, batch, G, n_blocks, N) out: this block's share of ∂B
        gc_ptr,  # (L, batch, G, n_blocks, N) out: this block's share of ∂C
        length,
        batch,
        dim,
        n_groups,
        per_group,
        n_state,
        n_chunks,
        n_blocks,
        CHUNK: tl.constexpr,
        BLOCK_D: tl.constexpr,
        BLOCK_N: tl.constexpr,
    ):
        b, g, block, chan, mask_d, offs_n, mask_n, mask_dn, a, state_offs = _program_tile(
            a_ptr, dim, per_group, n_state, BLOCK_D, BLOCK_N
        )
        big_g = tl.load(glast_ptr + state_offs, mask=mask_dn, other=0.0)
        grad_a = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
        part = ((b * n_groups + g) * n_blocks + block) * n_state + offs_n
        part_step = batch * n_groups * n_blocks * n_state
        for ci in range(0, n_chunks):
            c = n_chunks - 1 - ci
            # recompute the chunk's states from its checkpoint: scratch[s] = h_{t-1}
            h = tl.load(ckpt_ptr + c * batch * dim * n_state + state_offs, mask=mask_dn, other=0.0)
            for s in range(0, CHUNK):
                valid, row, bc = _step_offsets(
                    c * CHUNK + s, length, batch, dim, n_groups, n_state, b, g, chan, offs_n
                )
                tl.store(scratch_ptr + s * batch * dim * n_state + state_offs, h, mask=mask_dn)
                dt = tl.load(dt_ptr + row, mask=mask_d & valid, other=0.0)
                x = tl.load(x_ptr + row, mask=mask_d & valid, other=0.0)
                bt = tl.load(b_ptr + bc, mask=mask_n & valid, other=0.0)
                h = tl.exp(dt[:, None] * a) * h + (dt * x)[:, None] * bt[None, :]
            # then walk the chunk backwards with the adjoint state G = ∂loss/∂h_t
            for si in range(0, CHUNK):
                s = CHUNK - 1 - si
                t = c * CHUNK + s
                valid, row, bc = _step_offsets(
                    t, length, batch, dim, n_groups, n_state, b, g, chan, offs_n
                )
                dt = tl.load(dt_ptr + row, mask=mask_d & valid, other=0.0)
                x = tl.load(x_ptr + row, mask=mask_d & valid, other=0.0)
                gy = tl.load(gy_ptr + row, mask=mask_d & valid, other=0.0)
                bt = tl.load(b_ptr + bc, mask=mask_n & valid, other=0.0)
                ct = tl.load(c_ptr + bc, mask=mask_n & valid, other=0.0)
                h_prev = tl.load(
                    scratch_ptr + s * batch * dim * n_state + state_offs, mask=mask_dn, other=0.0
                )
                decay = tl.exp(dt[:, None] * a)
                h_t = decay * h_prev + (dt * x)[:, None] * bt[None, :]
                big_g += gy[:, None] * ct[None, :]
                g_decay = big_g * h_prev * decay  # ∂loss/∂(Δ·A) at this step
                g_bx = tl.sum(big_g * bt[None, :], axis=1)  # Σ_n G B
                gdt = tl.sum(g_decay * a, axis=1) + g_bx * x
                tl.store(gdt_ptr + row, gdt, mask=mask_d & valid)
                tl.store(gx_ptr + row, g_bx * dt, mask=mask_d & valid)
                grad_a += g_decay * dt[:, None]
                gb = tl.sum(big_g * (dt * x)[:, None], axis=0)
                gc = tl.sum(gy[:, None] * h_t, axis=0)
                tl.store(gb_ptr + t * part_step + part, gb, mask=mask_n & valid)
                tl.store(gc_ptr + t * part_step + part, gc, mask=mask_n & valid)
                big_g = big_g * decay  # carried to h_{t-1}
        tl.store(ga_ptr + state_offs, grad_a, mask=mask_dn)


def _blocks(per_group: int, n_state: int) -> tuple[int, int, int]:
    """``(BLOCK_D, BLOCK_N, n_blocks)``: power-of-two tiles (Triton's rule) covering a group's
    channels (at most 32 per program, so the state tile stays in registers) and the states."""
    block_n = triton.next_power_of_2(n_state)
    block_d = min(triton.next_power_of_2(per_group), 32)
    return block_d, block_n, triton.cdiv(per_group, block_d)


def _time_major(x: torch.Tensor) -> torch.Tensor:
    """(batch, ..., L) -> (L, batch, ...), contiguous float32."""
    return x.float().movedim(-1, 0).contiguous()


class _TritonScan(torch.autograd.Function):
    """``(Δ, u, A, B, C)`` -> ``(y, h_L)`` with the kernels above; B, C ``(batch, G, N, L)``."""

    @staticmethod
    def forward(
        ctx: Any, dt: torch.Tensor, x: torch.Tensor, a: torch.Tensor, bm: torch.Tensor,
        cm: torch.Tensor, chunk: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        batch, dim, length = dt.shape
        groups, n_state = bm.shape[1], a.shape[1]
        per_group = dim // groups
        block_d, block_n, n_blocks = _blocks(per_group, n_state)
        n_chunks = triton.cdiv(length, chunk)
        dt_t, x_t, b_t, c_t = (_time_major(v) for v in (dt, x, bm, cm))
        a = a.float().contiguous()
        kw = {"device": dt.device, "dtype": torch.float32}
        y = torch.empty(length, batch, dim, **kw)
        ckpt = torch.empty(n_chunks, batch, dim, n_state, **kw)
        last = torch.empty(batch, dim, n_state, **kw)
        sizes = (length, batch, dim, groups, per_group, n_state, n_chunks)
        _scan_fwd_kernel[(batch, groups, n_blocks)](
            dt_t, x_t, a, b_t, c_t, y, ckpt, last, *sizes,
            CHUNK=chunk, BLOCK_D=block_d, BLOCK_N=block_n,
        )  # fmt: skip
        ctx.save_for_backward(dt_t, x_t, a, b_t, c_t, ckpt)
        ctx.sizes, ctx.chunk = sizes, chunk
        return y.permute(1, 2, 0), last

    @staticmethod
    def backward(
        ctx: Any, grad_y: torch.Tensor | None, grad_last: torch.Tensor | None
    ) -> tuple[torch.Tensor, ...]:
        dt_t, x_t, a, b_t, c_t, ckpt = ctx.saved_tensors
        length, batch, dim, groups, per_group, n_state, n_chunks = ctx.sizes
        block_d, block_n, n_blocks = _blocks(per_group, n_state)
        kw = {"device": dt_t.device, "dtype": torch.float32}
        gy = torch.zeros(length, batch, dim, **kw) if grad_y is None else _time_major(grad_y)
        if grad_last is None:
            grad_last = torch.zeros(batch, dim, n_state, **kw)
        grad_last = grad_last.float().contiguous()
        scratch = torch.empty(ctx.chunk, batch, dim, n_state, **kw)
        gdt, gx = torch.empty_like(dt_t), torch.empty_like(x_t)
        ga = torch.empty(batch, dim, n_state, **kw)
        gb = torch.empty(length, batch, groups, n_blocks, n_state, **kw)
        gc = torch.empty_like(gb)
        _scan_bwd_kernel[(batch, groups, n_blocks)](
            dt_t, x_t, a, b_t, c_t, gy, grad_last, ckpt, scratch, gdt, gx, ga, gb, gc,
            *ctx.sizes, n_blocks, CHUNK=ctx.chunk, BLOCK_D=block_d, BLOCK_N=block_n,
        )  # fmt: skip
        # (L, batch, G, blocks, N) -> (batch, G, N, L), summed over the channel blocks
        grad_b = gb.sum(3).permute(1, 2, 3, 0)
        grad_c = gc.sum(3).permute(1, 2, 3, 0)
        return gdt.permute(1, 2, 0), gx.permute(1, 2, 0), ga.sum(0), grad_b, grad_c, None


def selective_scan_triton(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    chunk_size: int = CHUNK,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """:func:`hsi.nn.selective_scan.selective_scan` on the Triton kernels (same arguments,
    shapes, checks and result; ``selective_scan(..., backend="triton")`` calls it)."""
    resolve_backend("triton", u.device)  # the one error for a missing GPU or Triton
    if chunk_size < 1:
        raise ConfigError(f"chunk_size must be >= 1, got {chunk_size}")
    bm, cm, _ = _Prepared.check(u, delta, A, B, C, D, z, delta_bias)  # B, C as (b, G, N, L)
    dt = effective_delta(delta, delta_bias, delta_softplus, torch.float32)
    x = u.float()
    y, last = _TritonScan.apply(dt, x, A, bm, cm, chunk_size)
    y = skip_and_gate(y, x, None if D is None else D.float(), z).to(u.dtype)
    return (y, last) if return_last_state else y
