"""A timm-style model registry: models are plain ``nn.Module`` classes found by name.

Models know nothing of Lightning, files or datasets; a task builds them with
:func:`create_model` from a name and keyword arguments, which is also all a checkpoint
needs to store to rebuild them.
"""

from __future__ import annotations

import difflib
import inspect
import os
from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

from hsi.errors import ConfigError

_REGISTRY: dict[str, type[nn.Module] | Callable[..., nn.Module]] = {}
M = TypeVar("M", bound=Callable[..., nn.Module])


def register_model(name: str | None = None) -> Callable[[M], M]:
    """Class/function decorator adding a model constructor to the registry under ``name``."""

    def decorator(fn: M) -> M:
        key = (name or fn.__name__).lower()
        if key in _REGISTRY and _REGISTRY[key] is not fn:
            raise ValueError(f"model name {key!r} is registered twice")
        _REGISTRY[key] = fn
        return fn

    return decorator


def list_models() -> list[str]:
    """Names of every registered model, sorted."""
    _import_builtin_models()
    return sorted(_REGISTRY)


def get_model_class(name: str) -> Callable[..., nn.Module]:
    """The constructor registered under ``name`` (case-insensitive)."""
    _import_builtin_models()
    key = name.lower().replace("-", "_")
    if key not in _REGISTRY:
        close = difflib.get_close_matches(key, _REGISTRY, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(
            f"unknown model {name!r}.{hint} Known models: {', '.join(sorted(_REGISTRY))}"
        )
    return _REGISTRY[key]


def create_model(
    name: str, pretrained: str | os.PathLike[str] | None = None, **kwargs: Any
) -> nn.Module:
    """Build a registered model, e.g. ``create_model("hybridsn", in_bands=30, num_classes=16)``.

    Unknown keyword arguments raise a :class:`ConfigError` naming the accepted ones, so a
    config typo never reaches the model's constructor as a cryptic ``TypeError``.

    ``pretrained`` loads shipped weights (:mod:`hsi.pretrained`): a tag
    (``"indian_pines"``), ``"model/tag"``, or the path of an exported weight file. The model
    is then built with the kwargs the weights were trained with; passing a kwarg that
    differs from them is a :class:`ConfigError`. The weights are loaded with
    ``weights_only=True`` (fp16-stored weights become the model's fp32 parameters), and
    ``model.pretrained_cfg`` holds their preprocessing, class names and data facts. As
    with any ``nn.Module`` the model starts in training mode: call ``.eval()`` to predict.
    """
    if pretrained is not None:
        from hsi.pretrained import build_pretrained

        get_model_class(name)  # an unknown model name is reported before the weights
        return build_pretrained(name, pretrained, kwargs)
    ctor = get_model_class(name)
    params = inspect.signature(ctor).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        unknown = sorted(set(kwargs) - set(params))
        if unknown:
            raise ConfigError(
                f"model {name!r} does not take {', '.join(unknown)}; it takes: {', '.join(params)}"
            )
    return ctor(**kwargs)


def _import_builtin_models() -> None:
    """Import every module of ``hsi.models`` so their ``@register_model`` decorators run.

    Discovery by listing the package means a new model file needs no edit here.
    """
    import importlib
    import pkgutil

    import hsi.models as package

    for info in pkgutil.iter_modules(package.__path__):
        if info.name != "registry" and not info.name.startswith("_"):
            importlib.import_module(f"hsi.models.{info.name}")
