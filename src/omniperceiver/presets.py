"""Named model presets: a paper configuration is one name.

``create_model(name, **overrides)`` builds a preset; ``list_models()`` lists the names.
Overrides are the preset factory's keyword arguments (for example ``num_classes``).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from .attention import AttentionSpec
from .encoder import EncoderConfig
from .model import (
    ClassificationDecoderConfig,
    FourierConfig,
    Perceiver,
    PerceiverIO,
    PerceiverIOConfig,
)

_REGISTRY: dict[str, tuple[Callable[..., nn.Module], str]] = {}


def register_model(name: str, description: str):
    """Decorator adding a factory to the registry under ``name``."""

    def wrap(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"a model named {name!r} is already registered")
        _REGISTRY[name] = (factory, description)
        return factory

    return wrap


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def describe_model(name: str) -> str:
    return _lookup(name)[1]


def _lookup(name: str):
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    return _REGISTRY[name]


def create_model(name: str, **overrides) -> nn.Module:
    """Build the preset ``name``; ``overrides`` are passed to its factory.

    The model remembers ``{"preset": name, "overrides": overrides}`` as ``model.recipe`` so
    that :func:`omniperceiver.save_pretrained` can rebuild it.
    """
    model = _lookup(name)[0](**overrides)
    model.recipe = {"preset": name, "overrides": dict(overrides)}
    return model


@register_model("perceiver-seed", "perceiver-pytorch's README model: 6 layers, 256x512 latents, "
                "224x224 RGB, 1000 classes (45,187,140 parameters)")
def perceiver_seed(**overrides) -> Perceiver:
    kwargs = dict(input_channels=3, input_axis=2, num_freq_bands=6, max_freq=10.0, depth=6,
                  num_latents=256, latent_dim=512, cross_heads=1, latent_heads=8,
                  cross_dim_head=64, latent_dim_head=64, num_classes=1000, attn_dropout=0.0,
                  ff_dropout=0.0, weight_tie_layers=False)
    return Perceiver(**{**kwargs, **overrides})


def _imagenet_config(*, num_classes: int, image_size: int, num_cross_attends: int,
                     cross_attend_sharing: str, pooling: str) -> PerceiverIOConfig:
    return PerceiverIOConfig(
        input_channels=3,
        input_axis=2,
        input_shape=(image_size, image_size),
        position=FourierConfig(num_bands=64, max_resolution=(image_size, image_size)),
        encoder=EncoderConfig(
            num_latents=512, latent_dim=1024, num_blocks=8, self_attends_per_block=6,
            num_cross_attends=num_cross_attends, cross_attend_sharing=cross_attend_sharing,
            block_sharing="all",
            cross_attend=AttentionSpec(heads=1, widening_factor=1),
            self_attend=AttentionSpec(heads=8, widening_factor=1)),
        decoder=ClassificationDecoderConfig(num_classes=num_classes, pooling=pooling,
                                            cross_attend=AttentionSpec(heads=1)),
    )


@register_model("perceiver-imagenet", "the Perceiver paper's ImageNet model: 224x224 raw pixels "
                "with 2D Fourier features (64 bands), 512x1024 latents, 8 interleaved "
                "cross-attends (all but the first sharing weights), one block of 6 "
                "self-attends reused 8 times (44,914,302 parameters; the paper: 44.9M)")
def perceiver_imagenet(*, num_classes: int = 1000, image_size: int = 224) -> PerceiverIO:
    return PerceiverIO(_imagenet_config(num_classes=num_classes, image_size=image_size,
                                        num_cross_attends=8, cross_attend_sharing="after_first",
                                        pooling="mean"))


@register_model("vision-perceiver-fourier", "Perceiver IO for ImageNet with 2D Fourier features "
                "(DeepMind's / transformers' vision-perceiver-fourier: 48,440,627 parameters)")
def vision_perceiver_fourier(*, num_classes: int = 1000, image_size: int = 224) -> PerceiverIO:
    return PerceiverIO(_imagenet_config(num_classes=num_classes, image_size=image_size,
                                        num_cross_attends=1, cross_attend_sharing="all",
                                        pooling="query"))


__all__ = ["create_model", "list_models", "describe_model", "register_model"]


# Presets of converted checkpoint families (registered on import).
from . import zoo  # noqa: E402, F401
