"""Grid inputs (images, video, audio frames, any (batch, *axes, channels) array)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from ..chunks import InputChunks
from ..position import FourierPositionEncoding, LearnedPositionEncoding, fourier_features
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

    def _flatten(self, x: Tensor, mask: Tensor | None):
        """Validate; return the values (batch, prod(axes), channels), the flat mask, the axes."""
        check_float_tensor(x, check_finite=self.check_finite)
        check_layout(x, axes=self.input_axis, channels=self.input_channels,
                     channels_last=self.channels_last)
        if not self.channels_last:
            x = x.movedim(1, -1)
        batch, *axes, channels = x.shape
        mask = check_mask(mask, batch=batch, axes=axes)
        return x.reshape(batch, math.prod(axes), channels), mask, axes

    def forward(self, x: Tensor, mask: Tensor | None = None) -> AdapterOutput:
        inputs, mask, axes = self._flatten(x, mask)
        batch = inputs.shape[0]
        if self.position is not None:
            pos = self.position.grid(axes, device=x.device, dtype=x.dtype)
            inputs = torch.cat([inputs, pos.expand(batch, -1, -1)], dim=-1)
        return AdapterOutput(inputs=inputs, mask=mask, grid_shape=tuple(axes))

    def input_chunks(self, x: Tensor, mask: Tensor | None = None, *,
                     chunk_size: int) -> AdapterOutput:
        """Like :meth:`forward`, but ``inputs`` is :class:`InputChunks`: the flattened grid
        with its position features, built ``chunk_size`` cells at a time when the encoder
        needs them, for grids too large to hold with their position features (a 4096 x 4096
        image with 2D Fourier features would take 17.5 GB)."""
        values, mask, axes = self._flatten(x, mask)
        batch = values.shape[0]

        def build(start: int, stop: int) -> Tensor:
            chunk = values[:, start:stop]
            if self.position is None:
                return chunk
            pos = _position_chunk(self.position, axes, start, stop, device=x.device,
                                  dtype=x.dtype)
            return torch.cat([chunk, pos.expand(batch, -1, -1)], dim=-1)

        chunks = InputChunks(build, batch_size=batch, num_inputs=values.shape[1],
                             chunk_size=chunk_size)
        return AdapterOutput(inputs=chunks, mask=mask, grid_shape=tuple(axes))


def _position_chunk(position: FourierPositionEncoding | LearnedPositionEncoding,
                    shape: Sequence[int], start: int, stop: int, *, device,
                    dtype: torch.dtype) -> Tensor:
    """The position features of the grid cells ``start:stop`` (row-major order),
    (stop - start, channels): the rows of ``position.grid(shape)``, computed alone."""
    if isinstance(position, LearnedPositionEncoding):
        return position.grid(shape, device=device, dtype=dtype)[start:stop]
    index = torch.arange(start, stop, device=device)
    coords = []
    for n in reversed(shape):  # unravel the flat index, last axis first
        coords.append(torch.linspace(-1.0, 1.0, n, device=device, dtype=torch.float64)[index % n])
        index = index // n
    pos = torch.stack(coords[::-1], dim=-1)  # as grid_positions(shape)[start:stop]
    return fourier_features(pos, **position.options).to(dtype)
