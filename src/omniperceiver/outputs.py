"""Output adapters: the decoder's (batch, num_outputs, channels) to what the task needs."""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor, nn

from .adapters.base import AdapterOutput


class ClassificationOutput(nn.Module):
    """(batch, 1, num_classes) -> logits (batch, num_classes)."""

    def forward(self, outputs: Tensor, adapted: AdapterOutput | None = None) -> Tensor:
        return outputs[:, 0]


class GridOutput(nn.Module):
    """(batch, prod(shape), channels) -> (batch, *shape, channels); subsampled outputs
    (fewer than prod(shape)) are returned as they are."""

    def __init__(self, shape: Sequence[int]):
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, outputs: Tensor, adapted: AdapterOutput | None = None) -> Tensor:
        if outputs.shape[1] != math.prod(self.shape):
            return outputs
        return outputs.reshape(outputs.shape[0], *self.shape, outputs.shape[-1])


class SequenceOutput(nn.Module):
    """Returns the decoder outputs (batch, num_outputs, channels) unchanged."""

    def forward(self, outputs: Tensor, adapted: AdapterOutput | None = None) -> Tensor:
        return outputs


__all__ = ["ClassificationOutput", "GridOutput", "SequenceOutput"]
