"""Perceiver IO's multimodal autoencoder (Kinetics-700 video, audio and label)."""

from __future__ import annotations

from torch import nn

from ..adapters import GridAdapter, MaskTokens, MultimodalAdapter, VideoAdapter, WaveformAdapter
from ..config import attention_spec, encoder_config, merge
from ..decoders import MultimodalDecoder, MultimodalOutput
from ..encoder import PerceiverEncoder
from ..model import PerceiverModel
from ..position import FourierPositionEncoding, LearnedPositionEncoding
from ..registry import register_model

#: The published encoder: 784 x 512 latents, 8 self-attends with 8 heads.
MULTIMODAL_ENCODER = dict(num_latents=784, latent_dim=512, num_blocks=1, self_attends_per_block=8,
                          cross_attend=dict(heads=1), self_attend=dict(heads=8))

#: The published modalities (their adapters' keywords): 16 frames of 224x224 RGB video as
#: 1x4x4 patches with 3D Fourier features (32 bands, max resolution 16x56x56); 30,720 audio
#: samples as 16-sample patches with 1D Fourier features over the samples (192 bands).
MULTIMODAL_IMAGE = dict(video_shape=(16, 224, 224), input_channels=3, patch_shape=(1, 4, 4),
                        num_bands=32, max_resolution=(16, 56, 56))
MULTIMODAL_AUDIO = dict(max_samples=30720, samples_per_patch=16, num_bands=192,
                        max_resolution=(30720,))


@register_model("multimodal-perceiver", "Perceiver IO multimodal autoencoding on Kinetics-700: "
                "16 frames of 224x224 video (4x4 patches, 3D Fourier features), 30,720 audio "
                "samples (16-sample patches, 1D Fourier features) and the label, 784x512 "
                "latents, 8 self-attends, per-modality decoder queries (DeepMind's "
                "video_autoencoding, transformers' multimodal-perceiver)")
def multimodal_perceiver(
    *,
    image: dict | None = None,
    audio: dict | None = None,
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
    outputs. The label is always replaced by a mask token (``mask_probs``).

    ``image``: :class:`~omniperceiver.adapters.VideoAdapter` keywords merged over
    :data:`MULTIMODAL_IMAGE`; ``audio``: :class:`~omniperceiver.adapters.WaveformAdapter`
    keywords merged over :data:`MULTIMODAL_AUDIO`. The decoder queries each modality with the
    Fourier features of its inputs' positions (its ``num_bands`` and ``max_resolution``)."""
    image, audio = merge(MULTIMODAL_IMAGE, image), merge(MULTIMODAL_AUDIO, audio)
    video_shape = tuple(image["video_shape"])
    adapters = {
        "audio": WaveformAdapter(**audio),
        "image": VideoAdapter(**image),
        "label": GridAdapter(input_channels=num_classes, input_axis=0),
    }
    probs = {"audio": 0.0, "image": 0.0, "label": 1.0} if mask_probs is None else mask_probs
    adapter = MaskTokens(MultimodalAdapter(adapters, min_padding_size=4), probs)
    config = encoder_config(MULTIMODAL_ENCODER, encoder, activation)
    audio_patches = audio["max_samples"] // audio["samples_per_patch"]
    queries = {"audio": FourierPositionEncoding(num_axes=1, num_bands=audio["num_bands"],
                                                max_resolution=audio["max_resolution"]),
               "image": FourierPositionEncoding(num_axes=3, num_bands=image["num_bands"],
                                                max_resolution=image["max_resolution"]),
               "label": LearnedPositionEncoding(1, label_query_channels)}
    multimodal_decoder = MultimodalDecoder(
        latent_dim=config.latent_dim, queries=queries,
        output_shapes={"audio": (audio_patches,), "image": video_shape, "label": (1,)},
        output_channels=output_channels,
        cross_attend=attention_spec(dict(heads=1, query_residual=False), decoder, activation))
    heads = {"audio": nn.Linear(output_channels, audio["samples_per_patch"]),
             "image": nn.Linear(output_channels, image["input_channels"]),
             "label": nn.Linear(output_channels, num_classes)}
    return PerceiverModel(input_adapter=adapter,
                          encoder=PerceiverEncoder(adapter.num_channels, config),
                          decoder=multimodal_decoder,
                          output_adapter=MultimodalOutput(heads, video_shape))


__all__ = ["MULTIMODAL_ENCODER", "MULTIMODAL_IMAGE", "MULTIMODAL_AUDIO",
           "multimodal_perceiver"]
