"""The model registry: a paper configuration is one name.

Every family module in :mod:`omniperceiver.models` registers its presets with
:func:`register_model`; ``import omniperceiver`` imports them all, so every name resolves in a
fresh interpreter. A preset is a factory that takes keyword arguments only (its overrides, all
with defaults) and returns an ``nn.Module``. ``create_model(name, **overrides)`` builds one and
records ``{"preset": name, "overrides": {**the factory's keyword defaults, **overrides}}`` as
``model.recipe``, which :func:`omniperceiver.save_pretrained` stores so that
:func:`omniperceiver.from_pretrained` can rebuild the model; recording the defaults keeps a
saved model the same model when a later release changes a preset's defaults.

The keywords are checked before the model is built (:func:`~omniperceiver.validation.
check_options`: counts and sizes >= 1, dropouts in [0, 1), finite positive frequencies), and
any keyword the preset rejects is a :class:`~omniperceiver.errors.ConfigError` naming the
preset.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from .errors import ConfigError, UnknownModelError
from .validation import check_options


@dataclass(frozen=True)
class Preset:
    name: str
    factory: Callable[..., nn.Module]
    description: str


_REGISTRY: dict[str, Preset] = {}


def register_model(name: str, description: str):
    """Decorator adding a preset factory to the registry under ``name``."""

    def wrap(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ConfigError(f"a model named {name!r} is already registered "
                              f"(by {_REGISTRY[name].factory.__module__})")
        _REGISTRY[name] = Preset(name, factory, description)
        return factory

    return wrap


def list_models() -> list[str]:
    """The registered preset names, sorted."""
    return sorted(_REGISTRY)


def get_preset(name: str) -> Preset:
    if name not in _REGISTRY:
        raise UnknownModelError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    return _REGISTRY[name]


def describe_model(name: str) -> str:
    return get_preset(name).description


def create_model(name: str, **overrides) -> nn.Module:
    """Build the preset ``name``; ``overrides`` are passed to its factory."""
    factory = get_preset(name).factory
    defaults = {p.name: p.default for p in inspect.signature(factory).parameters.values()
                if p.kind is p.KEYWORD_ONLY and p.default is not p.empty}
    check_options({**defaults, **overrides}, where=name)
    try:
        model = factory(**overrides)
    except ConfigError:
        raise
    except (TypeError, ValueError) as error:  # e.g. an unknown keyword, heads not dividing
        given = ", ".join(f"{key}={value!r}" for key, value in overrides.items())
        raise ConfigError(f"{name}{f' with {given}' if given else ''}: {error}") from error
    model.recipe = {"preset": name, "overrides": {**defaults, **overrides}}
    return model


__all__ = ["Preset", "register_model", "list_models", "get_preset", "describe_model",
           "create_model"]
