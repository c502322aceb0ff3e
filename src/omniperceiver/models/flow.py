"""Perceiver IO for optical flow: every pixel of a frame pair is an input and a query."""

from __future__ import annotations

from collections.abc import Sequence

from ..adapters import FlowAdapter
from ..config import attention_spec, encoder_config
from ..decoders import FlowOutput, InputQueryDecoder
from ..encoder import PerceiverEncoder
from ..model import PerceiverModel
from ..registry import register_model

#: The published encoder: 2048 x 512 latents, 24 self-attends with 16 heads.
FLOW_ENCODER = dict(num_latents=2048, latent_dim=512, num_blocks=1, self_attends_per_block=24,
                    cross_attend=dict(heads=1), self_attend=dict(heads=16))


@register_model("optical-flow-perceiver", "Perceiver IO for optical flow: pairs of frames as "
                "3x3 patches projected to 64 channels + 2D Fourier features, 2048x512 latents, "
                "24 self-attends, per-pixel queries from the inputs (DeepMind's optical_flow, "
                "transformers' optical-flow-perceiver: 41,057,134 parameters)")
def optical_flow_perceiver(
    *,
    image_shape: Sequence[int] = (368, 496),
    input_channels: int = 27,
    project_channels: int = 64,
    num_bands: int = 64,
    rescale_factor: float = 100.0,
    flow_scale: float = 20.0,
    activation: str = "gelu",
    encoder: dict | None = None,
    decoder: dict | None = None,
) -> PerceiverModel:
    """Frames (batch, 2, H, W, 27) of ``image_shape``, the training size (see
    :func:`~omniperceiver.adapters.flow_patches`) -> flow (batch, H, W, 2). The decoder's
    queries are the encoder's inputs (each pixel's features with their position features).

    The output is the decoder's divided by ``rescale_factor`` and multiplied by
    ``flow_scale``: with the published weights, 20 (the default) gives flow in pixels, as
    DeepMind's examples compute it; 1 gives transformers' ``PerceiverForOpticalFlow`` logits.
    """
    adapter = FlowAdapter(image_shape=tuple(image_shape), input_channels=input_channels,
                          project_channels=project_channels, num_bands=num_bands)
    config = encoder_config(FLOW_ENCODER, encoder, activation)
    spec = attention_spec(dict(heads=1, query_residual=False), decoder, activation)
    flow_decoder = InputQueryDecoder(latent_dim=config.latent_dim, output_channels=2,
                                     query_channels=adapter.num_channels, cross_attend=spec)
    return PerceiverModel(input_adapter=adapter,
                          encoder=PerceiverEncoder(adapter.num_channels, config),
                          decoder=flow_decoder,
                          output_adapter=FlowOutput(rescale_factor, flow_scale))


__all__ = ["FLOW_ENCODER", "optical_flow_perceiver"]
