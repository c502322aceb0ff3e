"""Query decoders: output queries cross-attend to the latents, a linear layer maps them to the
output channels. They differ only in where the queries come from (:meth:`decoder_query`).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from ..adapters.base import AdapterOutput
from ..attention import AttentionLayer, AttentionSpec
from ..position import (
    FourierPositionEncoding,
    LearnedPositionEncoding,
    build_position_encoding,
)
from ..validation import check_indices, check_queries
from .base import Decoder


class QueryDecoder(Decoder):
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

    def decoder_query(self, latents: Tensor, adapted: AdapterOutput | None = None, *,
                      subsample: Tensor | None = None) -> Tensor | None:
        if self.queries is None:
            return None
        q = self.queries.grid(self.output_shape, device=latents.device, dtype=latents.dtype)
        if subsample is not None:
            q = q[check_indices(subsample, size=q.shape[0])]
        return q.expand(latents.shape[0], -1, -1)

    def forward(self, latents: Tensor, queries: Tensor | None = None, *,
                adapted: AdapterOutput | None = None, subsample: Tensor | None = None) -> Tensor:
        batch = latents.shape[0]
        if queries is None:
            queries = self.decoder_query(latents, adapted, subsample=subsample)
            if queries is None:
                raise ValueError(
                    f"this decoder has no queries of its own: pass queries of shape "
                    f"(batch, num_outputs, {self.query_channels})")
        else:
            check_queries(queries, batch=batch, channels=self.query_channels)
        return self.final(self.cross_attend(queries, latents))


class InputQueryDecoder(QueryDecoder):
    """The encoder's inputs (batch, num_inputs, query_channels), position features included,
    are the queries: one output per input (DeepMind's optical-flow decoder). ``subsample``
    (flat input indices) decodes only those inputs."""

    def __init__(self, *, latent_dim: int, output_channels: int, query_channels: int,
                 cross_attend: AttentionSpec | None = None):
        super().__init__(latent_dim=latent_dim, output_channels=output_channels,
                         query_channels=query_channels, cross_attend=cross_attend)

    def decoder_query(self, latents: Tensor, adapted: AdapterOutput | None = None, *,
                      subsample: Tensor | None = None) -> Tensor:
        if adapted is None:
            raise ValueError("this decoder's queries are the encoder inputs: pass the input "
                             "adapter's output as adapted=")
        if subsample is None:
            return adapted.inputs
        return adapted.inputs[:, check_indices(subsample, size=adapted.inputs.shape[1])]


class TokenQueryDecoder(QueryDecoder):
    """One learned query per input position (masked language modelling): the first
    ``num_inputs`` of ``queries``' ``max_length`` positions, so outputs line up with the input
    tokens; ``subsample`` (positions) picks others."""

    def __init__(self, *, latent_dim: int, output_channels: int,
                 queries: LearnedPositionEncoding, cross_attend: AttentionSpec | None = None,
                 final_project: bool = True):
        super().__init__(latent_dim=latent_dim, output_channels=output_channels,
                         queries=queries, cross_attend=cross_attend,
                         final_project=final_project)

    def decoder_query(self, latents: Tensor, adapted: AdapterOutput | None = None, *,
                      subsample: Tensor | None = None) -> Tensor:
        queries = super().decoder_query(latents, adapted, subsample=subsample)
        if subsample is None and adapted is not None:  # the first num_inputs positions
            num_inputs, max_length = adapted.inputs.shape[1], self.output_shape[0]
            if num_inputs > max_length:
                raise ValueError(f"{num_inputs} input positions, but this decoder has queries "
                                 f"for at most max_length={max_length}")
            queries = queries[:, :num_inputs]
        return queries


class ClassificationDecoder(Decoder):
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

    @property
    def head(self) -> nn.Linear:
        """The last layer, features -> class logits: what fine-tuning on other classes
        replaces."""
        return self.query.final if self.pooling == "query" else self.final

    def decoder_query(self, latents: Tensor, adapted: AdapterOutput | None = None, *,
                      subsample: Tensor | None = None) -> Tensor | None:
        if self.pooling == "query":
            return self.query.decoder_query(latents, adapted, subsample=subsample)
        return None

    def forward(self, latents: Tensor, queries: Tensor | None = None, *,
                adapted: AdapterOutput | None = None, subsample: Tensor | None = None) -> Tensor:
        if self.pooling == "query":
            return self.query(latents, queries, adapted=adapted, subsample=subsample)
        if queries is not None or subsample is not None:
            raise ValueError("this classifier averages the latents (pooling='mean'): it takes "
                             "no queries or subsample, got "
                             + " and ".join(name for name, value in (("queries", queries),
                                            ("subsample", subsample)) if value is not None))
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
    if query not in ("fourier", "learned"):
        raise ValueError(f"query must be 'fourier' or 'learned', got {query!r}")
    queries = build_position_encoding(query, grid_shape=output_shape, num_bands=num_bands,
                                      max_resolution=max_resolution, num_channels=latent_dim)
    return QueryDecoder(latent_dim=latent_dim, output_channels=output_channels, queries=queries,
                        output_shape=output_shape, cross_attend=cross_attend)


__all__ = ["QueryDecoder", "InputQueryDecoder", "TokenQueryDecoder", "ClassificationDecoder",
           "grid_decoder"]
