"""Perceiver IO's masked language model on UTF-8 bytes."""

from __future__ import annotations

from ..adapters import ByteTokenizer, TextAdapter
from ..config import attention_spec, encoder_config
from ..decoders import EmbeddingLogits, TokenQueryDecoder
from ..encoder import PerceiverEncoder
from ..model import PerceiverModel
from ..position import LearnedPositionEncoding
from ..registry import register_model

#: The published encoder: 256 x 1280 latents, 26 self-attends, 8 heads, 256 query/key channels.
LANGUAGE_ENCODER = dict(num_latents=256, latent_dim=1280, num_blocks=1, self_attends_per_block=26,
                        cross_attend=dict(heads=8, qk_channels=256, v_channels=1280),
                        self_attend=dict(heads=8, qk_channels=256, v_channels=1280))


@register_model("language-perceiver", "Perceiver IO masked language model on UTF-8 bytes: "
                "2048 byte positions (768 channels), 256x1280 latents, 26 self-attends, "
                "per-position decoder queries, logits tied to the byte embedding (DeepMind's "
                "language_perceiver_io_bytes, transformers' language-perceiver: 201,108,230 "
                "parameters)")
def language_perceiver(
    *,
    vocab_size: int = ByteTokenizer.VOCAB_SIZE,
    max_length: int = 2048,
    num_channels: int = 768,
    activation: str = "gelu",
    encoder: dict | None = None,
    decoder: dict | None = None,
) -> PerceiverModel:
    """Token ids (batch, length <= max_length) of :class:`~omniperceiver.adapters.ByteTokenizer`
    -> logits (batch, length, vocab_size). Without a mask, padding ids are masked out. One
    learned query per position reads the latents; the logits reuse the token embedding."""
    adapter = TextAdapter(num_channels=num_channels, max_length=max_length, vocab_size=vocab_size)
    config = encoder_config(LANGUAGE_ENCODER, encoder, activation)
    queries = TokenQueryDecoder(
        latent_dim=config.latent_dim, output_channels=num_channels,
        queries=LearnedPositionEncoding(max_length, num_channels), final_project=False,
        cross_attend=attention_spec(dict(heads=8, qk_channels=256, v_channels=num_channels,
                                         query_residual=False), decoder, activation))
    return PerceiverModel(input_adapter=adapter,
                          encoder=PerceiverEncoder(adapter.num_channels, config),
                          decoder=queries, output_adapter=EmbeddingLogits(vocab_size))


__all__ = ["LANGUAGE_ENCODER", "language_perceiver"]
