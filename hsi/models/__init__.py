"""Model zoo: plain ``nn.Module`` classes behind one registry."""

from hsi.models.hybridsn import HybridSN
from hsi.models.registry import create_model, get_model_class, list_models, register_model

__all__ = ["HybridSN", "create_model", "get_model_class", "list_models", "register_model"]
