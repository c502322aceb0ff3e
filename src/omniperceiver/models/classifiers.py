"""Task classifiers: the models the training configs build by name.

Each preset is an input adapter for one modality in front of a small Perceiver IO encoder and a
classification decoder. Every keyword is an override, so a config (or the command line) can
shrink a model: ``--model.model_args '{num_latents: 8, latent_dim: 16}'``.

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

from collections.abc import Sequence

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
from ..attention import AttentionSpec
from ..encoder import EncoderConfig
from ..model import ClassificationDecoderConfig, PerceiverIO, PerceiverIOConfig
from ..position import FourierPositionEncoding, PermutedPositions, pixel_permutation
from ..registry import register_model


def perceiver_classifier(
    adapter: InputAdapter,
    *,
    num_classes: int,
    num_latents: int = 64,
    latent_dim: int = 128,
    num_blocks: int = 1,
    self_attends_per_block: int = 4,
    num_cross_attends: int = 1,
    cross_heads: int = 1,
    cross_qk_channels: int | None = None,
    self_heads: int = 4,
    widening_factor: int = 1,
    dropout: float = 0.0,
    pooling: str = "mean",
    latent_init_std: float = 0.02,
) -> PerceiverIO:
    """A Perceiver IO classifier behind ``adapter``.

    The encoder runs ``num_blocks`` blocks of ``self_attends_per_block`` latent self-attends
    (one set of weights, as in Perceiver IO); a cross-attend to the inputs precedes each of the
    first ``num_cross_attends`` blocks (all but the first share weights, as in the Perceiver).
    ``cross_qk_channels`` sets the query/key width of the cross-attends (default: the input
    channels, DeepMind's choice; it must be divisible by ``cross_heads``).
    ``pooling="mean"`` averages the latents (the Perceiver), ``"query"`` decodes with one
    learned query (Perceiver IO). ``dropout`` applies to attention weights and MLP outputs.
    ``latent_init_std``: the latents start truncated-normal with this standard deviation
    (DeepMind's 0.02; perceiver-pytorch's standard normal is 1.0).
    """
    spec = dict(widening_factor=widening_factor, attn_dropout=dropout, ff_dropout=dropout)
    config = PerceiverIOConfig(
        input_channels=adapter.num_channels,
        input_axis=1,
        position=None,
        encoder=EncoderConfig(
            num_latents=num_latents, latent_dim=latent_dim, num_blocks=num_blocks,
            self_attends_per_block=self_attends_per_block, num_cross_attends=num_cross_attends,
            cross_attend_sharing="after_first", block_sharing="all",
            latent_init_std=latent_init_std,
            cross_attend=AttentionSpec(heads=cross_heads, qk_channels=cross_qk_channels,
                                       **spec),
            self_attend=AttentionSpec(heads=self_heads, **spec)),
        decoder=ClassificationDecoderConfig(num_classes=num_classes, pooling=pooling),
    )
    return PerceiverIO(config, input_adapter=adapter)


def _image_adapter(*, image_size: Sequence[int], channels: int, mode: str,
                   patch_size: int | None, num_bands: int, project_channels: int | None,
                   permutation_seed: int | None) -> ImageAdapter:
    image_shape = tuple(image_size)
    position: str | nn.Module = "fourier"
    if permutation_seed is not None:
        if mode != "pixels":
            raise ValueError("permutation_seed (permuted pixels) needs mode='pixels': patches "
                             "of shuffled pixels mix unrelated positions")
        base = FourierPositionEncoding(num_axes=2, num_bands=num_bands,
                                       max_resolution=image_shape)
        position = PermutedPositions(base, pixel_permutation(permutation_seed,
                                                             image_shape[0] * image_shape[1]))
    return ImageAdapter(image_shape=image_shape, input_channels=channels, mode=mode,
                        patch_size=patch_size, position=position, num_bands=num_bands,
                        project_channels=project_channels)


@register_model("image-perceiver", "images (H, W, C) as pixels, patches or Perceiver IO's conv "
                "stem, with 2D Fourier features; a small Perceiver IO encoder, mean-pooled "
                "classifier")
def image_perceiver(*, num_classes: int = 10, image_size: Sequence[int] = (32, 32),
                    channels: int = 3, mode: str = "pixels", patch_size: int | None = None,
                    num_bands: int = 16, project_channels: int | None = None,
                    permutation_seed: int | None = None, **encoder) -> PerceiverIO:
    adapter = _image_adapter(image_size=image_size, channels=channels, mode=mode,
                             patch_size=patch_size, num_bands=num_bands,
                             project_channels=project_channels,
                             permutation_seed=permutation_seed)
    return perceiver_classifier(adapter, num_classes=num_classes, **encoder)


@register_model("mnist-perceiver", "28x28 greyscale digits as 784 raw pixels with 2D Fourier "
                "features (16 bands), 32x128 latents, 2 cross-attends, 2 blocks of 2 "
                "self-attends (~0.72M parameters): the main job; mode='conv' reads Perceiver "
                "IO's conv stem instead")
def mnist_perceiver(*, num_classes: int = 10, image_size: Sequence[int] = (28, 28),
                    channels: int = 1, mode: str = "pixels", patch_size: int | None = None,
                    num_bands: int = 16, permutation_seed: int | None = None,
                    num_latents: int = 32, latent_dim: int = 128, num_blocks: int = 2,
                    self_attends_per_block: int = 2, num_cross_attends: int = 2,
                    widening_factor: int = 4, latent_init_std: float = 1.0,
                    **encoder) -> PerceiverIO:
    return image_perceiver(num_classes=num_classes, image_size=image_size, channels=channels,
                           mode=mode, patch_size=patch_size, num_bands=num_bands,
                           permutation_seed=permutation_seed, num_latents=num_latents,
                           latent_dim=latent_dim, num_blocks=num_blocks,
                           self_attends_per_block=self_attends_per_block,
                           num_cross_attends=num_cross_attends, widening_factor=widening_factor,
                           latent_init_std=latent_init_std, **encoder)


@register_model("pointcloud-perceiver", "point clouds (N, 3 + features) with 3D Fourier "
                "features of each cloud's coordinates (the Perceiver on ModelNet40, small)")
def pointcloud_perceiver(*, num_classes: int = 40, num_features: int = 0, num_bands: int = 16,
                         max_frequency: float = 64.0, **encoder) -> PerceiverIO:
    adapter = PointCloudAdapter(num_features=num_features, num_bands=num_bands,
                                max_frequency=max_frequency)
    return perceiver_classifier(adapter, num_classes=num_classes, **encoder)


@register_model("audio-perceiver", "waveforms (T,): log-mel frames (or raw-sample patches) "
                "with 1D Fourier features, a small Perceiver IO encoder")
def audio_perceiver(*, num_classes: int = 10, max_samples: int = 16000,
                    sample_rate: int = 16000, frontend: str = "spectrogram", n_mels: int = 64,
                    hop_length: int = 160, samples_per_patch: int = 64, num_bands: int = 32,
                    **encoder) -> PerceiverIO:
    if frontend == "spectrogram":
        adapter: InputAdapter = SpectrogramAdapter(
            max_samples=max_samples, sample_rate=sample_rate, n_mels=n_mels,
            hop_length=hop_length, num_bands=num_bands)
    elif frontend == "waveform":
        adapter = WaveformAdapter(max_samples=max_samples, samples_per_patch=samples_per_patch,
                                  num_bands=num_bands)
    else:
        raise ValueError(f"frontend must be 'spectrogram' or 'waveform', got {frontend!r}")
    return perceiver_classifier(adapter, num_classes=num_classes, **encoder)


@register_model("video-perceiver", "video (T, H, W, C) as space-time patches with 3D Fourier "
                "features, a small Perceiver IO encoder")
def video_perceiver(*, num_classes: int = 10, video_shape: Sequence[int] = (8, 32, 32),
                    channels: int = 1, patch_shape: Sequence[int] = (1, 4, 4),
                    num_bands: int = 8, **encoder) -> PerceiverIO:
    adapter = VideoAdapter(video_shape=tuple(video_shape), input_channels=channels,
                           patch_shape=tuple(patch_shape), num_bands=num_bands)
    return perceiver_classifier(adapter, num_classes=num_classes, **encoder)


@register_model("av-perceiver", "an image and a waveform in one input array (the multimodal "
                "adapter: image patches + log-mel frames), a small Perceiver IO encoder")
def av_perceiver(*, num_classes: int = 10, image_size: Sequence[int] = (28, 28),
                 channels: int = 1, patch_size: int = 2, image_bands: int = 16,
                 max_samples: int = 16000, sample_rate: int = 16000, n_mels: int = 64,
                 hop_length: int = 160, audio_bands: int = 32,
                 modality_dropout: dict[str, float] | None = None, **encoder) -> PerceiverIO:
    adapter = MultimodalAdapter({
        "image": ImageAdapter(image_shape=tuple(image_size), input_channels=channels,
                              mode="patches", patch_size=patch_size, num_bands=image_bands),
        "audio": SpectrogramAdapter(max_samples=max_samples, sample_rate=sample_rate,
                                    n_mels=n_mels, hop_length=hop_length,
                                    num_bands=audio_bands),
    }, modality_dropout=modality_dropout)
    return perceiver_classifier(adapter, num_classes=num_classes, **encoder)


__all__ = ["perceiver_classifier", "image_perceiver", "mnist_perceiver", "pointcloud_perceiver",
           "audio_perceiver", "video_perceiver", "av_perceiver"]
