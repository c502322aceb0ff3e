"""Images: raw pixels, patches, or the Perceiver IO conv stem, with 2D position features."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..position import PositionEncoding, build_position_encoding
from ..validation import check_divisible
from .patches import Patches, StemAdapter

IMAGE_MODES = ("pixels", "patches", "conv")
PADDINGS = ("same", "transformers")


def image_pair(image_shape: int | Sequence[int]) -> tuple[int, int]:
    """``image_shape`` as (height, width): an int is a square image."""
    if isinstance(image_shape, int):
        return image_shape, image_shape
    shape = tuple(image_shape)
    if len(shape) != 2:
        raise ValueError(f"image_shape must be an int or (height, width), got {image_shape}")
    return int(shape[0]), int(shape[1])


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's SAME padding (before, after) of one axis: the output has
    ``ceil(size / stride)`` positions, any odd padding goes after."""
    total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class ConvStem(nn.Module):
    """Perceiver IO's ImageNet stem: Conv2d 7x7 stride 2 (no bias), BatchNorm, ReLU,
    MaxPool 3x3 stride 2. (batch, H, W, C) -> (batch, H', W', out_channels), channels-last.

    ``padding="same"`` pads the convolution and the max-pool as TensorFlow's SAME does
    (DeepMind's reference, what the published weights were trained with): 224 -> 112 -> 56,
    the convolution padded 2 before and 3 after. ``"transformers"`` reproduces transformers'
    ``PerceiverImagePreprocessor``: the convolution padded 3 on both sides and no pool
    padding, 224 -> 112 -> 55. Masks are not supported (a ValueError).
    """

    def __init__(self, in_channels: int, out_channels: int = 64, *, padding: str = "same"):
        super().__init__()
        if padding not in PADDINGS:
            raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")
        self.padding = padding
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=7, stride=2,
                              padding=3 if padding == "transformers" else 0, bias=False)
        self.norm = nn.BatchNorm2d(out_channels)

    def out_channels(self, in_channels: int) -> int:
        return self.conv.out_channels

    def out_shape(self, axes: Sequence[int]) -> tuple[int, ...]:
        after_conv = [(n - 1) // 2 + 1 for n in axes]
        if self.padding == "same":
            return tuple(-(-n // 2) for n in after_conv)
        return tuple((n - 3) // 2 + 1 for n in after_conv)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> tuple[Tensor, None]:
        if mask is not None:
            raise ValueError("masks are not supported with the conv stem (mode='conv'); "
                             "use mode='pixels' or mode='patches' for masked images")
        x = x.movedim(-1, 1)  # (batch, C, H, W)
        if self.padding == "same":
            (top, bottom), (left, right) = (same_padding(n, 7, 2) for n in x.shape[-2:])
            x = F.pad(x, (left, right, top, bottom))
        h = torch.relu(self.norm(self.conv(x)))  # (batch, C', H/2, W/2)
        if self.padding == "same":
            (top, bottom), (left, right) = (same_padding(n, 3, 2) for n in h.shape[-2:])
            h = F.pad(h, (left, right, top, bottom), value=-math.inf)
        return F.max_pool2d(h, kernel_size=3, stride=2).movedim(1, -1), None


class ImageAdapter(StemAdapter):
    """Images (batch, H, W, C) channels-last (``channels_last=False``: (batch, C, H, W)) ->
    (batch, M, channels + position channels).

    ``mode``:

    * ``"pixels"``: every pixel an input, M = H * W, ``C`` channels (the Perceiver on ImageNet);
    * ``"patches"``: ``patch_size`` x ``patch_size`` patches (space-to-depth),
      M = (H / p) * (W / p) inputs of p * p * C channels; H and W must be divisible by p;
    * ``"conv"``: the Perceiver IO conv stem (:class:`ConvStem`), 224 x 224 -> 56 x 56 inputs of
      ``conv_channels`` (64) channels; ``padding="transformers"`` gives transformers' 55 x 55.

    ``image_shape`` is (height, width), or an int for a square image. Position features are
    computed on the grid the inputs come from (pixels, patch grid or conv grid):
    ``position="fourier"`` (``num_bands`` bands, ``max_resolution`` defaulting to that grid's
    size for ``image_shape``), ``"learned"`` (``position_channels`` per input, needs images of
    exactly ``image_shape``) or None. ``project_channels`` adds a linear
    projection (a 1x1 convolution) before the position features are concatenated.
    """

    def __init__(
        self,
        *,
        image_shape: int | Sequence[int],
        input_channels: int = 3,
        mode: str = "pixels",
        patch_size: int | None = None,
        position: str | PositionEncoding | None = "fourier",
        num_bands: int = 64,
        max_resolution: Sequence[float] | None = None,
        position_channels: int = 256,
        project_channels: int | None = None,
        conv_channels: int = 64,
        padding: str = "same",
        channels_last: bool = True,
        check_finite: bool = True,
    ):
        if mode not in IMAGE_MODES:
            raise ValueError(f"mode must be one of {IMAGE_MODES}, got {mode!r}")
        image_shape = image_pair(image_shape)
        if mode == "conv":
            stem = ConvStem(input_channels, conv_channels, padding=padding)
        elif mode == "patches":
            if patch_size is None:
                raise ValueError("mode='patches' needs patch_size")
            check_divisible(image_shape, (patch_size, patch_size), axis_names=("height", "width"),
                            name="image_shape")
            stem = Patches((patch_size, patch_size), axis_names=("height", "width"))
        else:
            stem = Patches((1, 1))
        self.mode = mode
        self.image_shape = image_shape
        super().__init__(
            input_channels=input_channels, input_axis=2, stem=stem,
            position=build_position_encoding(position, grid_shape=stem.out_shape(image_shape),
                                             num_bands=num_bands,
                                             max_resolution=max_resolution,
                                             num_channels=position_channels),
            project_channels=project_channels, channels_last=channels_last,
            check_finite=check_finite)


__all__ = ["ImageAdapter", "ConvStem", "image_pair", "same_padding", "IMAGE_MODES"]
