"""Task classifiers: the models the training configs build by name.

Each preset is an input adapter for one modality in front of a small Perceiver IO encoder and a
classification decoder. The adapter's keywords are the preset's own (``image_shape``,
``input_channels``, ``num_bands`` ...; av-perceiver takes one dict per modality, ``image=``
and ``audio=``, of that modality's adapter keywords); the encoder and decoder take
``encoder={...}`` and ``decoder={...}`` merged over the published ones, as every Perceiver IO
preset does (:mod:`omniperceiver.config`). A config or the command line shrinks a model with
``--model.model_args '{encoder: {num_latents: 8, latent_dim: 16}}'``.

=====================  ==========================================================
preset                 input
=====================  ==========================================================
image-perceiver        images (H, W, C): pixels, patches or a conv stem + 2D Fourier features
mnist-perceiver        image-perceiver for 28x28 greyscale digits (raw pixels by default)
pointcloud-perceiver   point clouds (N, 3 [+ features]): 3D Fourier features
audio-perceiver        waveforms (T,): log-mel frames or raw-sample patches
video-perceiver        video (T, H, W, C): space-time patches + 3D Fourier features
av-perceiver           {"image": (H, W, C), "audio": (T,)}: the multimodal adapter
=====================  ==========================================================

Their keywords are the training configs' ``model_args``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from ..adapters import (
    ImageAdapter,
    InputAdapter,
    MultimodalAdapter,
    PointCloudAdapter,
    SpectrogramAdapter,
    VideoAdapter,
    WaveformAdapter,
)
from ..adapters.image import image_pair
from ..config import attention_spec, encoder_config, merge
from ..model import ClassificationDecoderConfig, PerceiverIO, PerceiverIOConfig
from ..position import FourierPositionEncoding, PermutedPositions, pixel_permutation
from ..registry import register_model

#: The task classifiers' encoder: 64 x 128 latents, one cross-attend (1 head) before one block
#: of 4 self-attends (4 heads). With more cross-attends, all but the first share weights (the
#: Perceiver); the blocks share one set of weights (Perceiver IO).
CLASSIFIER_ENCODER: dict[str, Any] = dict(
    num_latents=64, latent_dim=128, num_blocks=1, self_attends_per_block=4, num_cross_attends=1,
    cross_attend_sharing="after_first", block_sharing="all", latent_init_std=0.02,
    cross_attend=dict(heads=1), self_attend=dict(heads=4))

#: The task classifiers' decoder: the latents averaged (the Perceiver); ``pooling="query"``
#: decodes with one learned query (Perceiver IO) through a cross-attend of these fields.
CLASSIFIER_DECODER: dict[str, Any] = dict(pooling="mean", heads=1)

#: The main job's encoder: 16 x 128 latents, 4 cross-attends interleaved with 4 blocks of one
#: self-attend (the Perceiver's arrangement: the latents go back to the inputs before each
#: block; all cross-attends after the first share weights, the blocks share one set),
#: feed-forwards 4 wide, latents initialised with perceiver-pytorch's std 1.
MNIST_ENCODER: dict[str, Any] = merge(CLASSIFIER_ENCODER, dict(
    num_latents=16, num_blocks=4, self_attends_per_block=1, num_cross_attends=4,
    latent_init_std=1.0, cross_attend=dict(widening_factor=4),
    self_attend=dict(widening_factor=4)))

#: av-perceiver's modalities: 28x28 greyscale digits as 2x2 patches, 1 s of 16 kHz audio as
#: log-mel frames (64 mels, 10 ms hop).
AV_IMAGE: dict[str, Any] = dict(image_shape=(28, 28), input_channels=1, mode="patches",
                                patch_size=2, num_bands=16)
AV_AUDIO: dict[str, Any] = dict(max_samples=16000, sample_rate=16000, n_mels=64,
                                hop_length=160, num_bands=32)


def perceiver_classifier(
    adapter: InputAdapter,
    *,
    num_classes: int,
    encoder: Mapping[str, Any] | None = None,
    decoder: Mapping[str, Any] | None = None,
    activation: str = "gelu",
) -> PerceiverIO:
    """A Perceiver IO classifier behind ``adapter``.

    ``encoder``: :class:`~omniperceiver.encoder.EncoderConfig` fields merged over
    :data:`CLASSIFIER_ENCODER` (``cross_attend``/``self_attend``:
    :class:`~omniperceiver.attention.AttentionSpec` fields; a cross-attend's ``qk_channels``
    defaults to the input channels, DeepMind's choice). ``decoder``: ``pooling`` (``"mean"``
    or ``"query"``) and the AttentionSpec fields of the query's cross-attend, merged over
    :data:`CLASSIFIER_DECODER`. ``activation`` applies to every feed-forward.
    """
    decoder_fields = merge(CLASSIFIER_DECODER, decoder)
    pooling = decoder_fields.pop("pooling")
    config = PerceiverIOConfig(
        input_channels=adapter.num_channels,
        input_axis=1,
        position=None,
        encoder=encoder_config(CLASSIFIER_ENCODER, encoder, activation),
        decoder=ClassificationDecoderConfig(
            num_classes=num_classes, pooling=pooling,
            cross_attend=attention_spec(decoder_fields, None, activation)),
    )
    return PerceiverIO(config, input_adapter=adapter)


@register_model("image-perceiver", "images (H, W, C) as pixels, patches or Perceiver IO's conv "
                "stem, with 2D Fourier features; a small Perceiver IO encoder, mean-pooled "
                "classifier")
def image_perceiver(*, num_classes: int = 10, image_shape: int | Sequence[int] = (32, 32),
                    input_channels: int = 3, mode: str = "pixels", patch_size: int | None = None,
                    num_bands: int = 16, project_channels: int | None = None,
                    permutation_seed: int | None = None, activation: str = "gelu",
                    encoder: dict | None = None, decoder: dict | None = None) -> PerceiverIO:
    """``permutation_seed``: the pixels arrive shuffled by :func:`~omniperceiver.position.
    pixel_permutation` of this seed and keep the Fourier features of their original positions
    (permuted MNIST; ``mode="pixels"`` only)."""
    position: str | nn.Module = "fourier"
    if permutation_seed is not None:
        if mode != "pixels":
            raise ValueError("permutation_seed (permuted pixels) needs mode='pixels': patches "
                             "of shuffled pixels mix unrelated positions")
        height, width = image_pair(image_shape)
        base = FourierPositionEncoding(num_axes=2, num_bands=num_bands,
                                       max_resolution=(height, width))
        position = PermutedPositions(base, pixel_permutation(permutation_seed, height * width))
    adapter = ImageAdapter(image_shape=image_shape, input_channels=input_channels, mode=mode,
                           patch_size=patch_size, position=position, num_bands=num_bands,
                           project_channels=project_channels)
    return perceiver_classifier(adapter, num_classes=num_classes, encoder=encoder,
                                decoder=decoder, activation=activation)


@register_model("mnist-perceiver", "28x28 greyscale digits as 784 raw pixels with 2D Fourier "
                "features (16 bands), 16x128 latents, 4 cross-attends interleaved with 4 "
                "self-attends (~0.52M parameters): the main job; mode='conv' reads Perceiver "
                "IO's conv stem instead")
def mnist_perceiver(*, num_classes: int = 10, image_shape: int | Sequence[int] = (28, 28),
                    input_channels: int = 1, mode: str = "pixels", patch_size: int | None = None,
                    num_bands: int = 16, permutation_seed: int | None = None,
                    activation: str = "gelu", encoder: dict | None = None,
                    decoder: dict | None = None) -> PerceiverIO:
    """image-perceiver with the main job's image and encoder (:data:`MNIST_ENCODER`)."""
    return image_perceiver(num_classes=num_classes, image_shape=image_shape,
                           input_channels=input_channels, mode=mode, patch_size=patch_size,
                           num_bands=num_bands, permutation_seed=permutation_seed,
                           activation=activation, encoder=merge(MNIST_ENCODER, encoder),
                           decoder=decoder)


