"""Perceiver IO's multimodal autoencoder (Kinetics-700 video, audio and label)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from ..adapters import GridAdapter, MaskTokens, MultimodalAdapter, VideoAdapter, WaveformAdapter
from ..config import attention_spec, encoder_config
from ..decoders import MultimodalDecoder, MultimodalOutput
from ..encoder import PerceiverEncoder
from ..model import PerceiverModel
from ..position import FourierPositionEncoding, LearnedPositionEncoding
from ..registry import register_model

#: The published encoder: 784 x 512 latents, 8 self-attends with 8 heads.
MULTIMODAL_ENCODER = dict(num_latents=784, latent_dim=512, num_blocks=1, self_attends_per_block=8,
                          cross_attend=dict(heads=1), self_attend=dict(heads=8))


@register_model("multimodal-perceiver", "Perceiver IO multimodal autoencoding on Kinetics-700: "
                "16 frames of 224x224 video (4x4 patches, 3D Fourier features), 30,720 audio "
                "samples (16-sample patches, 1D Fourier features) and the label, 784x512 "
                "latents, 8 self-attends, per-modality decoder queries (DeepMind's "
                "video_autoencoding, transformers' multimodal-perceiver)")
def multimodal_perceiver(
    *,
    frames_shape: Sequence[int] = (16, 224, 224),
    patch_size: int = 4,
    max_resolution: Sequence[float] = (16, 56, 56),
    image_bands: int = 32,
    audio_samples: int = 30720,
    samples_per_patch: int = 16,
    audio_bands: int = 192,
    num_classes: int = 700,
    label_query_channels: int = 1024,
    output_channels: int = 512,
    mask_probs: dict[str, float] | None = None,
    activation: str = "gelu",
    encoder: dict | None = None,
    decoder: dict | None = None,
) -> PerceiverModel:
    """``model({"image": (batch, T, H, W, 3), "audio": (batch, samples, 1), "label": (batch,
    num_classes)}, subsample={"image": idx, "audio": idx})`` -> {name: output} (see
    :class:`~omniperceiver.decoders.MultimodalOutput`); ``subsample`` decodes chunks of the
    outputs. The label is always replaced by a mask token (``mask_probs``)."""
    frames_shape, max_resolution = tuple(frames_shape), tuple(max_resolution)
    image_positions = dict(num_axes=3, num_bands=image_bands, max_resolution=max_resolution)
    audio_positions = dict(num_axes=1, num_bands=audio_bands, max_resolution=(audio_samples,))
    adapters = {
        "audio": WaveformAdapter(max_samples=audio_samples, samples_per_patch=samples_per_patch,
                                 position=FourierPositionEncoding(**audio_positions)),
        "image": VideoAdapter(video_shape=frames_shape, patch_shape=(1, patch_size, patch_size),
                              position=FourierPositionEncoding(**image_positions)),
        "label": GridAdapter(input_channels=num_classes, input_axis=0),
    }
    probs = {"audio": 0.0, "image": 0.0, "label": 1.0} if mask_probs is None else mask_probs
    adapter = MaskTokens(MultimodalAdapter(adapters, min_padding_size=4), probs)
    config = encoder_config(MULTIMODAL_ENCODER, encoder, activation)
    audio_patches = audio_samples // samples_per_patch
    queries = {"audio": FourierPositionEncoding(**audio_positions),
               "image": FourierPositionEncoding(**image_positions),
               "label": LearnedPositionEncoding(1, label_query_channels)}
    multimodal_decoder = MultimodalDecoder(
        latent_dim=config.latent_dim, queries=queries,
        output_shapes={"audio": (audio_patches,), "image": frames_shape, "label": (1,)},
        output_channels=output_channels,
        cross_attend=attention_spec(dict(heads=1, query_residual=False), decoder, activation))
    heads = {"audio": nn.Linear(output_channels, samples_per_patch),
             "image": nn.Linear(output_channels, 3),
             "label": nn.Linear(output_channels, num_classes)}
    return PerceiverModel(input_adapter=adapter,
                          encoder=PerceiverEncoder(adapter.num_channels, config),
                          decoder=multimodal_decoder,
                          output_adapter=MultimodalOutput(heads, frames_shape))


__all__ = ["MULTIMODAL_ENCODER", "multimodal_perceiver"]
