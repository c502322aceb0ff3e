"""Perceiver AR (Hawthorne et al. 2022): autoregressive models whose latents are the last
positions of their context."""

from __future__ import annotations

from ..adapters.text import ByteTokenizer
from ..perceiver_ar import PerceiverAR
from ..registry import register_model


@register_model("perceiver-ar-bytes-small",
                "Perceiver AR on UTF-8 bytes, small enough to train on a CPU in minutes: "
                "1024-byte context, 128 latents, 256 channels, 4 heads, 4 self-attends "
                "(about 4M parameters)")
def perceiver_ar_bytes_small(
    *,
    vocab_size: int = ByteTokenizer.VOCAB_SIZE,
    max_context: int = 1024,
    num_latents: int = 128,
    dim: int = 256,
    heads: int = 4,
    num_self_attends: int = 4,
    widening_factor: int = 4,
    activation: str = "gelu",
    dropout: float = 0.1,
    prefix_dropout: float = 0.0,
    rotary_fraction: float = 0.5,
) -> PerceiverAR:
    """Token ids of :class:`~omniperceiver.adapters.ByteTokenizer` (batch, N <= 1024) ->
    next-byte logits (batch, M, 262)."""
    return PerceiverAR(vocab_size=vocab_size, max_context=max_context, num_latents=num_latents,
                       dim=dim, heads=heads, num_self_attends=num_self_attends,
                       widening_factor=widening_factor, activation=activation, dropout=dropout,
                       prefix_dropout=prefix_dropout, rotary_fraction=rotary_fraction)


@register_model("perceiver-ar-imagenet64",
                "Perceiver AR with the sizes of the paper's ImageNet 64x64 model (3.40 "
                "bits/dim; google-research/perceiver-ar's imagenet_w_positions configuration): "
                "context 12,416, 1024 latents, 1024 channels, 16 heads, 60 self-attends, "
                "squared-ReLU feed-forwards 4x wide (768,898,304 parameters); random weights, "
                "not trained here")
def perceiver_ar_imagenet64(
    *,
    vocab_size: int = 256,
    max_context: int = 12416,
    num_latents: int = 1024,
    dim: int = 1024,
    heads: int = 16,
    num_self_attends: int = 60,
    widening_factor: int = 4,
    activation: str = "sq_relu",
    dropout: float = 0.1,
    prefix_dropout: float = 0.0,
    rotary_fraction: float = 0.5,
) -> PerceiverAR:
    """Sub-pixel intensities (batch, N <= 12,416) in [0, 256) -> logits (batch, M, 256).
    Positions are rotary here (the released configuration of this run used learned absolute
    position embeddings)."""
    return PerceiverAR(vocab_size=vocab_size, max_context=max_context, num_latents=num_latents,
                       dim=dim, heads=heads, num_self_attends=num_self_attends,
                       widening_factor=widening_factor, activation=activation, dropout=dropout,
                       prefix_dropout=prefix_dropout, rotary_fraction=rotary_fraction)


register_model(
    "perceiver-ar",
    "PerceiverAR with its own keywords, every option open (the preset converted "
    "perceiver-ar-pytorch models are saved as; omniperceiver.convert.from_lucidrains)",
)(PerceiverAR)

__all__ = ["PerceiverAR", "perceiver_ar_bytes_small", "perceiver_ar_imagenet64"]
