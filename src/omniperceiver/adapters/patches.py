"""Stems for grid-shaped modalities, and the adapter that runs them.

A *stem* turns a (batch, *axes, channels) tensor into a coarser grid of feature vectors:
non-overlapping patches (:class:`Patches`, space-to-depth), the Perceiver IO conv stem
(:class:`~omniperceiver.adapters.image.ConvStem`) or log-mel frames
(:class:`~omniperceiver.adapters.audio.LogMelSpectrogram`). Its interface is
``forward(x, mask) -> (x, mask)`` with ``mask`` (batch, *axes) bool or None,
``out_channels(in_channels)`` and ``out_shape(axes)``.

:class:`StemAdapter` validates the raw input, runs the stem, optionally projects the channels
(a 1x1 convolution, i.e. a linear layer on channels-last data) and hands the result to a
:class:`~omniperceiver.adapters.grid.GridAdapter`, which adds position features of the stem's
grid and flattens. Image, video and audio adapters are stem adapters with a given stem.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor, nn

from ..position import PositionEncoding
from ..validation import check_divisible, check_grid_input
from .base import AdapterOutput, InputAdapter
from .grid import GridAdapter


def space_to_depth(x: Tensor, patch_shape: Sequence[int]) -> Tensor:
    """Non-overlapping patches: (batch, *axes, channels) ->
    (batch, *(axes // patch_shape), prod(patch_shape) * channels).

    Within a patch the values are ordered (offset along the first axis, ..., offset along the
    last axis, channel), as in Perceiver IO. Every axis must be divisible by its patch size.
    """
    batch, *axes, channels = x.shape
    grid = [a // p for a, p in zip(axes, patch_shape, strict=True)]
    d = len(patch_shape)
    # (batch, g_0, p_0, ..., g_{d-1}, p_{d-1}, channels) -> (batch, g_0.., p_0.., channels)
    split = [n for g, p in zip(grid, patch_shape, strict=True) for n in (g, p)]
    x = x.reshape(batch, *split, channels)
    order = [0, *range(1, 2 * d, 2), *range(2, 2 * d + 1, 2), 2 * d + 1]
    return x.permute(order).reshape(batch, *grid, math.prod(patch_shape) * channels)


class Patches(nn.Module):
    """Stem: non-overlapping patches of ``patch_shape`` (space-to-depth).

    (batch, *axes, C) -> (batch, *(axes / patch_shape), prod(patch_shape) * C). A patch is kept
    when any of its elements is (mask pooled with "any"); masked-out elements are zeroed first,
    so padding values never reach a kept patch. ``pad=False``: every axis must be divisible by
    its patch size (ValueError otherwise); ``pad=True``: the end of each axis is padded with
    zeros (and masked out) up to a multiple. A patch shape of all ones gives the raw elements.
    """

    def __init__(self, patch_shape: Sequence[int], *, pad: bool = False,
                 axis_names: Sequence[str] | None = None):
        super().__init__()
        self.patch_shape = tuple(int(p) for p in patch_shape)
        if any(p < 1 for p in self.patch_shape):
            raise ValueError(f"patch sizes must be positive, got {self.patch_shape}")
        self.pad = pad
        self.axis_names = tuple(axis_names or (f"axis {i}" for i in range(len(patch_shape))))

    def out_channels(self, in_channels: int) -> int:
        return math.prod(self.patch_shape) * in_channels

    def out_shape(self, axes: Sequence[int]) -> tuple[int, ...]:
        return tuple(-(-a // p) if self.pad else a // p
                     for a, p in zip(axes, self.patch_shape, strict=True))

    def forward(self, x: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        axes = x.shape[1:-1]
        if all(p == 1 for p in self.patch_shape):
            return x, mask
        if mask is not None:
            x = x.masked_fill(~mask[..., None], 0)
        if self.pad:
            extra = [-a % p for a, p in zip(axes, self.patch_shape, strict=True)]
            if any(extra):
                # F.pad lists (before, after) pairs from the last axis backwards; channels first.
                widths = [0, 0] + [w for e in reversed(extra) for w in (0, e)]
                x = nn.functional.pad(x, widths)
                if mask is not None:
                    mask = nn.functional.pad(mask, widths[2:], value=False)
        else:
            check_divisible(axes, self.patch_shape, axis_names=self.axis_names)
        x = space_to_depth(x, self.patch_shape)
        if mask is not None:
            mask = space_to_depth(mask[..., None], self.patch_shape).any(dim=-1)
        return x, mask

    def extra_repr(self) -> str:
        return f"patch_shape={self.patch_shape}, pad={self.pad}"


class StemAdapter(InputAdapter):
    """(batch, *axes, input_channels) -> stem -> [linear projection] -> position features ->
    (batch, prod(stem grid), channels + position channels).

    ``stem`` is a module with ``forward(x, mask) -> (x, mask)`` and ``out_channels``
    (:class:`Patches`, a conv stem, a spectrogram). ``position`` is an encoding of the stem's
    grid (or None). ``project_channels`` adds a linear projection of the stem's channels (a
    1x1 convolution). ``channels_last=False`` accepts (batch, input_channels, *axes). The mask
    is (batch, *axes) or (batch, prod(axes)), True = keep; the stem maps it to its grid.
    """

    def __init__(
        self,
        *,
        input_channels: int,
        input_axis: int,
        stem: nn.Module,
        position: PositionEncoding | None,
        project_channels: int | None = None,
        channels_last: bool = True,
        check_finite: bool = True,
    ):
        super().__init__()
        self.input_channels = input_channels
        self.input_axis = input_axis
        self.channels_last = channels_last
        self.check_finite = check_finite
        self.stem = stem
        stem_channels = stem.out_channels(input_channels)
        self.project = nn.Linear(stem_channels, project_channels) if project_channels else None
        self.grid = GridAdapter(input_channels=project_channels or stem_channels,
                                input_axis=input_axis, position=position, check_finite=False)
        self.num_channels = self.grid.num_channels

    @property
    def position(self) -> PositionEncoding | None:
        return self.grid.position

    def forward(self, x: Tensor, mask: Tensor | None = None) -> AdapterOutput:
        x, mask = check_grid_input(x, mask, axes=self.input_axis, channels=self.input_channels,
                                   channels_last=self.channels_last,
                                   check_finite=self.check_finite)
        if mask is not None:
            mask = mask.reshape(x.shape[:-1])  # (batch, *axes)
        x, mask = self.stem(x, mask)  # (batch, *grid, stem channels), (batch, *grid)
        if self.project is not None:
            x = self.project(x)
        return self.grid(x, mask)


__all__ = ["space_to_depth", "Patches", "StemAdapter"]
