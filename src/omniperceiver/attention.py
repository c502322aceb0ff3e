"""Attention, the one mechanism every Perceiver stage is built from.

Encoder cross-attends (latents attend to inputs), latent self-attends and decoder cross-attends
(output queries attend to latents) are all :class:`AttentionLayer`: a pre-norm attention
sub-layer followed by a pre-norm feed-forward sub-layer, each with a residual connection.
The attention itself is :func:`attend`, a thin wrapper around
``torch.nn.functional.scaled_dot_product_attention`` (fused kernels; the
``(num_queries x num_keys)`` weight matrix is never built by our code).

Inputs too large to hold at once come as :class:`InputChunks`; a cross-attend then runs
:func:`attend_chunks`, which visits the keys chunk by chunk and merges the chunks with an
online softmax, so memory is bounded by one chunk, whatever the number of inputs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def attend(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, dropout: float = 0.0,
           scale: float | None = None) -> Tensor:
    """Scaled dot-product attention with a key mask.

    Shapes: ``q`` (batch, heads, num_queries, d_qk), ``k`` (batch, heads, num_keys, d_qk),
    ``v`` (batch, heads, num_keys, d_v), ``mask`` (batch, num_keys) bool with True = keep.
    Returns (batch, heads, num_queries, d_v). ``scale`` defaults to ``d_qk ** -0.5``.

    A query whose keys are all masked out gets a zero output (as in DeepMind's reference),
    instead of the NaN a softmax over nothing would give; other examples are untouched.
    """
    groups = _backward_groups(q, k, v)
    if groups > 1:
        # PyTorch's CPU flash-attention backward runs each (batch, head) on one thread: a
        # single example with one head (a Perceiver cross-attend, batch 1) would leave the
        # other threads idle (and spinning). The queries attend independently, so we split
        # them into `groups` examples that share the keys and values: same result.
        b, h, n, d = q.shape
        q = q.reshape(h, groups, n // groups, d).transpose(0, 1)  # (groups, h, n / groups, d)
        k, v = k.expand(groups, -1, -1, -1), v.expand(groups, -1, -1, -1)
        mask = None if mask is None else mask.expand(groups, -1)
        out = attend(q, k, v, mask, dropout, scale)  # (groups, h, n / groups, d_v)
        return out.transpose(0, 1).reshape(1, h, n, out.shape[-1])
    if _fused_kernel_underfills_gpu(q, k, mask):
        num_keys = k.shape[2]
        size = math.ceil(num_keys / math.ceil(num_keys / CUDA_KEY_CHUNK))  # equal chunks
        chunks = ((k[:, :, i:i + size], v[:, :, i:i + size],
                   None if mask is None else mask[:, i:i + size])
                  for i in range(0, num_keys, size))
        return attend_chunks(q, chunks, dropout=dropout, scale=scale)
    explicit = _explicit_scores_pay_off(q, k, v)
    if mask is None:
        if explicit:
            return _attend_explicit(q, k, v, None, dropout, scale)
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, scale=scale)
    has_keys = mask.any(dim=-1)  # (batch,)
    # Examples with no valid key attend to everything, then their output is zeroed.
    keep = (mask | ~has_keys[:, None])[:, None, None, :]
    if explicit:
        out = _attend_explicit(q, k, v, keep, dropout, scale)
    else:
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=keep, dropout_p=dropout,
                                             scale=scale)
    return out * has_keys[:, None, None, None].to(out.dtype)


#: The largest (batch x heads x queries x keys) float32 score array, in bytes, that
#: :func:`attend` builds itself on a CPU when the keys and values need no gradient.
CPU_EXPLICIT_SCORES_MAX_BYTES = 64 * 2**20


def _explicit_scores_pay_off(q: Tensor, k: Tensor, v: Tensor) -> bool:
    """Whether :func:`attend` should build the score matrix itself instead of calling the
    fused kernel: on a CPU, in training, when only the queries need a gradient.

    PyTorch's CPU flash-attention backward always computes the key and value gradients too.
    A cross-attend to raw inputs in context space (the keys and values are the standardised
    inputs themselves) needs neither, and built explicitly, autograd computes only the query
    gradient (docs/performance.md, "Cross-attends on a CPU"). The scores must stay small.
    """
    if q.device.type != "cpu" or not (torch.is_grad_enabled() and q.requires_grad):
        return False
    if k.requires_grad or v.requires_grad:
        return False
    return q.shape[0] * q.shape[1] * q.shape[2] * k.shape[2] * 4 <= CPU_EXPLICIT_SCORES_MAX_BYTES


def _attend_explicit(q: Tensor, k: Tensor, v: Tensor, keep: Tensor | None, dropout: float,
                     scale: float | None) -> Tensor:
    """softmax(q k^T * scale) v with the scores built as a tensor; ``keep`` (batch, 1, 1,
    num_keys) bool, True = attend, with at least one True per example."""
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    scores = (q * scale) @ k.transpose(-1, -2)  # (batch, heads, queries, keys)
    if keep is not None:
        scores = scores.masked_fill(~keep, float("-inf"))
    weights = scores.to(torch.promote_types(scores.dtype, torch.float32)).softmax(-1).to(v.dtype)
    if dropout:
        weights = F.dropout(weights, dropout)
    return weights @ v


#: Keys per chunk when :func:`attend` splits a long key array on a GPU (see below), and the
#: fewest keys for which it does.
CUDA_KEY_CHUNK = 16384
CUDA_MIN_KEYS_TO_SPLIT = 4096


def _fused_kernel_underfills_gpu(q: Tensor, k: Tensor, mask: Tensor | None) -> bool:
    """Whether :func:`attend` should not use PyTorch's fused CUDA attention for these shapes.

    The memory-efficient kernel (float32, or any key mask) gives each thread block one
    (example, head, 64 queries) and walks all keys there: a Perceiver cross-attend at a small
    batch (256 latents over 50,176 pixels, one head) keeps 4 of a GPU's ~100 multiprocessors
    busy, and on an H100 its float32 forward took 5x perceiver-pytorch's plain matrix products.
    Flash attention (half precision without a mask) splits the keys itself and is left alone.
    Instead, the keys are visited in chunks of ``CUDA_KEY_CHUNK`` with matrix products and an
    online softmax (:func:`attend_chunks`): the same result, every multiprocessor busy.
    """
    if q.device.type != "cuda" or k.shape[2] < CUDA_MIN_KEYS_TO_SPLIT:
        return False
    if q.dtype in (torch.float16, torch.bfloat16) and mask is None:
        return False
    thread_blocks = q.shape[0] * q.shape[1] * -(-q.shape[2] // 64)
    return thread_blocks < 64


def _backward_groups(q: Tensor, k: Tensor, v: Tensor) -> int:
    """Into how many groups :func:`attend` splits the queries of a single example so that
    every CPU thread has work in the backward pass (1: no split)."""
    needs_grad = torch.is_grad_enabled() and (q.requires_grad or k.requires_grad
                                               or v.requires_grad)
    if not needs_grad or q.device.type != "cpu" or q.shape[0] != 1:
        return 1
    heads, threads = q.shape[1], torch.get_num_threads()
    return math.gcd(q.shape[2], -(-threads // heads)) if heads < threads else 1


def attend_chunks(q: Tensor, chunks: Iterable[tuple[Tensor, Tensor, Tensor | None]], *,
                  dropout: float = 0.0, scale: float | None = None) -> Tensor:
    """:func:`attend` over keys and values that arrive in chunks.

    ``chunks`` yields ``(k, v, mask)``: (batch, heads, chunk, d_qk), (batch, heads, chunk, d_v)
    and (batch, chunk) bool or None. Each chunk's softmax is merged into a running one
    (the log-sum-exp trick: a running maximum ``m``, normaliser ``l`` and weighted sum
    ``acc``, rescaled by ``exp(m_old - m_new)`` when the maximum grows), so only one chunk's
    (num_queries x chunk) scores exist at a time. Same result as :func:`attend` on the
    concatenated chunks, up to rounding; queries without any valid key get zeros.
    """
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    q = q * scale
    m = acc = l = None
    for k, v, mask in chunks:
        s = q @ k.transpose(-1, -2)  # (batch, heads, queries, chunk)
        s = s.to(torch.promote_types(s.dtype, torch.float32))
        if mask is not None:
            s = s.masked_fill(~mask[:, None, None, :], float("-inf"))
        if m is None:
            m = torch.full_like(s[..., :1], float("-inf"))
            l = torch.zeros_like(m)
            acc = s.new_zeros(*s.shape[:-1], v.shape[-1])
        with torch.no_grad():  # the result does not depend on the shift, so no gradient
            m_new = torch.maximum(m, s.amax(dim=-1, keepdim=True))
            shift = m_new.masked_fill(m_new == float("-inf"), 0.0)  # no valid key yet: any
            rescale = torch.exp(m - shift)
        p = torch.exp(s - shift)  # masked keys give exp(-inf) = 0
        l = l * rescale + p.sum(dim=-1, keepdim=True)
        if dropout:
            p = F.dropout(p, dropout)
        acc = acc * rescale + p.to(v.dtype) @ v
        m = m_new
    if m is None:
        raise ValueError("attend_chunks got no chunks")
    # l is 0 for a query without valid keys (acc is 0 there too) and >= 1 otherwise.
    return (acc / l.clamp_min(1.0)).to(q.dtype)


class InputChunks:
    """An input array (batch_size, num_inputs, channels) produced ``chunk_size`` inputs at a time.

    ``build(start, stop)`` returns the inputs ``start:stop`` (batch_size, stop - start,
    channels), so that an array too large for memory (a 4096 x 4096 image with its Fourier
    features) never exists whole. Iterating yields ``(start, stop, chunk)``. A cross-attend
    given InputChunks attends chunk by chunk (:func:`attend_chunks`), building each chunk
    when it needs it (again for every cross-attend).
    """

    def __init__(self, build: Callable[[int, int], Tensor], *, batch_size: int,
                 num_inputs: int, chunk_size: int):
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive int, got {chunk_size}")
        self.build = build
        self.batch_size = batch_size
        self.num_inputs = num_inputs
        self.chunk_size = chunk_size

    @classmethod
    def from_tensor(cls, inputs: Tensor, chunk_size: int) -> InputChunks:
        """Chunks of an existing (batch, num_inputs, channels) tensor."""
        return cls(lambda start, stop: inputs[:, start:stop], batch_size=inputs.shape[0],
                   num_inputs=inputs.shape[1], chunk_size=chunk_size)

    def map(self, fn: Callable[[Tensor], Tensor]) -> InputChunks:
        """The chunks with ``fn`` applied to each (a per-input function, such as a LayerNorm)."""
        return InputChunks(lambda start, stop: fn(self.build(start, stop)),
                           batch_size=self.batch_size, num_inputs=self.num_inputs,
                           chunk_size=self.chunk_size)

    def __iter__(self) -> Iterator[tuple[int, int, Tensor]]:
        for start in range(0, self.num_inputs, self.chunk_size):
            stop = min(start + self.chunk_size, self.num_inputs)
            yield start, stop, self.build(start, stop)


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


__all__ = ["attend", "attend_chunks", "InputChunks", "Attention", "FeedForward",
           "AttentionSpec", "AttentionLayer", "self_attention_block"]
