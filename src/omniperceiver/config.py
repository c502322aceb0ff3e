"""Overriding a published configuration.

A preset's ``encoder`` and ``decoder`` overrides are JSON-friendly dicts merged field by field
over the published configuration, recursively:
``encoder={"num_latents": 8, "self_attend": {"heads": 2}}`` changes only those fields
(:class:`~omniperceiver.encoder.EncoderConfig` fields;
:class:`~omniperceiver.attention.AttentionSpec` fields for ``cross_attend``/``self_attend``).
``activation`` applies to every feed-forward (``"gelu_tanh"`` for DeepMind's JAX weights).
Converters use the same merge to put what a checkpoint shows over what the user asks for.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .attention import AttentionSpec
from .encoder import EncoderConfig


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


__all__ = ["merge", "attention_spec", "encoder_config"]
