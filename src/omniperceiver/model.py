"""Models: the composition input adapter -> encoder -> decoder -> output adapter.

* :class:`PerceiverModel` composes any four parts.
* :class:`PerceiverIO` builds them from a :class:`PerceiverIOConfig`.
* :class:`Perceiver` takes perceiver-pytorch's constructor keywords and forward signature.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from torch import Tensor, nn

from .adapters.base import InputAdapter
from .adapters.grid import GridAdapter
from .attention import AttentionSpec
from .config import from_dict as config_from_dict
from .config import to_dict as config_to_dict
from .decoders import (
    ClassificationDecoder,
    ClassificationOutput,
    Decoder,
    GridOutput,
    OutputAdapter,
    QueryDecoder,
    SequenceOutput,
    grid_decoder,
)
from .encoder import EncoderConfig, PerceiverEncoder
from .position import FourierPositionEncoding, PositionEncoding, build_position_encoding
from .validation import check_config, check_options


class PerceiverModel(nn.Module):
    """``output_adapter(decoder(encoder(input_adapter(x))))``: one forward for every task.

    ``forward(inputs, mask=None, queries=None, *, subsample=None, return_latents=False)``:
    the input adapter turns ``inputs`` into the input array (batch, num_inputs, channels) and
    its mask; the latents cross-attend to it and self-attend; the decoder's output queries
    (``queries``, or what :meth:`~omniperceiver.decoders.Decoder.decoder_query` builds from
    the adapted inputs; ``subsample`` picks some outputs) cross-attend to the latents; the
    output adapter shapes the result. ``decoder=None`` makes a model that returns the latents
    (batch, num_latents, latent_dim).
    """

    def __init__(self, *, input_adapter: InputAdapter, encoder: PerceiverEncoder,
                 decoder: Decoder | None = None, output_adapter: OutputAdapter | None = None):
        super().__init__()
        if encoder.input_channels != input_adapter.num_channels:
            raise ValueError(
                f"the encoder expects {encoder.input_channels} input channels, the input "
                f"adapter produces {input_adapter.num_channels}")
        self.input_adapter = input_adapter
        self.encoder = encoder
        self.decoder = decoder
        self.output_adapter = output_adapter or SequenceOutput()

    def forward(self, inputs, mask=None, queries: Tensor | None = None, *, subsample=None,
                return_latents: bool = False):
        chunk_size = self.encoder.config.input_chunk_size
        if chunk_size is not None and hasattr(self.input_adapter, "input_chunks"):
            # Inputs built chunk by chunk as the encoder consumes them (huge grids).
            adapted = self.input_adapter.input_chunks(inputs, mask, chunk_size=chunk_size)
        else:
            adapted = self.input_adapter(inputs, mask)
        latents = self.encoder(adapted.inputs, adapted.mask)
        if return_latents or self.decoder is None:
            return latents
        outputs = self.decoder(latents, queries, adapted=adapted, subsample=subsample)
        return self.output_adapter(outputs, adapted)


# --- Perceiver IO from a config ---------------------------------------------------------------


@dataclass
class FourierConfig:
    """Fourier position features; ``max_resolution=None`` uses the grid's own size."""

    num_bands: int = 64
    max_resolution: tuple[float, ...] | None = None
    concat_pos: bool = True
    sine_only: bool = False
    layout: str = "deepmind"


@dataclass
class LearnedPositionConfig:
    """A learned embedding for each of the ``prod(shape)`` positions of a fixed grid."""

    shape: tuple[int, ...]
    num_channels: int = 64


@dataclass
class ClassificationDecoderConfig:
    num_classes: int
    pooling: str = "query"
    cross_attend: AttentionSpec = field(default_factory=AttentionSpec)


@dataclass
class GridDecoderConfig:
    """Dense outputs on ``output_shape``, one query per cell (Fourier or learned)."""

    output_shape: tuple[int, ...]
    output_channels: int
    query: str = "fourier"
    num_bands: int = 64
    cross_attend: AttentionSpec = field(default_factory=AttentionSpec)


@dataclass
class QueryDecoderConfig:
    """Outputs for queries the caller passes to ``forward`` (batch, num_outputs, query_channels)."""

    query_channels: int
    output_channels: int
    cross_attend: AttentionSpec = field(default_factory=AttentionSpec)


DecoderConfig = ClassificationDecoderConfig | GridDecoderConfig | QueryDecoderConfig


