"""Attention, the one mechanism every Perceiver stage is built from.

Encoder cross-attends (latents attend to inputs), latent self-attends and decoder cross-attends
(output queries attend to latents) are all :class:`AttentionLayer`: a pre-norm attention
sub-layer followed by a pre-norm feed-forward sub-layer, each with a residual connection.
:class:`Attention` projects queries, keys and values and calls
:func:`~omniperceiver.kernels.attend` (which kernel runs where is decided there); the
(num_queries x num_keys) weight matrix is built by our code only where that is measured to be
faster and small. A context given as :class:`~omniperceiver.chunks.InputChunks` is attended
chunk by chunk (:func:`~omniperceiver.kernels.attend_chunks`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .chunks import InputChunks
from .kernels import attend, attend_chunks


class Attention(nn.Module):
    """Multi-head attention of queries (batch, N, q_dim) over keys/values (batch, M, kv_dim).

    ``qk_channels`` and ``v_channels`` are totals over all heads; the output is projected back
    to ``out_dim`` channels (default ``q_dim``). The context may be :class:`InputChunks`.

    When the context has few channels (a cross-attend to raw inputs with position features,
    kv_dim < head size), attending in the context's own channel space is cheaper and exact:
    ``q . (W_k c + b_k) = (W_k^T q) . c + q . b_k``, where the last term is the same for every
    key and cancels in the softmax, and ``softmax(s) (W_v c + b_v) = (softmax(s) c) W_v^T + b_v``
    since the weights sum to one. The keys and values are then the context itself: the
    (M x (qk + v)) projections are never computed. :meth:`attends_in_context_space` decides
    by counting multiply-adds.
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
        self.v_channels = v_channels
        self.dropout = dropout
        self.to_q = nn.Linear(q_dim, qk_channels, bias=qkv_bias)
        self.to_kv = nn.Linear(kv_dim, qk_channels + v_channels, bias=qkv_bias)
        self.to_out = nn.Linear(v_channels, out_dim or q_dim)

    def _split_heads(self, x: Tensor) -> Tensor:
        b, n, c = x.shape  # -> (batch, heads, n, c / heads)
        return x.view(b, n, self.heads, c // self.heads).transpose(1, 2)

    def attends_in_context_space(self, num_queries: int, num_keys: int,
                                 device: torch.device | None = None) -> bool:
        """Whether attending in the context's channel space needs fewer multiply-adds than
        projecting keys and values (per example; see the class docstring)."""
        kv_dim, qkv = self.to_kv.in_features, self.qk_channels + self.v_channels
        if self.dropout and self.training and self.to_kv.bias is not None:
            return False  # dropped weights no longer sum to one: the value bias would differ
        if device is not None and device.type == "cuda" and (kv_dim % 8 or kv_dim > 256):
            return False  # the fused CUDA kernels want head sizes that are multiples of 8, <= 256
        projected = num_keys * (kv_dim + num_queries) * qkv
        in_context = num_queries * kv_dim * (2 * self.heads * num_keys + qkv)
        return in_context < projected

    def forward(self, x: Tensor, context: Tensor | InputChunks, mask: Tensor | None = None, *,
                context_affine: tuple[Tensor, Tensor] | None = None) -> Tensor:
        """``x`` (batch, N, q_dim), ``context`` (batch, M, kv_dim) or InputChunks of it,
        ``mask`` (batch, M) bool -> (batch, N, out_dim).

        ``context_affine=(scale, shift)``: the keys and values are projected from
        ``context * scale + shift`` (a LayerNorm's scale and shift, left to this layer);
        folded into the projection's weights, so no pass over the context is spent on it.
        """
        b, n, _ = x.shape
        h, dk, dv = self.heads, self.qk_channels // self.heads, self.v_channels // self.heads
        w_kv, b_kv = self.to_kv.weight, self.to_kv.bias  # (qk + v, kv_dim), (qk + v,)
        if context_affine is not None:  # W (s * c + t) + b = (W * s) c + (W t + b)
            scale, shift = context_affine
            shift = (w_kv * shift).sum(dim=-1)
            w_kv, b_kv = w_kv * scale, shift if b_kv is None else shift + b_kv
        q = self._split_heads(self.to_q(x))  # (b, h, n, dk)
        num_keys = context.num_inputs if isinstance(context, InputChunks) else context.shape[1]
        dropout = self.dropout if self.training else 0.0
        in_context = self.attends_in_context_space(n, num_keys, x.device)
        if in_context:
            w_k, w_v = w_kv.split([self.qk_channels, self.v_channels])
            q = q @ w_k.view(h, dk, -1)  # the queries moved into context space: (b, h, n, kv_dim)

            def keys_values(c: Tensor) -> tuple[Tensor, Tensor]:
                # (b, h, m, kv_dim), shared by all heads; cast once (not once as keys and
                # once as values) when autocast made the queries lower precision
                c = c.to(q.dtype)[:, None].expand(-1, h, -1, -1)
                return c, c
        else:
            def keys_values(c: Tensor) -> tuple[Tensor, Tensor]:
                k, v = F.linear(c, w_kv, b_kv).split([self.qk_channels, self.v_channels], -1)
                return self._split_heads(k), self._split_heads(v)

        if isinstance(context, InputChunks):
            out = attend_chunks(q, ((*keys_values(c), None if mask is None else mask[:, i:j])
                                    for i, j, c in context), dropout=dropout, scale=dk ** -0.5)
        else:
            out = attend(q, *keys_values(context), mask, dropout, scale=dk ** -0.5)

        if in_context:  # (b, h, n, kv_dim) -> (b, h, n, dv), then the value bias
            out = out @ w_v.view(h, dv, -1).transpose(-1, -2)
            if b_kv is not None:
                bias = b_kv[self.qk_channels:].view(h, 1, dv).to(out.dtype)
                if mask is not None:  # queries without any key keep their zero output
                    bias = bias * mask.any(dim=-1)[:, None, None, None]
                out = out + bias
        return self.to_out(out.transpose(1, 2).reshape(b, n, h * dv))


class FeedForward(nn.Module):
    """Position-wise MLP: ``dim -> dim * widening_factor -> dim``.

    ``activation`` is ``"gelu"`` (exact), ``"gelu_tanh"`` (the approximation JAX uses) or
    ``"geglu"`` (gated GELU, the first projection twice as wide).
    """

    def __init__(self, dim: int, *, widening_factor: int = 1, activation: str = "gelu",
                 dropout: float = 0.0):
        super().__init__()
        if activation not in ("gelu", "gelu_tanh", "geglu"):
            raise ValueError(
                f"activation must be 'gelu', 'gelu_tanh' or 'geglu', got {activation!r}")
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
    transformers) or not (perceiver-pytorch). ``feed_forward=False`` leaves out the feed-forward
    sub-layer (perceiver-pytorch's ``PerceiverIO`` decoder without ``decoder_ff``).
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
    feed_forward: bool = True


class AttentionLayer(nn.Module):
    """Pre-norm attention then pre-norm feed-forward, each with a residual connection.

    A cross-attend when ``kv_dim`` is given (keys/values from a separate input with its own
    LayerNorm), a self-attend otherwise. ``forward(x, context=None, mask=None)`` maps
    (batch, N, q_dim) to (batch, N, q_dim); ``context`` (batch, M, kv_dim) or
    :class:`InputChunks` of it; ``mask`` (batch, M) masks the context.
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
        self.norm_ff = nn.LayerNorm(q_dim) if spec.feed_forward else None
        self.ff = (FeedForward(q_dim, widening_factor=spec.widening_factor,
                               activation=spec.activation, dropout=spec.ff_dropout)
                   if spec.feed_forward else None)

    def forward(self, x: Tensor, context: Tensor | InputChunks | None = None,
                mask: Tensor | None = None, *, context_standardized: bool = False) -> Tensor:
        """``context_standardized=True``: the context is already standardised over its
        channels (``F.layer_norm`` without scale and shift, with ``norm_kv.eps``), as the
        encoder does once for all its cross-attends; ``norm_kv``'s scale and shift are then
        folded into the key/value projection."""
        q = self.norm_q(x)
        if not self.is_cross:
            kv = q
        elif isinstance(context, InputChunks):
            kv = context.map(self.norm_kv)  # normalised chunk by chunk, as they are built
        else:
            kv = context if context_standardized else self.norm_kv(context)
        affine = (self.norm_kv.weight, self.norm_kv.bias) if context_standardized else None
        attended = self.attention(q, kv, mask, context_affine=affine)
        x = x + attended if self.query_residual else attended
        return x if self.ff is None else x + self.ff(self.norm_ff(x))


def self_attention_block(dim: int, num_layers: int, spec: AttentionSpec) -> nn.Sequential:
    """``num_layers`` latent self-attends, (batch, N, dim) -> (batch, N, dim)."""
    return nn.Sequential(*(AttentionLayer(dim, spec=spec) for _ in range(num_layers)))


__all__ = ["Attention", "FeedForward", "AttentionSpec", "AttentionLayer", "self_attention_block"]