@register_model("pointcloud-perceiver", "point clouds (N, 3 + features) with 3D Fourier "
                "features of each cloud's coordinates (the Perceiver on ModelNet40, small)")
def pointcloud_perceiver(*, num_classes: int = 40, num_features: int = 0, num_bands: int = 16,
                         max_resolution: float | Sequence[float] = 128.0,
                         activation: str = "gelu", encoder: dict | None = None,
                         decoder: dict | None = None) -> PerceiverIO:
    adapter = PointCloudAdapter(num_features=num_features, num_bands=num_bands,
                                max_resolution=max_resolution)
    return perceiver_classifier(adapter, num_classes=num_classes, encoder=encoder,
                                decoder=decoder, activation=activation)


@register_model("audio-perceiver", "waveforms (T,): log-mel frames (or raw-sample patches) "
                "with 1D Fourier features, a small Perceiver IO encoder")
def audio_perceiver(*, num_classes: int = 10, max_samples: int = 16000,
                    sample_rate: int = 16000, frontend: str = "spectrogram", n_mels: int = 64,
                    hop_length: int = 160, samples_per_patch: int = 64, num_bands: int = 32,
                    activation: str = "gelu", encoder: dict | None = None,
                    decoder: dict | None = None) -> PerceiverIO:
    if frontend == "spectrogram":
        adapter: InputAdapter = SpectrogramAdapter(
            max_samples=max_samples, sample_rate=sample_rate, n_mels=n_mels,
            hop_length=hop_length, num_bands=num_bands)
    elif frontend == "waveform":
        adapter = WaveformAdapter(max_samples=max_samples, samples_per_patch=samples_per_patch,
                                  num_bands=num_bands)
    else:
        raise ValueError(f"frontend must be 'spectrogram' or 'waveform', got {frontend!r}")
    return perceiver_classifier(adapter, num_classes=num_classes, encoder=encoder,
                                decoder=decoder, activation=activation)


