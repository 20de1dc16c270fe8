"""The Mamba block, and Mamba scans over a 2-D token grid.

Gu, A., Dao, T. "Mamba: Linear-Time Sequence Modeling with Selective State Spaces",
arXiv:2312.00752, 2023 (Figure 3, Section 3.4; initialisation in Section 3.6 and
Appendix). Reference code: github.com/state-spaces/mamba (``mamba_ssm.modules.mamba_simple``).

Why Mamba for hyperspectral images: the S6 scan mixes a sequence of tokens (pixels of a
patch, or groups of bands) in time linear in their number, with input-dependent
forgetting, which HSI classifiers (e.g. SpectralMamba, MambaHSI, 3DSS-Mamba) use in place of
self-attention.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from hsi.errors import ConfigError
from hsi.nn.selective_scan import Backend, selective_scan


class Mamba(nn.Module):
    """One Mamba mixer: ``(B, L, d_model)`` → ``(B, L, d_model)``, causal along ``L``.

    Layers, with ``d_inner = expand · d_model`` and ``dt_rank = ⌈d_model / 16⌉`` ("auto"),
    as in the reference ``mamba_simple.Mamba``:

    - ``in_proj``: Linear ``d_model → 2·d_inner`` (no bias), split into ``x`` and gate ``z``
    - ``conv1d``: depthwise causal Conv1d over ``L``, kernel ``d_conv``, with bias; SiLU
    - ``x_proj``: Linear ``d_inner → dt_rank + 2·d_state`` (no bias) → ``Δ`` (low rank),
      ``B``, ``C``, all input-dependent (the "selective" part)
    - ``dt_proj``: Linear ``dt_rank → d_inner`` with bias; ``Δ = softplus(dt_proj(·))``
    - ``A = −exp(A_log)``, ``A_log`` ``(d_inner, d_state)``; ``D`` ``(d_inner,)``
    - :func:`~hsi.nn.selective_scan.selective_scan`, gated by ``SiLU(z)``
    - ``out_proj``: Linear ``d_inner → d_model`` (no bias)

    Initialisation (paper, Section 3.6 / reference code): ``A_log = log(1..d_state)`` for
    every channel (S4D-Real), ``D = 1``, ``dt_proj.weight ~ U(±dt_scale·dt_rank^-1/2)``, and
    ``dt_proj.bias = softplus⁻¹(dt)`` with ``dt`` log-uniform in ``[dt_min, dt_max]``
    (floored at ``dt_init_floor``), so that ``Δ`` starts at time scales ``1e-3 … 1e-1``.
    ``A_log`` and ``D`` carry ``_no_weight_decay = True`` as in the reference.

    Parameters for ``d_model=64`` (defaults): 16,384 + 640 + 4,608 + 640 + 2,048 + 128 +
    8,192 = 32,640.
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | Literal["auto"] = "auto",
        dt_min: float = 1e-3,
        dt_max: float = 0.1,
        dt_init_floor: float = 1e-4,
        dt_scale: float = 1.0,
        conv_bias: bool = True,
        bias: bool = False,
        backend: Backend = "auto",
        chunk_size: int = 32,
    ) -> None:
        super().__init__()
        if min(d_model, d_state, d_conv, expand) < 1:
            raise ConfigError(
                f"Mamba sizes must be >= 1, got d_model={d_model}, d_state={d_state}, "
                f"d_conv={d_conv}, expand={expand}"
            )
        if not 0 < dt_min <= dt_max:
            raise ConfigError(f"Mamba needs 0 < dt_min <= dt_max, got {dt_min}, {dt_max}")
        self.d_model = d_model
        self.d_state = d_state
        self.d_conv = d_conv
        self.d_inner = expand * d_model
        if dt_rank == "auto":
            dt_rank = math.ceil(d_model / 16)
        if not isinstance(dt_rank, int) or dt_rank < 1:
            raise ConfigError(f"Mamba dt_rank must be 'auto' or an int >= 1, got {dt_rank!r}")
        self.dt_rank = dt_rank
        self.backend = backend
        self.chunk_size = chunk_size

        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=bias)
        self.conv1d = nn.Conv1d(
            self.d_inner,
            self.d_inner,
            kernel_size=d_conv,
            groups=self.d_inner,
            padding=d_conv - 1,
            bias=conv_bias,
        )
        self.x_proj = nn.Linear(self.d_inner, dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(dt_rank, self.d_inner, bias=True)
        self.A_log = nn.Parameter(torch.empty(self.d_inner, d_state))
        self.D = nn.Parameter(torch.empty(self.d_inner))
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias)
        self.A_log._no_weight_decay = True  # type: ignore[attr-defined]
        self.D._no_weight_decay = True  # type: ignore[attr-defined]
        self._dt_init = (dt_min, dt_max, dt_init_floor, dt_scale)
        self.reset_ssm_parameters()

    @torch.no_grad()
    def reset_ssm_parameters(self) -> None:
        """The paper's initialisation of ``dt_proj``, ``A_log`` and ``D`` (see class doc)."""
        dt_min, dt_max, floor, dt_scale = self._dt_init
        bound = dt_scale * self.dt_rank**-0.5
        nn.init.uniform_(self.dt_proj.weight, -bound, bound)
        log_dt = torch.rand(self.d_inner) * (math.log(dt_max) - math.log(dt_min))
        dt = torch.exp(log_dt + math.log(dt_min)).clamp(min=floor)
        # softplus⁻¹(dt) = dt + log(1 − e^{−dt}), so softplus(bias) is exactly dt
        self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        states = torch.arange(1, self.d_state + 1, dtype=torch.float32)
        self.A_log.copy_(torch.log(states).expand(self.d_inner, -1))
        self.D.fill_(1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 3 or x.shape[-1] != self.d_model:
            raise ConfigError(
                f"Mamba expects (batch, length, {self.d_model}) tokens, got {tuple(x.shape)}"
            )
        length = x.shape[1]
        xz = self.in_proj(x).transpose(1, 2)  # (B, 2·d_inner, L)
        u, z = xz.chunk(2, dim=1)
        u = F.silu(self.conv1d(u)[..., :length])  # causal: drop the right-hand padding
        dt, B, C = self.x_proj(u.transpose(1, 2)).split(
            [self.dt_rank, self.d_state, self.d_state], dim=-1
        )
        # dt_proj's bias goes in as delta_bias, added before the softplus inside the scan
        delta = F.linear(dt, self.dt_proj.weight).transpose(1, 2)  # (B, d_inner, L)
        y = selective_scan(
            u,
            delta,
            -torch.exp(self.A_log.float()),
            B.transpose(1, 2),
            C.transpose(1, 2),
            self.D.float(),
            z=z,
            delta_bias=self.dt_proj.bias.float(),
            delta_softplus=True,
            backend=self.backend,
            chunk_size=self.chunk_size,
        )
        return self.out_proj(y.transpose(1, 2))


class Mamba2DScan(nn.Module):
    """Mamba over a ``(B, H, W, C)`` token grid read as one row-major sequence.

    ``directions="uni"``: one :class:`Mamba` over the ``H·W`` tokens in row-major order
    (causal in that order). ``directions="bi"``: a second, independent :class:`Mamba`
    reads the same sequence reversed; its output is flipped back and the two are
    **averaged**, so every token sees the whole grid and the output keeps the scale of the
    single-direction block (a residual stream sees the same magnitude whichever is chosen).
    Extra keyword arguments go to :class:`Mamba`. Output ``(B, H, W, C)``.
    """

    def __init__(
        self, d_model: int, directions: Literal["uni", "bi"] = "uni", **mamba_kwargs
    ) -> None:
        super().__init__()
        if directions not in ("uni", "bi"):
            raise ConfigError(f"Mamba2DScan directions must be 'uni' or 'bi', got {directions!r}")
        self.d_model = d_model
        self.directions = directions
        self.forward_scan = Mamba(d_model, **mamba_kwargs)
        self.backward_scan = Mamba(d_model, **mamba_kwargs) if directions == "bi" else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[-1] != self.d_model:
            raise ConfigError(
                f"Mamba2DScan expects (B, H, W, {self.d_model}) token grids, got {tuple(x.shape)}"
            )
        batch, height, width, channels = x.shape
        tokens = x.reshape(batch, height * width, channels)
        out = self.forward_scan(tokens)
        if self.backward_scan is not None:
            back = self.backward_scan(tokens.flip(1)).flip(1)
            out = 0.5 * (out + back)
        return out.reshape(batch, height, width, channels)
