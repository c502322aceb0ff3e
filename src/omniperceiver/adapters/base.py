"""The input adapter interface: a raw modality tensor in, the Perceiver's input array out."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor, nn


@dataclass
class AdapterOutput:
    """What an input adapter hands to the encoder (and, through the model, to the decoder).

    ``inputs`` (batch, num_inputs, channels); ``mask`` (batch, num_inputs) bool, True = keep,
    or None; ``grid_shape`` the axes the inputs were flattened from (to map outputs back);
    ``modality_sizes`` the number of inputs of each modality, in order, for multimodal inputs.
    """

    inputs: Tensor
    mask: Tensor | None = None
    grid_shape: tuple[int, ...] | None = None
    modality_sizes: dict[str, int] | None = field(default=None)


class InputAdapter(nn.Module):
    """Base class: ``num_channels`` is the channel count of the inputs it produces;
    ``forward(x, mask=None) -> AdapterOutput`` validates ``x`` and adds position features."""

    num_channels: int

    def forward(self, x, mask: Tensor | None = None) -> AdapterOutput:  # pragma: no cover
        raise TypeError(f"{type(self).__name__} must implement forward")
