"""Multimodal decoding (Perceiver IO's video + audio + label autoencoding): per-modality
queries decoded together, then split back into one output per modality."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..adapters.base import AdapterOutput
from ..adapters.multimodal import split_modalities
from ..attention import AttentionLayer, AttentionSpec
from ..position import LearnedPositionEncoding, PositionEncoding
from ..validation import check_indices, check_keys, check_queries
from .base import Decoder, OutputAdapter


def subsampled_positions(indices: Tensor, shape: Sequence[int]) -> Tensor:
    """Flat indices (n,) into a grid of ``shape`` -> coordinates (n, len(shape)) in [-1, 1),
    ``-1 + 2 * index / size`` per axis (DeepMind's subsampled decoder queries)."""
    coords = torch.stack(torch.unravel_index(indices, tuple(shape)), dim=-1)
    return -1 + 2 * coords.double() / torch.tensor(shape, dtype=torch.float64,
                                                    device=indices.device)


class MultimodalDecoder(Decoder):
    """Queries of every modality, padded to one width with a learned vector per modality and
    concatenated in sorted name order, cross-attend to the latents together; a linear layer
    maps them to ``output_channels``; the outputs come back split per modality,
    {name: (batch, num_outputs of name, output_channels)}.

    ``queries[name]`` is a :class:`~omniperceiver.position.FourierPositionEncoding` of the
    modality's output grid ``output_shapes[name]`` or a
    :class:`~omniperceiver.position.LearnedPositionEncoding`. ``subsample`` {name: flat indices}
    decodes only those outputs (Fourier features of ``-1 + 2 * index / size``, as DeepMind's
    chunked decoding; without it the whole grid, ``linspace(-1, 1)``).
    """

    def __init__(self, *, latent_dim: int, queries: dict[str, PositionEncoding],
                 output_shapes: dict[str, tuple[int, ...]], output_channels: int,
                 cross_attend: AttentionSpec, min_padding_size: int = 2):
        super().__init__()
        names = sorted(queries)
        self.queries = nn.ModuleDict({name: queries[name] for name in names})
        self.output_shapes = {name: tuple(output_shapes[name]) for name in names}
        self.query_channels = max(q.num_channels for q in queries.values()) + min_padding_size
        self.padding = nn.ParameterDict({
            name: nn.Parameter(torch.zeros(self.query_channels - queries[name].num_channels))
            for name in names})
        for vector in self.padding.values():
            nn.init.trunc_normal_(vector, std=0.02, a=-0.04, b=0.04)
        self.cross_attend = AttentionLayer(self.query_channels, latent_dim, cross_attend)
        self.final = nn.Linear(self.query_channels, output_channels)
        self.output_channels = output_channels

    def query_counts(self, subsample: dict[str, Tensor | None] | None = None) -> dict[str, int]:
        """The number of outputs of each modality, in decoding order."""
        counts = {}
        for name, encoding in self.queries.items():
            indices = (subsample or {}).get(name)
            full = math.prod(self.output_shapes[name])
            learned = isinstance(encoding, LearnedPositionEncoding)
            counts[name] = full if indices is None or learned else len(indices)
        return counts

    def decoder_query(self, latents: Tensor, adapted: AdapterOutput | None = None, *,
                      subsample: dict[str, Tensor | None] | None = None) -> Tensor:
        device, dtype = latents.device, latents.dtype
        if subsample is not None:
            check_keys(subsample, list(self.queries), name="subsample", required=False)
        parts = []
        for name, encoding in self.queries.items():
            shape, indices = self.output_shapes[name], (subsample or {}).get(name)
            if indices is not None:
                check_indices(indices, size=math.prod(shape), name=f"subsample[{name!r}]")
            if isinstance(encoding, LearnedPositionEncoding):
                q = encoding.grid(shape, dtype=dtype)
            elif indices is None:
                q = encoding.grid(shape, device=device, dtype=dtype)
            else:
                q = encoding.points(subsampled_positions(indices.to(device), shape)).to(dtype)
            pad = self.padding[name].to(dtype).expand(q.shape[0], -1)
            parts.append(torch.cat([q, pad], dim=-1))
        # (batch, sum of counts, query_channels)
        return torch.cat(parts).expand(latents.shape[0], -1, -1)

    def forward(self, latents: Tensor, queries: Tensor | None = None, *,
                adapted: AdapterOutput | None = None,
                subsample: dict[str, Tensor | None] | None = None) -> dict[str, Tensor]:
        if queries is None:
            queries = self.decoder_query(latents, adapted, subsample=subsample)
        else:
            check_queries(queries, batch=latents.shape[0], channels=self.query_channels)
        outputs = self.final(self.cross_attend(queries, latents))
        return split_modalities(outputs, self.query_counts(subsample))


class MultimodalOutput(OutputAdapter):
    """{name: decoder outputs (batch, n, channels)} -> {name: output}: a linear head per
    modality; ``audio`` (batch, samples), ``image`` (batch, n, 3) or, decoded whole,
    (batch, T, H, W, 3), ``label`` logits (batch, num_classes)."""

    def __init__(self, heads: dict[str, nn.Module], image_shape: Sequence[int]):
        super().__init__()
        self.heads = nn.ModuleDict(heads)
        self.image_shape = tuple(image_shape)

    def forward(self, outputs: dict[str, Tensor], adapted: AdapterOutput | None = None
                ) -> dict[str, Tensor]:
        result = {}
        for name, part in outputs.items():
            out = self.heads[name](part)
            if name == "audio":
                out = out.reshape(out.shape[0], -1)
            elif name == "label":
                out = out[:, 0]
            elif part.shape[1] == math.prod(self.image_shape):
                out = out.reshape(out.shape[0], *self.image_shape, out.shape[-1])
            result[name] = out
        return result


__all__ = ["MultimodalDecoder", "MultimodalOutput", "subsampled_positions"]
