"""Decoders: output queries cross-attend to the latents.

Every decoder has the same small interface (after DeepMind's reference):

* ``build_queries(batch, *, subsample=None, device=None, dtype=None)`` returns the output
  queries (batch, num_outputs, query_channels), or None when the caller must supply them;
* ``output_shape`` the grid the outputs map back to (or None);
* ``forward(latents, queries=None, *, subsample=None)`` returns
  (batch, num_outputs, output_channels).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .attention import AttentionLayer, AttentionSpec
from .position import FourierPositionEncoding, LearnedPositionEncoding
from .validation import shape_str


class QueryDecoder(nn.Module):
    """Queries (batch, num_outputs, query_channels) cross-attend to latents
    (batch, num_latents, latent_dim); a final linear layer maps to ``output_channels``.

    ``queries`` is where the queries come from: a :class:`LearnedPositionEncoding`
    (learned queries), a :class:`FourierPositionEncoding` (position features of an output grid,
    which then needs ``output_shape``), or None (the caller passes ``queries`` to ``forward``).
    ``subsample`` (a LongTensor of flat output indices) decodes only those positions, for
    training on a subset of a large output.
    """

    def __init__(
        self,
        *,
        latent_dim: int,
        output_channels: int,
        query_channels: int | None = None,
        queries: FourierPositionEncoding | LearnedPositionEncoding | None = None,
        output_shape: Sequence[int] | None = None,
        cross_attend: AttentionSpec | None = None,
        final_project: bool = True,
    ):
        super().__init__()
        if queries is not None:
            query_channels = queries.num_channels
        if query_channels is None:
            raise ValueError(
                "query_channels is required when the queries are supplied by the caller")
        if isinstance(queries, FourierPositionEncoding) and output_shape is None:
            raise ValueError("Fourier queries need output_shape, the grid they are computed on")
        if isinstance(queries, LearnedPositionEncoding) and output_shape is None:
            output_shape = (queries.embedding.shape[0],)
        self.query_channels = query_channels
        self.queries = queries
        self.output_shape = tuple(output_shape) if output_shape is not None else None
        self.cross_attend = AttentionLayer(query_channels, latent_dim,
                                           cross_attend or AttentionSpec())
        self.final = (nn.Linear(query_channels, output_channels) if final_project
                      else nn.Identity())
        self.output_channels = output_channels if final_project else query_channels

    def build_queries(self, batch: int, *, subsample: Tensor | None = None, device=None,
                      dtype=torch.float32) -> Tensor | None:
        if self.queries is None:
            return None
        q = self.queries.grid(self.output_shape, device=device, dtype=dtype)
        if subsample is not None:
            q = q[subsample]
        return q.expand(batch, -1, -1)

    def forward(self, latents: Tensor, queries: Tensor | None = None, *,
                subsample: Tensor | None = None) -> Tensor:
        batch = latents.shape[0]
        if queries is None:
            queries = self.build_queries(batch, subsample=subsample, device=latents.device,
                                         dtype=latents.dtype)
            if queries is None:
                raise ValueError(
                    f"this decoder has no queries of its own: pass queries of shape "
                    f"(batch, num_outputs, {self.query_channels})")
        elif (not isinstance(queries, Tensor) or queries.ndim != 3
              or queries.shape[0] != batch or queries.shape[2] != self.query_channels):
            got = (shape_str(queries.shape) if isinstance(queries, Tensor)
                   else type(queries).__name__)
            raise ValueError(
                f"queries must have shape ({batch}, num_outputs, {self.query_channels}), got {got}")
        return self.final(self.cross_attend(queries, latents))


class ClassificationDecoder(nn.Module):
    """Latents (batch, num_latents, latent_dim) -> logits (batch, 1, num_classes).

    ``pooling="query"``: one learned query cross-attends to the latents (Perceiver IO);
    ``pooling="mean"``: the latents are averaged, layer-normalised and projected
    (the original Perceiver, perceiver-pytorch).
    """

    output_shape = (1,)

    def __init__(self, *, latent_dim: int, num_classes: int, pooling: str = "query",
                 cross_attend: AttentionSpec | None = None):
        super().__init__()
        if pooling not in ("query", "mean"):
            raise ValueError(f"pooling must be 'query' or 'mean', got {pooling!r}")
        self.pooling = pooling
        self.output_channels = num_classes
        if pooling == "query":
            self.query = QueryDecoder(latent_dim=latent_dim, output_channels=num_classes,
                                      queries=LearnedPositionEncoding(1, latent_dim),
                                      cross_attend=cross_attend)
        else:
            self.norm = nn.LayerNorm(latent_dim)
            self.final = nn.Linear(latent_dim, num_classes)

    def build_queries(self, batch: int, **kwargs) -> Tensor | None:
        return self.query.build_queries(batch, **kwargs) if self.pooling == "query" else None

    def forward(self, latents: Tensor, queries: Tensor | None = None, **kwargs) -> Tensor:
        if self.pooling == "query":
            return self.query(latents, queries, **kwargs)
        return self.final(self.norm(latents.mean(dim=1, keepdim=True)))


def grid_decoder(
    *,
    latent_dim: int,
    output_shape: Sequence[int],
    output_channels: int,
    query: str = "fourier",
    num_bands: int = 64,
    max_resolution: Sequence[float] | None = None,
    cross_attend: AttentionSpec | None = None,
) -> QueryDecoder:
    """A dense decoder: one query per cell of ``output_shape`` (Fourier features of the cell's
    coordinates, or a learned embedding per cell)."""
    output_shape = tuple(output_shape)
    if query == "fourier":
        queries = FourierPositionEncoding(num_axes=len(output_shape), num_bands=num_bands,
                                          max_resolution=max_resolution or output_shape)
    elif query == "learned":
        queries = LearnedPositionEncoding(math.prod(output_shape), latent_dim)
    else:
        raise ValueError(f"query must be 'fourier' or 'learned', got {query!r}")
    return QueryDecoder(latent_dim=latent_dim, output_channels=output_channels, queries=queries,
                        output_shape=output_shape, cross_attend=cross_attend)


__all__ = ["QueryDecoder", "ClassificationDecoder", "grid_decoder"]
