"""Output adapters: the decoder's (batch, num_outputs, channels) to what the task needs."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..adapters.base import AdapterOutput
from .base import OutputAdapter


class ClassificationOutput(OutputAdapter):
    """(batch, 1, num_classes) -> logits (batch, num_classes)."""

    def forward(self, outputs: Tensor, adapted: AdapterOutput | None = None) -> Tensor:
        return outputs[:, 0]


class GridOutput(OutputAdapter):
    """(batch, prod(shape), channels) -> (batch, *shape, channels); subsampled outputs
    (fewer than prod(shape)) are returned as they are."""

    def __init__(self, shape: Sequence[int]):
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, outputs: Tensor, adapted: AdapterOutput | None = None) -> Tensor:
        if outputs.shape[1] != math.prod(self.shape):
            return outputs
        return outputs.reshape(outputs.shape[0], *self.shape, outputs.shape[-1])


class SequenceOutput(OutputAdapter):
    """Returns the decoder outputs (batch, num_outputs, channels) unchanged."""

    def forward(self, outputs: Tensor, adapted: AdapterOutput | None = None) -> Tensor:
        return outputs


class FlowOutput(OutputAdapter):
    """(batch, H * W, 2) -> flow (batch, H, W, 2) on the input grid: divided by
    ``rescale_factor`` (the decoder's training scale), then multiplied by ``flow_scale`` (the
    unit of the result; 20 turns the published models' output into pixels)."""

    def __init__(self, rescale_factor: float = 100.0, flow_scale: float = 1.0):
        super().__init__()
        self.rescale_factor = rescale_factor
        self.flow_scale = flow_scale

    def forward(self, outputs: Tensor, adapted: AdapterOutput | None = None) -> Tensor:
        if adapted is None or adapted.grid_shape is None:
            raise ValueError("flow outputs are laid out on the input grid: pass the input "
                             "adapter's output")
        return (outputs / self.rescale_factor * self.flow_scale).reshape(
            outputs.shape[0], *adapted.grid_shape, outputs.shape[-1])


class EmbeddingLogits(OutputAdapter):
    """Decoder outputs (batch, length, channels) -> logits (batch, length, vocab_size) with the
    input token embedding (vocab_size, channels) transposed, plus a bias: an output layer tied
    to the input embedding, which the text adapter hands over as ``adapted.token_embedding``."""

    def __init__(self, vocab_size: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(vocab_size))

    def forward(self, outputs: Tensor, adapted: AdapterOutput | None = None) -> Tensor:
        if adapted is None or adapted.token_embedding is None:
            raise ValueError("tied logits need the input adapter's token embedding "
                             "(adapted.token_embedding)")
        return outputs @ adapted.token_embedding.t() + self.bias


__all__ = ["ClassificationOutput", "GridOutput", "SequenceOutput", "FlowOutput",
           "EmbeddingLogits"]
