"""ImageNet models: the Perceiver paper's and Perceiver IO's (Fourier features, learned
positions, conv stem).

=========================  ==============================================  ==============
preset                     model                                           parameters
=========================  ==============================================  ==============
perceiver-imagenet         Perceiver: 8 interleaved cross-attends          44,914,302
vision-perceiver-fourier   Perceiver IO, 2D Fourier features               48,440,627
vision-perceiver-learned   Perceiver IO, 1x1 conv + learned positions      62,255,848
vision-perceiver-conv      Perceiver IO, conv stem + 2D Fourier features   48,646,522
=========================  ==============================================  ==============
"""

from __future__ import annotations

from collections.abc import Sequence

from ..adapters import ImageAdapter, InputAdapter
from ..adapters.image import image_pair
from ..attention import AttentionSpec
from ..config import attention_spec, encoder_config
from ..decoders import ClassificationDecoder, ClassificationOutput
from ..encoder import EncoderConfig, PerceiverEncoder
from ..model import (
    ClassificationDecoderConfig,
    FourierConfig,
    PerceiverIO,
    PerceiverIOConfig,
    PerceiverModel,
)
from ..position import ProjectedPositions
from ..registry import register_model

#: The published ImageNet encoder: 512 x 1024 latents, one cross-attend head, 8 blocks of
#: 6 self-attends (8 heads), one set of block weights.
IMAGENET_ENCODER = dict(num_latents=512, latent_dim=1024, num_blocks=8, self_attends_per_block=6,
                        cross_attend=dict(heads=1), self_attend=dict(heads=8))


def _fourier_imagenet(*, num_classes: int, image_shape: int | Sequence[int], num_bands: int,
                      max_resolution: Sequence[float] | None, pooling: str, activation: str,
                      encoder: dict, decoder: dict | None) -> PerceiverIO:
    shape = image_pair(image_shape)
    return PerceiverIO(PerceiverIOConfig(
        input_channels=3, input_axis=2, input_shape=shape,
        position=FourierConfig(num_bands=num_bands,
                               max_resolution=tuple(max_resolution or shape)),
        encoder=encoder_config(IMAGENET_ENCODER, encoder, activation),
        decoder=ClassificationDecoderConfig(
            num_classes=num_classes, pooling=pooling,
            cross_attend=attention_spec(dict(heads=1), decoder, activation))))


@register_model("perceiver-imagenet", "the Perceiver paper's ImageNet model: 224x224 raw pixels "
                "with 2D Fourier features (64 bands), 512x1024 latents, 8 interleaved "
                "cross-attends (all but the first sharing weights), one block of 6 "
                "self-attends reused 8 times (44,914,302 parameters; the paper: 44.9M)")
def perceiver_imagenet(*, num_classes: int = 1000, image_shape: int | Sequence[int] = 224,
                       num_bands: int = 64, max_resolution: Sequence[float] | None = None,
                       activation: str = "gelu", encoder: dict | None = None,
                       decoder: dict | None = None) -> PerceiverIO:
    """Images (batch, H, W, 3); the latents are averaged for the logits."""
    encoder = {"num_cross_attends": 8, "cross_attend_sharing": "after_first", **(encoder or {})}
    return _fourier_imagenet(num_classes=num_classes, image_shape=image_shape, num_bands=num_bands,
                             max_resolution=max_resolution, pooling="mean",
                             activation=activation, encoder=encoder, decoder=decoder)


@register_model("vision-perceiver-fourier", "Perceiver IO for ImageNet with 2D Fourier features "
                "(DeepMind's / transformers' vision-perceiver-fourier: 48,440,627 parameters)")
