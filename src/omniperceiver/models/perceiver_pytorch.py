"""Models with perceiver-pytorch's constructor keywords (lucidrains' ``Perceiver`` and
``PerceiverIO``), for its users and for checkpoints converted with
:func:`omniperceiver.convert.from_lucidrains`."""

from __future__ import annotations

from ..adapters import GridAdapter
from ..decoders import QueryDecoder, SequenceOutput
from ..encoder import EncoderConfig, PerceiverEncoder
from ..model import Perceiver, PerceiverModel, lucidrains_attention
from ..registry import register_model

#: perceiver-pytorch's README model.
SEED = dict(input_channels=3, input_axis=2, num_freq_bands=6, max_freq=10.0, depth=6,
            num_latents=256, latent_dim=512, cross_heads=1, latent_heads=8, cross_dim_head=64,
            latent_dim_head=64, num_classes=1000, attn_dropout=0.0, ff_dropout=0.0,
            weight_tie_layers=False)


@register_model("perceiver-seed", "perceiver-pytorch's README model: 6 layers, 256x512 latents, "
                "224x224 RGB, 1000 classes (45,187,140 parameters)")
def perceiver_seed(**overrides) -> Perceiver:
    """:class:`~omniperceiver.Perceiver` keywords over the README model's."""
    return Perceiver(**{**SEED, **overrides})


@register_model("perceiver-pytorch", "perceiver-pytorch's Perceiver, built from the same "
                "constructor keywords (for checkpoints converted with from_lucidrains)")
def perceiver_pytorch(**kwargs) -> Perceiver:
    return Perceiver(**kwargs)


@register_model("perceiver-pytorch-io", "perceiver-pytorch's PerceiverIO, built from the same "
                "constructor keywords: inputs (batch, num_inputs, dim), queries passed by the "
                "caller (batch, num_outputs, queries_dim)")
def perceiver_pytorch_io(
    *,
    depth: int,
    dim: int,
    queries_dim: int,
    logits_dim: int | None = None,
    num_latents: int = 512,
    latent_dim: int = 512,
    cross_heads: int = 1,
    latent_heads: int = 8,
    cross_dim_head: int = 64,
    latent_dim_head: int = 64,
    weight_tie_layers: bool = False,
    decoder_ff: bool = False,
    seq_dropout_prob: float = 0.0,
) -> PerceiverModel:
    """One cross-attend, ``depth`` latent self-attends (one shared set of weights with
    ``weight_tie_layers``), then the queries cross-attend to the latents without a residual,
    with a feed-forward only when ``decoder_ff``; ``logits_dim`` adds a final linear layer.
    ``seq_dropout_prob`` (training-time input dropout) is not reproduced."""
    if seq_dropout_prob:
        raise ValueError("seq_dropout_prob (perceiver-pytorch's training-time structured "
                         "dropout) is not supported; convert with seq_dropout_prob=0")
    adapter = GridAdapter(input_channels=dim, input_axis=1)
    encoder = PerceiverEncoder(dim, EncoderConfig(
        num_latents=num_latents, latent_dim=latent_dim, num_blocks=depth,
        self_attends_per_block=1, num_cross_attends=1, cross_attend_sharing="all",
        block_sharing="all" if weight_tie_layers else "none",
        cross_attend=lucidrains_attention(cross_heads, cross_dim_head),
        self_attend=lucidrains_attention(latent_heads, latent_dim_head)))
    decoder = QueryDecoder(
        latent_dim=latent_dim, output_channels=logits_dim or queries_dim,
        query_channels=queries_dim, final_project=logits_dim is not None,
        cross_attend=lucidrains_attention(cross_heads, cross_dim_head, query_residual=False,
                                      feed_forward=decoder_ff))
    return PerceiverModel(input_adapter=adapter, encoder=encoder, decoder=decoder,
                          output_adapter=SequenceOutput())


__all__ = ["SEED", "perceiver_seed", "perceiver_pytorch", "perceiver_pytorch_io"]
