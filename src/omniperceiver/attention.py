"""Attention, the one mechanism every Perceiver stage is built from.

Encoder cross-attends (latents attend to inputs), latent self-attends and decoder cross-attends
(output queries attend to latents) are all :class:`AttentionLayer`: a pre-norm attention
sub-layer followed by a pre-norm feed-forward sub-layer, each with a residual connection.
:class:`Attention` projects queries, keys and values and calls
:func:`~omniperceiver.kernels.attend` (which kernel runs where is decided there); the
(num_queries x num_keys) weight matrix is built by our code only where that is measured to be
faster and small. A context given as :class:`~omniperceiver.chunks.InputChunks` is attended
chunk by chunk (:func:`~omniperceiver.kernels.attend_chunks`).

The same layer is the Flamingo Perceiver Resampler's block
(:class:`~omniperceiver.resampler.PerceiverResampler`): with ``keys_include_queries`` the
latents attend to ``[inputs; latents]``; its variants choose RMSNorm, grouped-query heads,
per-head query/key LayerNorms, projections without biases and gated feed-forwards.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .chunks import InputChunks
from .kernels import attend, attend_chunks

NORMS = ("layer", "rms")


def make_norm(kind: str, dim: int, eps: float = 1e-5) -> nn.Module:
    """``"layer"``: LayerNorm (scale and shift); ``"rms"``: RMSNorm (scale only)."""
    if kind == "layer":
        return nn.LayerNorm(dim, eps=eps)
    if kind == "rms":
        return nn.RMSNorm(dim, eps=eps)
    raise ValueError(f"norm must be one of {NORMS}, got {kind!r}")


class Attention(nn.Module):
    """Multi-head attention of queries (batch, N, q_dim) over keys/values (batch, M, kv_dim).

    ``qk_channels`` and ``v_channels`` are totals over all query heads; the output is projected
    back to ``out_dim`` channels (default ``q_dim``). The context may be :class:`InputChunks`.

    ``kv_heads`` (grouped-query attention, default ``heads``): the keys and values have
    ``kv_heads`` heads, each shared by ``heads / kv_heads`` consecutive query heads.
    ``qk_norm``: a LayerNorm over each head's query and key channels (IDEFICS' resampler).

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
        out_bias: bool = True,
        kv_heads: int | None = None,
        qk_norm: bool = False,
        dropout: float = 0.0,
    ):
        super().__init__()
        kv_heads = kv_heads or heads
        for name, channels in (("qk_channels", qk_channels), ("v_channels", v_channels)):
            if channels % heads:
                raise ValueError(f"{name}={channels} must be divisible by heads={heads}")
        if heads % kv_heads:
            raise ValueError(f"heads={heads} must be divisible by kv_heads={kv_heads}")
        self.heads = heads
        self.kv_heads = kv_heads
        self.qk_channels = qk_channels
        self.v_channels = v_channels
        self.dropout = dropout
        # the key and value widths: one head of each per key/value head
        self.kv_split = (qk_channels // heads * kv_heads, v_channels // heads * kv_heads)
        self.to_q = nn.Linear(q_dim, qk_channels, bias=qkv_bias)
        self.to_kv = nn.Linear(kv_dim, sum(self.kv_split), bias=qkv_bias)
        self.to_out = nn.Linear(v_channels, out_dim or q_dim, bias=out_bias)
        self.norm_q = nn.LayerNorm(qk_channels // heads) if qk_norm else None
        self.norm_k = nn.LayerNorm(qk_channels // heads) if qk_norm else None

    @staticmethod
    def _split_heads(x: Tensor, heads: int) -> Tensor:
        b, n, c = x.shape  # -> (batch, heads, n, c / heads)
        return x.view(b, n, heads, c // heads).transpose(1, 2)

    def attends_in_context_space(self, num_queries: int, num_keys: int,
                                 device: torch.device | None = None) -> bool:
        """Whether attending in the context's channel space needs fewer multiply-adds than
        projecting keys and values (per example; see the class docstring)."""
        kv_dim, qkv = self.to_kv.in_features, self.qk_channels + self.v_channels
        if self.norm_k is not None or self.kv_heads != self.heads:
            return False  # the keys are normalised per head, or shared between heads
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
        q = self._split_heads(self.to_q(x), h)  # (b, h, n, dk)
        if self.norm_q is not None:
            q = self.norm_q(q)
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
                k, v = F.linear(c, w_kv, b_kv).split(self.kv_split, -1)
                k, v = self._split_heads(k, self.kv_heads), self._split_heads(v, self.kv_heads)
                if self.norm_k is not None:
                    k = self.norm_k(k)
                if self.kv_heads != h:  # query head i reads key/value head i // (h / kv_heads)
                    k = k.repeat_interleave(h // self.kv_heads, dim=1)
                    v = v.repeat_interleave(h // self.kv_heads, dim=1)
                return k, v

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


#: Feed-forward activations; a gated one is applied to the gate.
ACTIVATIONS = {
    "gelu": F.gelu,
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
    "sq_relu": lambda x: F.relu(x).square(),
    "geglu": F.gelu,
    "swiglu": F.silu,
}


class FeedForward(nn.Module):
    """Position-wise MLP: ``dim -> dim * widening_factor -> dim``.

    ``activation`` is ``"gelu"`` (exact), ``"gelu_tanh"`` (the approximation JAX uses),
    ``"relu"``, ``"sq_relu"`` (``relu(h)^2``, Perceiver AR's), or gated: ``"geglu"``
    (``h * gelu(gate)``) or ``"swiglu"`` (``h * silu(gate)``), where ``fc1`` computes
    ``[h; gate]`` (twice as wide). ``bias=False``: linear layers without biases.
    """

    def __init__(self, dim: int, *, widening_factor: int = 1, activation: str = "gelu",
                 dropout: float = 0.0, bias: bool = True):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {tuple(ACTIVATIONS)}, "
                             f"got {activation!r}")
        hidden = dim * widening_factor
        self.activation = activation
        self.gated = activation in ("geglu", "swiglu")
        self.fc1 = nn.Linear(dim, hidden * 2 if self.gated else hidden, bias=bias)
        self.fc2 = nn.Linear(hidden, dim, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        h = self.fc1(x)
        if self.gated:
            h, gate = h.chunk(2, dim=-1)
            h = h * ACTIVATIONS[self.activation](gate)
        else:
            h = ACTIVATIONS[self.activation](h)
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

    The Perceiver Resampler's variants: ``keys_include_queries`` (a cross-attend whose
    queries attend to ``[context; queries]``, both normalised, as in Flamingo), ``kv_heads``
    and ``qk_norm`` (see :class:`Attention`), ``out_bias`` and ``ff_bias`` (biases of the
    attention's output projection and of the feed-forward), ``norm`` (``"layer"`` or
    ``"rms"``) and ``norm_eps`` for every norm of the layer.
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
    keys_include_queries: bool = False
    kv_heads: int | None = None
    qk_norm: bool = False
    out_bias: bool = True
    ff_bias: bool = True
    norm: str = "layer"
    norm_eps: float = 1e-5


class AttentionLayer(nn.Module):
    """Pre-norm attention then pre-norm feed-forward, each with a residual connection.

    A cross-attend when ``kv_dim`` is given (keys/values from a separate input with its own
    LayerNorm), a self-attend otherwise. ``forward(x, context=None, mask=None)`` maps
    (batch, N, q_dim) to (batch, N, q_dim); ``context`` (batch, M, kv_dim) or
    :class:`InputChunks` of it; ``mask`` (batch, M) masks the context. With
    ``spec.keys_include_queries`` the keys and values come from ``[norm_kv(context);
    norm_q(x)]`` (batch, M + N, ...), and the queries' own keys are never masked.
    """

    def __init__(self, q_dim: int, kv_dim: int | None = None, spec: AttentionSpec | None = None):
        super().__init__()
        spec = spec or AttentionSpec()
        self.is_cross = kv_dim is not None
        if spec.keys_include_queries and (not self.is_cross or kv_dim != q_dim):
            raise ValueError(f"keys_include_queries needs a cross-attend with kv_dim == q_dim "
                             f"(the queries join the context), got q_dim={q_dim}, "
                             f"kv_dim={kv_dim}")
        kv_dim = kv_dim if self.is_cross else q_dim
        qk_channels = spec.qk_channels or kv_dim
        self.query_residual = spec.query_residual
        self.keys_include_queries = spec.keys_include_queries
        self.norm_q = make_norm(spec.norm, q_dim, spec.norm_eps)
        self.norm_kv = make_norm(spec.norm, kv_dim, spec.norm_eps) if self.is_cross else None
        self.attention = Attention(
            q_dim=q_dim,
            kv_dim=kv_dim,
            qk_channels=qk_channels,
            v_channels=spec.v_channels or qk_channels,
            heads=spec.heads,
            qkv_bias=spec.qkv_bias,
            out_bias=spec.out_bias,
            kv_heads=spec.kv_heads,
            qk_norm=spec.qk_norm,
            dropout=spec.attn_dropout,
        )
        self.norm_ff = make_norm(spec.norm, q_dim, spec.norm_eps) if spec.feed_forward else None
        self.ff = (FeedForward(q_dim, widening_factor=spec.widening_factor,
                               activation=spec.activation, dropout=spec.ff_dropout,
                               bias=spec.ff_bias)
                   if spec.feed_forward else None)

    def forward(self, x: Tensor, context: Tensor | InputChunks | None = None,
                mask: Tensor | None = None, *, context_standardized: bool = False) -> Tensor:
        """``context_standardized=True``: the context is already standardised over its
        channels (``F.layer_norm`` without scale and shift, with ``norm_kv.eps``), as the
        encoder does once for all its cross-attends; ``norm_kv``'s scale and shift are then
        folded into the key/value projection (LayerNorm only)."""
        q = self.norm_q(x)
        if not self.is_cross:
            kv = q
        elif isinstance(context, InputChunks):
            kv = context.map(self.norm_kv)  # normalised chunk by chunk, as they are built
        else:
            kv = context if context_standardized else self.norm_kv(context)
        if self.keys_include_queries:
            if not isinstance(kv, Tensor) or context_standardized:
                raise ValueError("keys_include_queries takes the context as one tensor, "
                                 "not in chunks or standardised")
            kv = torch.cat([kv, q], dim=1)  # (batch, M + N, kv_dim)
            if mask is not None:
                mask = torch.cat([mask, mask.new_ones(x.shape[:2])], dim=1)
        affine = (self.norm_kv.weight, self.norm_kv.bias) if context_standardized else None
        attended = self.attention(q, kv, mask, context_affine=affine)
        x = x + attended if self.query_residual else attended
        return x if self.ff is None else x + self.ff(self.norm_ff(x))


def self_attention_block(dim: int, num_layers: int, spec: AttentionSpec) -> nn.Sequential:
    """``num_layers`` latent self-attends, (batch, N, dim) -> (batch, N, dim)."""
    return nn.Sequential(*(AttentionLayer(dim, spec=spec) for _ in range(num_layers)))


__all__ = ["Attention", "FeedForward", "AttentionSpec", "AttentionLayer", "self_attention_block",
           "make_norm", "NORMS", "ACTIVATIONS"]