def vision_perceiver_fourier(*, num_classes: int = 1000, image_shape: int | Sequence[int] = 224,
                             num_bands: int = 64, max_resolution: Sequence[float] | None = None,
                             activation: str = "gelu", encoder: dict | None = None,
                             decoder: dict | None = None) -> PerceiverIO:
    """Images (batch, H, W, 3) of ``image_shape``; ``max_resolution`` defaults to it."""
    return _fourier_imagenet(num_classes=num_classes, image_shape=image_shape, num_bands=num_bands,
                             max_resolution=max_resolution, pooling="query",
                             activation=activation, encoder=encoder or {}, decoder=decoder)


def _image_classifier(adapter: InputAdapter, *, num_classes: int, encoder: EncoderConfig,
                      decoder: AttentionSpec) -> PerceiverModel:
    return PerceiverModel(
        input_adapter=adapter, encoder=PerceiverEncoder(adapter.num_channels, encoder),
        decoder=ClassificationDecoder(latent_dim=encoder.latent_dim, num_classes=num_classes,
                                      pooling="query", cross_attend=decoder),
        output_adapter=ClassificationOutput())


@register_model("vision-perceiver-learned", "Perceiver IO for ImageNet: 1x1 conv to 256 "
                "channels + 256 learned position channels (projected), 512x1024 latents, "
                "8 x 6 shared self-attends (DeepMind's imagenet_learned_position_encoding, "
                "transformers' vision-perceiver-learned: 62,255,848 parameters)")
def vision_perceiver_learned(
    *,
    num_classes: int = 1000,
    image_shape: int | Sequence[int] = 224,
    pixel_channels: int = 256,
    position_channels: int = 256,
    projected_position_channels: int = 256,
    activation: str = "gelu",
    encoder: dict | None = None,
    decoder: dict | None = None,
) -> PerceiverModel:
    """Images (batch, H, W, 3) of exactly ``image_shape``: a linear layer maps each pixel to
    ``pixel_channels``, ``position_channels`` learned position channels are projected to
    ``projected_position_channels`` and concatenated. DeepMind's decoder has no query
    residual; transformers' adds one (``decoder={"query_residual": True}``)."""
    shape = image_pair(image_shape)
    adapter = ImageAdapter(
        image_shape=shape, mode="pixels", project_channels=pixel_channels,
        position=ProjectedPositions(shape[0] * shape[1], position_channels,
                                    projected_position_channels))
    return _image_classifier(
        adapter, num_classes=num_classes,
        encoder=encoder_config(IMAGENET_ENCODER, encoder, activation),
        decoder=attention_spec(dict(heads=1, query_residual=False), decoder, activation))


@register_model("vision-perceiver-conv", "Perceiver IO for ImageNet: conv stem (7x7 conv, "
                "batch norm, max-pool: 224 -> 56x56x64) + 2D Fourier features, 512x1024 "
                "latents, 8 x 6 shared self-attends (DeepMind's imagenet_conv_preprocessing, "
                "transformers' vision-perceiver-conv: 48,646,522 parameters)")
def vision_perceiver_conv(
    *,
    num_classes: int = 1000,
    image_shape: int | Sequence[int] = 224,
    conv_channels: int = 64,
    padding: str = "same",
    num_bands: int = 64,
    max_resolution: Sequence[float] = (56, 56),
    activation: str = "gelu",
    encoder: dict | None = None,
    decoder: dict | None = None,
) -> PerceiverModel:
    """Images (batch, H, W, 3). ``padding="transformers"`` is transformers' stem (55x55)."""
    adapter = ImageAdapter(image_shape=image_shape, mode="conv", conv_channels=conv_channels,
                           padding=padding, num_bands=num_bands,
                           max_resolution=tuple(max_resolution))
    return _image_classifier(
        adapter, num_classes=num_classes,
        encoder=encoder_config(IMAGENET_ENCODER, encoder, activation),
        decoder=attention_spec(dict(heads=1), decoder, activation))


__all__ = ["IMAGENET_ENCODER", "perceiver_imagenet", "vision_perceiver_fourier",
           "vision_perceiver_learned", "vision_perceiver_conv"]
