"""Shared neural building blocks for the transformer and Mamba classifiers.

- :mod:`hsi.nn.attention`: window multi-head self-attention with a relative-position bias
  (Swin), on PyTorch's fused ``scaled_dot_product_attention``.
- :mod:`hsi.nn.lora`: low-rank adaptation of Linear layers for fine-tuning.
- :mod:`hsi.nn.selective_scan`: Mamba's selective scan (S6) with reference, chunked
  pure-PyTorch and ``mamba_ssm`` CUDA backends.
- :mod:`hsi.nn.mamba`: the Mamba block and Mamba scans over 2-D token grids.
- :mod:`hsi.nn.morphology`: grey-scale erosion / dilation and MorpMamba's learnable
  depthwise-convolution stand-in for them.
- :mod:`hsi.nn.text_prompts`: class-name prompts embedded offline by MiniLM (VP-Hype).
"""

from hsi.nn.attention import (
    RelativePositionBias,
    WindowAttention,
    attention_reference,
    pad_to_windows,
    window_partition,
    window_reverse,
)
from hsi.nn.lora import LoRALinear, apply_lora, count_parameters, mark_only_lora_trainable
from hsi.nn.mamba import Mamba, Mamba2DScan
from hsi.nn.morphology import Morphology, grey_dilation, grey_erosion
from hsi.nn.selective_scan import (
    mamba_ssm_available,
    resolve_backend,
    selective_scan,
    selective_scan_chunked,
    selective_scan_reference,
)
from hsi.nn.text_prompts import (
    DEFAULT_PROMPT_TEMPLATE,
    TEXT_EMBED_DIM,
    embed_class_names,
    text_encoder_available,
)

__all__ = [
    "LoRALinear",
    "Mamba",
    "Mamba2DScan",
    "RelativePositionBias",
    "WindowAttention",
    "apply_lora",
    "attention_reference",
    "count_parameters",
    "mamba_ssm_available",
    "mark_only_lora_trainable",
    "pad_to_windows",
    "resolve_backend",
    "selective_scan",
    "selective_scan_chunked",
    "selective_scan_reference",
    "window_partition",
    "window_reverse",
    "Morphology",
    "grey_dilation",
    "grey_erosion",
    "DEFAULT_PROMPT_TEMPLATE",
    "TEXT_EMBED_DIM",
    "embed_class_names",
    "text_encoder_available",
]