@dataclass
class PerceiverIOConfig:
    """Inputs of shape (batch, *axes, input_channels) with ``input_axis`` axes, position
    features given by ``position`` (None for none), an encoder and a decoder."""

    input_channels: int
    input_axis: int
    decoder: DecoderConfig
    position: FourierConfig | LearnedPositionConfig | None = field(default_factory=FourierConfig)
    input_shape: tuple[int, ...] | None = None
    encoder: EncoderConfig = field(default_factory=EncoderConfig)

    def to_dict(self) -> dict:
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, d: dict) -> PerceiverIOConfig:
        return config_from_dict(cls, d)


def _position_encoding(config: PerceiverIOConfig) -> PositionEncoding | None:
    pos = config.position
    if pos is None:
        return None
    if isinstance(pos, LearnedPositionConfig):
        if len(pos.shape) != config.input_axis:
            raise ValueError(f"learned positions need a shape with {config.input_axis} axes, "
                             f"got {pos.shape}")
        return build_position_encoding("learned", grid_shape=pos.shape,
                                       num_channels=pos.num_channels)
    max_res = pos.max_resolution or config.input_shape
    if max_res is None:
        raise ValueError("FourierConfig needs max_resolution, or the config needs input_shape")
    return FourierPositionEncoding(num_axes=config.input_axis, num_bands=pos.num_bands,
                                   max_resolution=max_res, concat_pos=pos.concat_pos,
                                   sine_only=pos.sine_only, layout=pos.layout)


def build_decoder(config: DecoderConfig, latent_dim: int) -> tuple[nn.Module, nn.Module]:
    """The decoder and the output adapter that goes with it."""
    if isinstance(config, ClassificationDecoderConfig):
        return (ClassificationDecoder(latent_dim=latent_dim, num_classes=config.num_classes,
                                      pooling=config.pooling, cross_attend=config.cross_attend),
                ClassificationOutput())
    if isinstance(config, GridDecoderConfig):
        return (grid_decoder(latent_dim=latent_dim, output_shape=config.output_shape,
                             output_channels=config.output_channels, query=config.query,
                             num_bands=config.num_bands, cross_attend=config.cross_attend),
                GridOutput(config.output_shape))
    if isinstance(config, QueryDecoderConfig):
        return (QueryDecoder(latent_dim=latent_dim, output_channels=config.output_channels,
                             query_channels=config.query_channels,
                             cross_attend=config.cross_attend),
                SequenceOutput())
    raise TypeError(f"unknown decoder config {type(config).__name__}")


class PerceiverIO(PerceiverModel):
    """Perceiver IO built from a :class:`PerceiverIOConfig`.

    ``forward(inputs, mask=None, queries=None)``: inputs (batch, *axes, input_channels), mask
    (batch, num_inputs) or (batch, *axes) bool; ``queries`` (batch, num_outputs,
    query_channels) for a :class:`QueryDecoderConfig` decoder (required there: it never returns
    the latents in their place). Pass ``input_adapter`` to use a modality adapter instead of
    the grid adapter the config describes.
    """

    def __init__(self, config: PerceiverIOConfig, *, input_adapter: InputAdapter | None = None):
        check_config(config)
        if input_adapter is None:
            if config.input_shape is not None and len(config.input_shape) != config.input_axis:
                raise ValueError(f"input_shape {config.input_shape} does not have "
                                 f"input_axis={config.input_axis} axes")
            input_adapter = GridAdapter(input_channels=config.input_channels,
                                        input_axis=config.input_axis,
                                        position=_position_encoding(config))
        decoder, output_adapter = build_decoder(config.decoder, config.encoder.latent_dim)
        super().__init__(input_adapter=input_adapter,
                         encoder=PerceiverEncoder(input_adapter.num_channels, config.encoder),
                         decoder=decoder, output_adapter=output_adapter)
        self.config = config


# --- perceiver-pytorch's Perceiver -----------------------------------------------------------


def lucidrains_attention(heads: int, dim_head: int, **kwargs) -> AttentionSpec:
    """perceiver-pytorch's attention: ``heads`` x ``dim_head`` channels, no query/key/value
    biases, GEGLU feed-forward with widening 4; ``kwargs`` are further AttentionSpec fields."""
    return AttentionSpec(heads=heads, qk_channels=heads * dim_head, v_channels=heads * dim_head,
                         widening_factor=4, activation="geglu", qkv_bias=False, **kwargs)