@register_model("video-perceiver", "video (T, H, W, C) as space-time patches with 3D Fourier "
                "features, a small Perceiver IO encoder")
def video_perceiver(*, num_classes: int = 10, video_shape: Sequence[int] = (8, 32, 32),
                    input_channels: int = 1, patch_shape: Sequence[int] = (1, 4, 4),
                    num_bands: int = 8, activation: str = "gelu", encoder: dict | None = None,
                    decoder: dict | None = None) -> PerceiverIO:
    adapter = VideoAdapter(video_shape=tuple(video_shape), input_channels=input_channels,
                           patch_shape=tuple(patch_shape), num_bands=num_bands)
    return perceiver_classifier(adapter, num_classes=num_classes, encoder=encoder,
                                decoder=decoder, activation=activation)


@register_model("av-perceiver", "an image and a waveform in one input array (the multimodal "
                "adapter: image patches + log-mel frames), a small Perceiver IO encoder")
def av_perceiver(*, num_classes: int = 10, image: dict | None = None, audio: dict | None = None,
                 modality_dropout: dict[str, float] | None = None, activation: str = "gelu",
                 encoder: dict | None = None, decoder: dict | None = None) -> PerceiverIO:
    """``image``: :class:`~omniperceiver.adapters.ImageAdapter` keywords merged over
    :data:`AV_IMAGE`; ``audio``: :class:`~omniperceiver.adapters.SpectrogramAdapter` keywords
    merged over :data:`AV_AUDIO`."""
    adapter = MultimodalAdapter({
        "image": ImageAdapter(**merge(AV_IMAGE, image)),
        "audio": SpectrogramAdapter(**merge(AV_AUDIO, audio)),
    }, modality_dropout=modality_dropout)
    return perceiver_classifier(adapter, num_classes=num_classes, encoder=encoder,
                                decoder=decoder, activation=activation)


__all__ = ["CLASSIFIER_ENCODER", "CLASSIFIER_DECODER", "MNIST_ENCODER", "AV_IMAGE", "AV_AUDIO",
           "perceiver_classifier", "image_perceiver", "mnist_perceiver", "pointcloud_perceiver",
           "audio_perceiver", "video_perceiver", "av_perceiver"]
