"""Configurations: overriding a published one, and config trees to and from JSON.

A preset's ``encoder`` and ``decoder`` overrides are JSON-friendly dicts merged field by field
over the published configuration, recursively:
``encoder={"num_latents": 8, "self_attend": {"heads": 2}}`` changes only those fields
(:class:`~omniperceiver.encoder.EncoderConfig` fields;
:class:`~omniperceiver.attention.AttentionSpec` fields for ``cross_attend``/``self_attend``).
``activation`` applies to every feed-forward (``"gelu_tanh"`` for DeepMind's JAX weights).
Converters use the same merge to put what a checkpoint shows over what the user asks for.

:func:`to_dict` and :func:`from_dict` turn any tree of config dataclasses into JSON-friendly
dicts and back, reading the fields and their types from the dataclasses themselves: tuples
become lists and back, and where a field may hold one of several config classes
(``decoder: ClassificationDecoderConfig | GridDecoderConfig | ...``) the dict names the class
under ``"kind"``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any

from .attention import AttentionSpec
from .encoder import EncoderConfig
from .errors import ConfigError


def merge(base: Mapping[str, Any], override: Mapping[str, Any] | None) -> dict[str, Any]:
    """``override`` over ``base``, recursively where both values are dicts."""
    merged = dict(base)
    for key, value in (override or {}).items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def attention_spec(published: Mapping[str, Any], override: Mapping[str, Any] | None = None,
                   activation: str = "gelu") -> AttentionSpec:
    """An :class:`AttentionSpec`: ``override`` fields over ``published`` ones."""
    return AttentionSpec(**merge({"activation": activation, **published}, override))


def encoder_config(published: Mapping[str, Any], override: Mapping[str, Any] | None = None,
                   activation: str = "gelu") -> EncoderConfig:
    """An :class:`EncoderConfig`: ``override`` over ``published``, field by field (and within
    the ``cross_attend``/``self_attend`` specs)."""
    fields = merge(published, override)
    for key in ("cross_attend", "self_attend"):
        fields[key] = attention_spec(fields.get(key, {}), None, activation)
    return EncoderConfig(**fields)


def _options(hint: Any) -> tuple:
    """The members of a union type (``A | B``, ``Optional[A]``), or ``(hint,)``."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return typing.get_args(hint)
    return (hint,)


def _config_classes(hint: Any) -> list[type]:
    return [t for t in _options(hint) if dataclasses.is_dataclass(t)]


def to_dict(config: Any) -> dict[str, Any]:
    """A config dataclass (and the configs in its fields) as a JSON-friendly dict."""
    hints = typing.get_type_hints(type(config))
    out: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            value_dict = to_dict(value)
            if len(_config_classes(hints[f.name])) > 1:
                value_dict["kind"] = type(value).__name__
            out[f.name] = value_dict
        else:
            out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


def _decode(hint: Any, value: Any, where: str) -> Any:
    if value is None:
        return None
    classes = _config_classes(hint)
    if classes and isinstance(value, Mapping):
        value = dict(value)
        kind = value.pop("kind", None)
        named = {c.__name__: c for c in classes}
        if kind is None and len(classes) == 1:
            return from_dict(classes[0], value)
        if kind not in named:
            raise ConfigError(f"{where}: 'kind' must be one of {sorted(named)}, got {kind!r}")
        return from_dict(named[kind], value)
    if isinstance(value, list) and any(typing.get_origin(t) is tuple for t in _options(hint)):
        return tuple(value)
    return value


def from_dict(cls: type, data: Mapping[str, Any]) -> Any:
    """The config dataclass ``cls`` from :func:`to_dict`'s dict (missing fields take their
    defaults; unknown ones are a ConfigError)."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{cls.__name__} has no fields {unknown}; its fields: {sorted(names)}")
    return cls(**{key: _decode(hints[key], value, f"{cls.__name__}.{key}")
                  for key, value in data.items()})


__all__ = ["merge", "attention_spec", "encoder_config", "to_dict", "from_dict"]