class Perceiver(PerceiverModel):
    """The Perceiver with perceiver-pytorch 0.11's constructor keywords and forward signature.

    ``depth`` layers, each a cross-attend (``cross_heads`` x ``cross_dim_head``, GEGLU
    feed-forward with widening 4, no query/key/value biases) followed by
    ``self_per_cross_attn`` latent self-attends; ``weight_tie_layers`` shares layers
    ``1..depth-1``; the head averages the latents, then LayerNorm and Linear. Inputs are
    channels-last (batch, *axes, input_channels) with perceiver-pytorch's Fourier features
    (one ``max_freq``, per-axis ``[sin, cos, pos]``). The latents are initialised
    truncated-normal (std 0.02) rather than standard normal.

    ``input_adapter`` replaces the grid adapter (for example a multimodal adapter); then
    ``input_channels``, ``input_axis`` and the Fourier keywords are not used.
    """

    def __init__(
        self,
        *,
        num_freq_bands: int,
        depth: int,
        max_freq: float,
        input_channels: int = 3,
        input_axis: int = 2,
        num_latents: int = 512,
        latent_dim: int = 512,
        cross_heads: int = 1,
        latent_heads: int = 8,
        cross_dim_head: int = 64,
        latent_dim_head: int = 64,
        num_classes: int = 1000,
        attn_dropout: float = 0.0,
        ff_dropout: float = 0.0,
        weight_tie_layers: bool = False,
        fourier_encode_data: bool = True,
        self_per_cross_attn: int = 1,
        final_classifier_head: bool = True,
        inverted_cross_attn: bool | Sequence[bool] = False,
        attn_residual: bool = False,
        attn_residual_rank: int = 64,
        input_adapter: InputAdapter | None = None,
    ):
        check_options(dict(num_freq_bands=num_freq_bands, depth=depth, max_freq=max_freq,
                           input_channels=input_channels, input_axis=input_axis,
                           num_latents=num_latents, latent_dim=latent_dim,
                           cross_heads=cross_heads, latent_heads=latent_heads,
                           cross_dim_head=cross_dim_head, latent_dim_head=latent_dim_head,
                           num_classes=num_classes, attn_dropout=attn_dropout,
                           ff_dropout=ff_dropout, self_per_cross_attn=self_per_cross_attn),
                      where="Perceiver")
        if any([inverted_cross_attn] if isinstance(inverted_cross_attn, bool)
               else inverted_cross_attn) or attn_residual:
            raise ValueError("inverted_cross_attn and attn_residual (perceiver-pytorch extensions "
                             "outside the papers) are not supported")
        position = (FourierPositionEncoding(num_axes=input_axis, num_bands=num_freq_bands,
                                            max_resolution=max_freq, layout="lucidrains")
                    if fourier_encode_data else None)
        adapter = input_adapter or GridAdapter(input_channels=input_channels,
                                               input_axis=input_axis, position=position)

        dropout = dict(attn_dropout=attn_dropout, ff_dropout=ff_dropout)
        encoder = PerceiverEncoder(adapter.num_channels, EncoderConfig(
            num_latents=num_latents, latent_dim=latent_dim, num_blocks=depth,
            num_cross_attends=depth, self_attends_per_block=self_per_cross_attn,
            cross_attend_sharing="after_first" if weight_tie_layers else "none",
            block_sharing="after_first" if weight_tie_layers else "none",
            cross_attend=lucidrains_attention(cross_heads, cross_dim_head, **dropout),
            self_attend=lucidrains_attention(latent_heads, latent_dim_head, **dropout)))
        decoder = (ClassificationDecoder(latent_dim=latent_dim, num_classes=num_classes,
                                         pooling="mean") if final_classifier_head else None)
        super().__init__(input_adapter=adapter, encoder=encoder, decoder=decoder,
                         output_adapter=ClassificationOutput())

    def forward(self, data: Tensor, mask: Tensor | None = None,
                return_embeddings: bool = False) -> Tensor:
        """``data`` (batch, *axes, input_channels), ``mask`` (batch, num_inputs) or
        (batch, *axes) bool. Returns logits (batch, num_classes), or the latents
        (batch, num_latents, latent_dim) with ``return_embeddings=True`` or without a head."""
        return super().forward(data, mask, return_latents=return_embeddings)


__all__ = [
    "PerceiverModel", "PerceiverIO", "PerceiverIOConfig", "Perceiver", "FourierConfig",
    "LearnedPositionConfig", "ClassificationDecoderConfig", "GridDecoderConfig",
    "QueryDecoderConfig", "build_decoder", "lucidrains_attention",
]
