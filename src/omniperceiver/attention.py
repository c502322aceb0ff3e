"""Attention, the one mechanism every Perceiver stage is built from.

Encoder cross-attends (latents attend to inputs), latent self-attends and decoder cross-attends
(output queries attend to latents) are all :class:`AttentionLayer`: a pre-norm attention
sub-layer followed by a pre-norm feed-forward sub-layer, each with a residual connection.
The attention itself is :func:`attend`, a thin wrapper around
``torch.nn.functional.scaled_dot_product_attention`` (fused kernels; the
``(num_queries x num_keys)`` weight matrix is never built by our code).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn


def attend(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, dropout: float = 0.0) -> Tensor:
    """Scaled dot-product attention with a key mask.

    Shapes: ``q`` (batch, heads, num_queries, d_qk), ``k`` (batch, heads, num_keys, d_qk),
    ``v`` (batch, heads, num_keys, d_v), ``mask`` (batch, num_keys) bool with True = keep.
    Returns (batch, heads, num_queries, d_v).

    A query whose keys are all masked out gets a zero output (as in DeepMind's reference),
    instead of the NaN a softmax over nothing would give; other examples are untouched.
    """
    if mask is None:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout)
    has_keys = mask.any(dim=-1)  # (batch,)
    # Examples with no valid key attend to everything, then their output is zeroed.
    attn_mask = (mask | ~has_keys[:, None])[:, None, None, :]
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout)
    return out * has_keys[:, None, None, None].to(out.dtype)


class Attention(nn.Module):
    """Multi-head attention of queries (batch, N, q_dim) over keys/values (batch, M, kv_dim).

    ``qk_channels`` and ``v_channels`` are totals over all heads; the output is projected back
    to ``out_dim`` channels (default ``q_dim``).
    """

    def __init__(
        self,
        *,
        q_dim: int,
        kv_dim: int,
        qk_channels: int,
        v_channels: int,
        heads: int = 1,
        out_dim: int | None = None,
        qkv_bias: bool = True,
        dropout: float = 0.0,
    ):
        super().__init__()
        for name, channels in (("qk_channels", qk_channels), ("v_channels", v_channels)):
            if channels % heads:
                raise ValueError(f"{name}={channels} must be divisible by heads={heads}")
        self.heads = heads
        self.qk_channels = qk_channels
        self.dropout = dropout
        self.to_q = nn.Linear(q_dim, qk_channels, bias=qkv_bias)
        self.to_kv = nn.Linear(kv_dim, qk_channels + v_channels, bias=qkv_bias)
        self.to_out = nn.Linear(v_channels, out_dim or q_dim)

    def _split_heads(self, x: Tensor) -> Tensor:
        b, n, c = x.shape  # -> (batch, heads, n, c / heads)
        return x.view(b, n, self.heads, c // self.heads).transpose(1, 2)

    def forward(self, x: Tensor, context: Tensor, mask: Tensor | None = None) -> Tensor:
        k, v = self.to_kv(context).split([self.qk_channels, self.to_out.in_features], dim=-1)
        q, k, v = map(self._split_heads, (self.to_q(x), k, v))
        out = attend(q, k, v, mask, self.dropout if self.training else 0.0)
        b, h, n, d = out.shape
        return self.to_out(out.transpose(1, 2).reshape(b, n, h * d))


class FeedForward(nn.Module):
    """Position-wise MLP: ``dim -> dim * widening_factor -> dim``.

    ``activation`` is ``"gelu"`` (exact), ``"gelu_tanh"`` (the approximation JAX uses) or
    ``"geglu"`` (gated GELU, the first projection twice as wide).
    """

    def __init__(self, dim: int, *, widening_factor: int = 1, activation: str = "gelu",
                 dropout: float = 0.0):
        super().__init__()
        if activation not in ("gelu", "gelu_tanh", "geglu"):
            raise ValueError(f"activation must be 'gelu', 'gelu_tanh' or 'geglu', got {activation!r}")
        hidden = dim * widening_factor
        self.activation = activation
        self.fc1 = nn.Linear(dim, hidden * 2 if activation == "geglu" else hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        h = self.fc1(x)
        if self.activation == "geglu":
            h, gate = h.chunk(2, dim=-1)
            h = h * F.gelu(gate)
        else:
            h = F.gelu(h, approximate="tanh" if self.activation == "gelu_tanh" else "none")
        return self.dropout(self.fc2(h))


@dataclass
class AttentionSpec:
    """Hyper-parameters of one attention layer (an encoder or decoder cross-attend, or a
    latent self-attend).

    ``qk_channels=None`` follows DeepMind's default: the key/value input's channel count for
    a cross-attend, the query channel count for a self-attend. ``v_channels=None`` means
    ``qk_channels``. ``qkv_bias`` adds biases to the query/key/value projections (DeepMind,
    transformers) or not (perceiver-pytorch).
    """

    heads: int = 1
    qk_channels: int | None = None
    v_channels: int | None = None
    widening_factor: int = 1
    activation: str = "gelu"
    qkv_bias: bool = True
    query_residual: bool = True
    attn_dropout: float = 0.0
    ff_dropout: float = 0.0


class AttentionLayer(nn.Module):
    """Pre-norm attention then pre-norm feed-forward, each with a residual connection.

    A cross-attend when ``kv_dim`` is given (keys/values from a separate input with its own
    LayerNorm), a self-attend otherwise. ``forward(x, context=None, mask=None)`` maps
    (batch, N, q_dim) to (batch, N, q_dim); ``mask`` (batch, M) masks the context.
    """

    def __init__(self, q_dim: int, kv_dim: int | None = None, spec: AttentionSpec | None = None):
        super().__init__()
        spec = spec or AttentionSpec()
        self.is_cross = kv_dim is not None
        kv_dim = kv_dim if self.is_cross else q_dim
        qk_channels = spec.qk_channels or kv_dim
        self.query_residual = spec.query_residual
        self.norm_q = nn.LayerNorm(q_dim)
        self.norm_kv = nn.LayerNorm(kv_dim) if self.is_cross else None
        self.attention = Attention(
            q_dim=q_dim,
            kv_dim=kv_dim,
            qk_channels=qk_channels,
            v_channels=spec.v_channels or qk_channels,
            heads=spec.heads,
            qkv_bias=spec.qkv_bias,
            dropout=spec.attn_dropout,
        )
        self.norm_ff = nn.LayerNorm(q_dim)
        self.ff = FeedForward(q_dim, widening_factor=spec.widening_factor,
                              activation=spec.activation, dropout=spec.ff_dropout)

    def forward(self, x: Tensor, context: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        q = self.norm_q(x)
        kv = self.norm_kv(context) if self.is_cross else q
        attended = self.attention(q, kv, mask)
        x = x + attended if self.query_residual else attended
        return x + self.ff(self.norm_ff(x))


def self_attention_block(dim: int, num_layers: int, spec: AttentionSpec) -> nn.Sequential:
    """``num_layers`` latent self-attends, (batch, N, dim) -> (batch, N, dim)."""
    return nn.Sequential(*(AttentionLayer(dim, spec=spec) for _ in range(num_layers)))


__all__ = ["attend", "Attention", "FeedForward", "AttentionSpec", "AttentionLayer",
           "self_attention_block"]
