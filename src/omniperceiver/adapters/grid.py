"""Grid inputs (images, video, audio frames, any (batch, *axes, channels) array)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from ..position import FourierPositionEncoding, LearnedPositionEncoding
from ..validation import check_float_tensor, check_layout, check_mask
from .base import AdapterOutput, InputAdapter


class GridAdapter(InputAdapter):
    """(batch, *axes, channels) -> (batch, prod(axes), channels + position channels).

    ``position`` is a :class:`FourierPositionEncoding` (features of the grid coordinates,
    computed once per shape and reused), a :class:`LearnedPositionEncoding`, or None.
    ``channels_last=False`` accepts (batch, channels, *axes). The mask may be
    (batch, prod(axes)) or (batch, *axes).
    """

    def __init__(
        self,
        *,
        input_channels: int,
        input_axis: int,
        position: FourierPositionEncoding | LearnedPositionEncoding | None = None,
        channels_last: bool = True,
        check_finite: bool = True,
    ):
        super().__init__()
        self.input_channels = input_channels
        self.input_axis = input_axis
        self.position = position
        self.channels_last = channels_last
        self.check_finite = check_finite
        self.num_channels = input_channels + (position.num_channels if position is not None else 0)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> AdapterOutput:
        check_float_tensor(x, check_finite=self.check_finite)
        check_layout(x, axes=self.input_axis, channels=self.input_channels,
                     channels_last=self.channels_last)
        if not self.channels_last:
            x = x.movedim(1, -1)
        batch, *axes, channels = x.shape
        mask = check_mask(mask, batch=batch, axes=axes)
        inputs = x.reshape(batch, math.prod(axes), channels)
        if self.position is not None:
            pos = self.position.grid(axes, device=x.device, dtype=x.dtype)
            inputs = torch.cat([inputs, pos.expand(batch, -1, -1)], dim=-1)
        return AdapterOutput(inputs=inputs, mask=mask, grid_shape=tuple(axes))


def fourier_grid_adapter(
    *,
    input_channels: int,
    input_axis: int,
    num_bands: int,
    max_resolution: float | Sequence[float],
    layout: str = "deepmind",
    concat_pos: bool = True,
    sine_only: bool = False,
    **kwargs,
) -> GridAdapter:
    """A :class:`GridAdapter` with Fourier position features."""
    position = FourierPositionEncoding(num_axes=input_axis, num_bands=num_bands,
                                       max_resolution=max_resolution, layout=layout,
                                       concat_pos=concat_pos, sine_only=sine_only)
    return GridAdapter(input_channels=input_channels, input_axis=input_axis,
                       position=position, **kwargs)

