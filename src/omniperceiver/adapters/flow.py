"""Optical flow inputs: pairs of frames, each pixel with its 3x3 neighbourhood."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..position import FourierPositionEncoding
from ..validation import check_float_tensor, check_layout
from .base import AdapterOutput, InputAdapter
from .grid import GridAdapter


class FlowAdapter(InputAdapter):
    """Pairs of frames (batch, 2, H, W, C) -> (batch, H * W, project_channels + position
    channels).

    ``C`` is the per-pixel feature of one frame (27 for the published model: the 3x3
    neighbourhood of RGB, see :func:`flow_patches`). The two frames' features of a pixel are
    stacked (first frame first), projected by a linear layer, and 2D Fourier features of the
    pixel grid (``max_resolution`` the training size) are concatenated.
    """

    def __init__(self, *, image_shape: Sequence[int], input_channels: int = 27,
                 num_frames: int = 2, project_channels: int = 64, num_bands: int = 64,
                 max_resolution: Sequence[float] | None = None):
        super().__init__()
        self.image_shape = tuple(image_shape)
        self.input_channels = input_channels
        self.num_frames = num_frames
        self.project = nn.Linear(num_frames * input_channels, project_channels)
        position = FourierPositionEncoding(num_axes=2, num_bands=num_bands,
                                           max_resolution=tuple(max_resolution or image_shape))
        self.grid = GridAdapter(input_channels=project_channels, input_axis=2, position=position,
                                check_finite=False)
        self.num_channels = self.grid.num_channels

    def forward(self, x: Tensor, mask: Tensor | None = None) -> AdapterOutput:
        check_float_tensor(x)
        check_layout(x, axes=3, channels=self.input_channels)
        if x.shape[1] != self.num_frames:
            raise ValueError(f"expected {self.num_frames} frames (batch, {self.num_frames}, H, W, "
                             f"{self.input_channels}), got shape {tuple(x.shape)}")
        if mask is not None:
            raise ValueError("masks are not supported for optical flow inputs")
        b, t, h, w, c = x.shape
        x = x.movedim(1, 3).reshape(b, h, w, t * c)  # (batch, H, W, frames * C)
        return self.grid(self.project(x))


def flow_patches(frames: Tensor) -> Tensor:
    """(batch, 2, H, W, C) frames -> (batch, 2, H, W, 9 * C): each pixel's zero-padded 3x3
    neighbourhood, ordered (row offset, column offset, channel), the published model's input."""
    b, t, h, w, c = frames.shape
    x = torch.nn.functional.pad(frames, (0, 0, 1, 1, 1, 1))  # pad H and W by one
    rows = [x[:, :, i:i + h, j:j + w] for i in range(3) for j in range(3)]
    return torch.cat(rows, dim=-1)


__all__ = ["FlowAdapter", "flow_patches"]
