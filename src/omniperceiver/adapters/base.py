"""The input adapter interface: a raw modality tensor in, the Perceiver's input array out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from torch import Tensor, nn


@dataclass
class AdapterOutput:
    """What an input adapter hands to the encoder (and, through the model, to the decoder and
    the output adapter).

    ``inputs`` (batch, num_inputs, channels); ``mask`` (batch, num_inputs) bool, True = keep,
    or None; ``grid_shape`` the axes the inputs were flattened from (to map outputs back);
    ``modality_sizes`` the number of inputs of each modality, in order, for multimodal inputs;
    ``token_embedding`` the (vocab_size, channels) embedding of token inputs, for an output
    layer tied to it.
    """

    inputs: Tensor
    mask: Tensor | None = None
    grid_shape: tuple[int, ...] | None = None
    modality_sizes: dict[str, int] | None = field(default=None)
    token_embedding: Tensor | None = None


class InputAdapter(nn.Module, ABC):
    """Base class: ``num_channels`` is the channel count of the inputs it produces;
    ``forward(x, mask=None) -> AdapterOutput`` validates ``x`` and adds position features."""

    num_channels: int

    @abstractmethod
    def forward(self, x, mask: Tensor | None = None) -> AdapterOutput:
        """(batch, ...) modality tensor -> inputs (batch, num_inputs, num_channels) + mask."""
