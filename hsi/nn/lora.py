"""Low-rank adaptation (LoRA) of linear layers, for fine-tuning pretrained backbones.

Hu, E. J., Shen, Y., Wallis, P., Allen-Zhu, Z., Li, Y., Wang, S., Wang, L., Chen, W.
"LoRA: Low-Rank Adaptation of Large Language Models", ICLR 2022, arXiv:2106.09685.
Reference code: github.com/microsoft/LoRA (``loralib``).

Why: adapting a transformer/Mamba backbone pretrained on one sensor or scene to another
with few labelled pixels. Freezing the pretrained ``W`` and learning ``ΔW = (α/r)·B·A``
with ``r ≪ min(in, out)`` trains a few percent of the parameters, overfits less, and the
update can be folded back into ``W`` (:meth:`LoRALinear.merge`) so inference costs nothing
extra. As in the paper, ``B`` starts at zero, so the adapted model starts exactly equal to
the pretrained one; ``A`` gets Kaiming-uniform noise (``loralib``'s choice).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from hsi.errors import ConfigError


class LoRALinear(nn.Module):
    """``y = base(x) + (alpha / rank) · dropout(x) Aᵀ Bᵀ`` with the ``base`` Linear frozen.

    ``A`` is ``(rank, in_features)``, ``B`` is ``(out_features, rank)``; ``alpha`` defaults to
    ``rank`` (scale 1). Dropout acts on the LoRA branch's input only, as in ``loralib``.

    :meth:`merge` adds the update into ``base.weight`` for inference and :meth:`unmerge`
    takes it out again; both are **no-ops when already in that state** (idempotent), so
    calling ``merge()`` twice never adds the update twice. While merged the LoRA branch is
    skipped, so ``A`` and ``B`` get no gradients: unmerge before training again.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        rank: int = 4,
        alpha: float | None = None,
        dropout: float = 0.0,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        base = nn.Linear(in_features, out_features, bias=bias, device=device, dtype=dtype)
        self._setup(base, rank, alpha, dropout)

    @classmethod
    def from_linear(
        cls, linear: nn.Linear, rank: int = 4, alpha: float | None = None, dropout: float = 0.0
    ) -> LoRALinear:
        """Wrap an existing (e.g. pretrained) Linear; its weights are kept, shared and frozen."""
        if not isinstance(linear, nn.Linear):
            raise ConfigError(f"LoRA wraps nn.Linear layers, got {type(linear).__name__}")
        layer = cls.__new__(cls)
        nn.Module.__init__(layer)
        layer._setup(linear, rank, alpha, dropout)
        return layer

    def _setup(self, base: nn.Linear, rank: int, alpha: float | None, dropout: float) -> None:
        if rank < 1:
            raise ConfigError(f"LoRA rank must be >= 1, got {rank}")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"LoRA dropout must be in [0, 1), got {dropout}")
        self.base = base
        for p in base.parameters():
            p.requires_grad_(False)
        self.rank = rank
        self.alpha = float(rank if alpha is None else alpha)
        self.scale_multiplier = 1.0
        self.scaling = self.alpha / rank
        factory = {"device": base.weight.device, "dtype": base.weight.dtype}
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features, **factory))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank, **factory))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.merged = False

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    @property
    def weight(self) -> torch.Tensor:
        """The base weight (with the update in it while merged), for code that reads it."""
        return self.base.weight

    @property
    def bias(self) -> torch.Tensor | None:
        return self.base.bias

    def set_scale_multiplier(self, multiplier: float) -> None:
        """Scale the update to ``multiplier · (alpha / rank)`` (1.0 restores the nominal scale).

        Why: a schedule can vary LoRA's adaptation strength during training without
        touching the weights (:class:`hsi.callbacks.CyclicLoRAScaling`, after LoLA-SpecViT).
        Refused while merged, because :meth:`unmerge` must subtract exactly what
        :meth:`merge` added.
        """
        if not math.isfinite(multiplier) or multiplier < 0:
            raise ConfigError(f"LoRA scale multiplier must be finite and >= 0, got {multiplier}")
        if self.merged:
            raise ConfigError("cannot rescale a merged LoRA layer; call unmerge() first")
        self.scale_multiplier = float(multiplier)
        self.scaling = self.alpha / self.rank * self.scale_multiplier

    def delta_weight(self) -> torch.Tensor:
        """The low-rank update ``(alpha / rank) · B A``, shaped like ``base.weight``."""
        return (self.lora_B @ self.lora_A) * self.scaling

    @torch.no_grad()
    def merge(self) -> None:
        """Fold the update into ``base.weight`` (no-op if already merged)."""
        if not self.merged:
            self.base.weight += self.delta_weight().to(self.base.weight.dtype)
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Take the update back out of ``base.weight`` (no-op if not merged)."""
        if self.merged:
            self.base.weight -= self.delta_weight().to(self.base.weight.dtype)
            self.merged = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)
        if self.merged:
            return out
        update = F.linear(F.linear(self.lora_dropout(x), self.lora_A), self.lora_B)
        return out + update * self.scaling

    def extra_repr(self) -> str:
        extra = (
            f", scale_multiplier={self.scale_multiplier:g}" if self.scale_multiplier != 1 else ""
        )
        return f"rank={self.rank}, alpha={self.alpha:g}, merged={self.merged}{extra}"


def apply_lora(
    model: nn.Module,
    target: Iterable[str] | Callable[[str, nn.Linear], bool],
    rank: int = 4,
    alpha: float | None = None,
    dropout: float = 0.0,
) -> list[str]:
    """Replace the matching ``nn.Linear`` submodules of ``model`` by :class:`LoRALinear`.

    ``target`` is either names to match (a Linear matches when its qualified name equals
    one or ends with ``"." + name``, e.g. ``["qkv", "proj"]``) or a predicate
    ``(qualified_name, linear) -> bool``. Returns the replaced names; raises
    :class:`~hsi.errors.ConfigError` when nothing matched (a typo would otherwise silently
    train nothing).
    """
    if callable(target):
        matches = target
    else:
        names = tuple(target)

        def matches(qualified: str, _: nn.Linear) -> bool:
            return any(qualified == n or qualified.endswith("." + n) for n in names)

    chosen = [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and name and matches(name, module)
    ]
    if not chosen:
        raise ConfigError(
            f"no nn.Linear in {type(model).__name__} matched the LoRA targets {target!r}; "
            f"use names of Linear layers as printed by print(model)"
        )
    for name, linear in chosen:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, LoRALinear.from_linear(linear, rank, alpha, dropout))
    return [name for name, _ in chosen]


def mark_only_lora_trainable(model: nn.Module, train_head: str | None = None) -> None:
    """Freeze every parameter except LoRA's ``A``/``B`` (and those of ``train_head``).

    ``train_head`` names a submodule (e.g. ``"head"``, or a dotted path) whose parameters
    also stay trainable: the classifier, which is new for a new label set. Raises
    :class:`~hsi.errors.ConfigError` if the model has no LoRA layers or no such head.
    """
    lora_ids = {
        id(p)
        for module in model.modules()
        if isinstance(module, LoRALinear)
        for p in (module.lora_A, module.lora_B)
    }
    if not lora_ids:
        raise ConfigError(
            f"{type(model).__name__} has no LoRA layers to train; wrap its Linear layers "
            f"first (LoRALinear.from_linear or apply_lora)"
        )
    head_ids: set[int] = set()
    if train_head is not None:
        try:
            head = model.get_submodule(train_head)
        except AttributeError:
            head = None
        if head is None or not any(True for _ in head.parameters()):
            raise ConfigError(
                f"no submodule with parameters named {train_head!r} in "
                f"{type(model).__name__}; pass the classifier's attribute name (e.g. 'head')"
            )
        head_ids = {id(p) for p in head.parameters()}
    for p in model.parameters():
        p.requires_grad_(id(p) in lora_ids or id(p) in head_ids)


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """``(total, trainable)`` parameter counts (shared parameters counted once)."""
    params = list(model.parameters())
    return sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad)
