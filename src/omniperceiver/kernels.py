"""Attention kernels: which computation runs ``softmax(q k^T * scale) v`` on which device.

:func:`attend` is the one entry point every attention layer calls. It uses PyTorch's fused
``scaled_dot_product_attention`` unless a measured case calls for another route (the
measurements are in docs/performance.md):

* one example in CPU training: the queries are split into groups so that every thread has work
  in the flash-attention backward (:func:`_backward_groups`);
* a long key array on a GPU whose fused kernel would leave most multiprocessors idle: keys in
  chunks with an online softmax (:func:`_fused_kernel_underfills_gpu`, :func:`attend_chunks`);
* CPU training where only the queries need a gradient (a cross-attend to raw inputs): the
  scores are built explicitly so autograd skips the key and value gradients; and bf16 on a
  CPU, where the fused kernel gains nothing from bf16 (:func:`_explicit_scores_pay_off`).

:func:`attend_chunks` also serves inputs that arrive chunk by chunk
(:class:`~omniperceiver.chunks.InputChunks`). Every route gives the same result up to rounding.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor


def attend(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, dropout: float = 0.0,
           scale: float | None = None) -> Tensor:
    """Scaled dot-product attention with a key mask.

    Shapes: ``q`` (batch, heads, num_queries, d_qk), ``k`` (batch, heads, num_keys, d_qk),
    ``v`` (batch, heads, num_keys, d_v), ``mask`` bool with True = keep, either (batch,
    num_keys) (the same keys for every query) or (batch, num_queries, num_keys) (each query
    its own keys, e.g. a causal mask). Returns (batch, heads, num_queries, d_v). ``scale``
    defaults to ``d_qk ** -0.5``.

    A query whose keys are all masked out gets a zero output (as in DeepMind's reference),
    instead of the NaN a softmax over nothing would give; other queries are untouched.
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
        if mask is not None:  # the key mask is shared; a per-query mask is split as q is
            mask = (mask.expand(groups, -1) if mask.dim() == 2
                    else mask.reshape(groups, n // groups, -1))
        out = attend(q, k, v, mask, dropout, scale)  # (groups, h, n / groups, d_v)
        return out.transpose(0, 1).reshape(1, h, n, out.shape[-1])
    if _fused_kernel_underfills_gpu(q, k, mask):
        num_keys = k.shape[2]
        size = math.ceil(num_keys / math.ceil(num_keys / CUDA_KEY_CHUNK))  # equal chunks
        chunks = ((k[:, :, i:i + size], v[:, :, i:i + size],
                   None if mask is None else mask[..., i:i + size])
                  for i in range(0, num_keys, size))
        return attend_chunks(q, chunks, dropout=dropout, scale=scale)
    kernel = _attend_explicit if _explicit_scores_pay_off(q, k, v) else _attend_fused
    if mask is None:
        return kernel(q, k, v, None, dropout, scale)
    mask = mask[:, None, :] if mask.dim() == 2 else mask  # (batch, num_queries or 1, num_keys)
    has_keys = mask.any(dim=-1)  # (batch, num_queries or 1)
    # Queries with no valid key attend to everything, then their output is zeroed.
    keep = (mask | ~has_keys[..., None])[:, None]  # (batch, 1, num_queries or 1, num_keys)
    out = kernel(q, k, v, keep, dropout, scale)
    return out * has_keys[:, None, :, None].to(out.dtype)


def _attend_fused(q: Tensor, k: Tensor, v: Tensor, keep: Tensor | None, dropout: float,
                  scale: float | None) -> Tensor:
    return F.scaled_dot_product_attention(q, k, v, attn_mask=keep, dropout_p=dropout,
                                          scale=scale)


#: The largest (batch x heads x queries x keys) score arrays, in bytes, that :func:`attend`
#: builds itself on a CPU instead of calling PyTorch's fused kernel. Measured on a 2-core AMD
#: EPYC with AVX-512 BF16 (``python benchmarks/run.py``: the raw_pixels section per route, and
#: the seed and vision-perceiver-fourier sections before and after; docs/performance.md):
#:
#: * float32 scores (float64 counted at 4 bytes), in training, when only the queries need a
#:   gradient (a cross-attend to raw inputs): faster built explicitly up to about 16 MiB, since
#:   autograd then skips the key and value gradients the fused backward always computes; past
#:   the cache the fused kernel's tiles win (the seed model's 49 MiB of scores).
#: * bf16 / float16 scores (2 bytes each, e.g. under autocast) in training, any gradients:
#:   PyTorch's fused CPU backward gains nothing from bf16, while the explicit route's products
#:   run at the bf16 rate (the raw_pixels section's cross-attends: 2.1-3.2x faster, up to the
#:   seed model's 24.5 MiB of scores).
#: * bf16 scores in inference: explicit up to 16 MiB (vision-perceiver-fourier's latent
#:   Transformer: 1791 -> 1455 ms); past that the fused kernel wins on few-channel inputs (the
#:   seed model's cross-attend).
CPU_EXPLICIT_SCORES_MAX_BYTES = 16 * 2**20
CPU_EXPLICIT_HALF_SCORES_MAX_BYTES = 64 * 2**20
CPU_EXPLICIT_HALF_INFERENCE_SCORES_MAX_BYTES = 16 * 2**20


def _explicit_scores_pay_off(q: Tensor, k: Tensor, v: Tensor) -> bool:
    """Whether :func:`attend` should build the score matrix itself instead of calling the
    fused kernel (CPU only; the cases and limits above)."""
    if q.device.type != "cpu" or _tracing():  # a compiled or exported graph keeps the fused
        return False                          # kernel, for any shape
    dtype = q.dtype
    if dtype == torch.float32 and torch.is_autocast_enabled("cpu"):
        dtype = torch.get_autocast_dtype("cpu")  # the product writes the scores in it
    count = q.shape[0] * q.shape[1] * q.shape[2] * k.shape[2]
    grad = torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v))
    if dtype in (torch.bfloat16, torch.float16):
        limit = (CPU_EXPLICIT_HALF_SCORES_MAX_BYTES if grad
                 else CPU_EXPLICIT_HALF_INFERENCE_SCORES_MAX_BYTES)
        return count * 2 <= limit
    if not (grad and q.requires_grad) or k.requires_grad or v.requires_grad:
        return False
    return count * 4 <= CPU_EXPLICIT_SCORES_MAX_BYTES


def _tracing() -> bool:
    compiler = getattr(torch, "compiler", None)
    return any(getattr(compiler, name, lambda: False)() for name in
               ("is_compiling", "is_exporting"))


def _attend_explicit(q: Tensor, k: Tensor, v: Tensor, keep: Tensor | None, dropout: float,
                     scale: float | None) -> Tensor:
    """softmax(q k^T * scale) v with the scores built as a tensor; ``keep`` (batch, 1, 1 or
    num_queries, num_keys) bool, True = attend, with at least one True per query."""
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    scores = (q * scale) @ k.transpose(-1, -2)  # (batch, heads, queries, keys)
    if keep is not None:
        scores = scores.masked_fill_(~keep, float("-inf"))  # the product's own output
    if scores.dtype == torch.bfloat16 and scores.device.type == "cpu":
        # bf16 scores (autocast): PyTorch's CPU softmax reads bf16, computes in float32 and
        # writes bf16, which the product with v reads anyway. Autocast would cast the whole
        # score array to float32 and the weights back (and again in the backward): half of
        # a bf16 training step of a large cross-attend was those copies.
        with torch.autocast("cpu", enabled=False):
            weights = scores.softmax(-1)
    else:
        weights = scores.to(torch.promote_types(scores.dtype, torch.float32)).softmax(-1)
        weights = weights.to(v.dtype)
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
    and (batch, chunk) or (batch, num_queries, chunk) bool, or None. Each chunk's softmax is
    merged into a running one (the log-sum-exp trick: a running maximum ``m``, normaliser
    ``l`` and weighted sum ``acc``, rescaled by ``exp(m_old - m_new)`` when the maximum grows),
    so only one chunk's (num_queries x chunk) scores exist at a time. Same result as
    :func:`attend` on the concatenated chunks, up to rounding; queries without any valid key
    get zeros.
    """
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    q = q * scale
    m = acc = l = None
    for k, v, mask in chunks:
        s = q @ k.transpose(-1, -2)  # (batch, heads, queries, chunk)
        s = s.to(torch.promote_types(s.dtype, torch.float32))
        if mask is not None:
            keep = mask[:, None, None, :] if mask.dim() == 2 else mask[:, None]
            s = s.masked_fill(~keep, float("-inf"))
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


__all__ = ["attend", "attend_chunks"]
