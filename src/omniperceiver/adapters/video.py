"""Video: space-time patches with 3D position features of the patch grid."""

from __future__ import annotations

from collections.abc import Sequence

from ..position import PositionEncoding, build_position_encoding
from ..validation import check_divisible
from .patches import Patches, StemAdapter

_AXES = ("frames", "height", "width")


class VideoAdapter(StemAdapter):
    """Video (batch, T, H, W, C) channels-last (``channels_last=False``: (batch, C, T, H, W))
    -> (batch, (T/pt) * (H/ph) * (W/pw), pt * ph * pw * C + position channels).

    ``patch_shape`` (pt, ph, pw) are the space-time patches (the Perceiver's AudioSet video:
    2 x 8 x 8; (1, 1, 1) gives one input per pixel of every frame); T, H and W must be
    divisible by them. ``video_shape`` (T, H, W) sets the Fourier features' ``max_resolution``
    (default: the patch grid of ``video_shape``) and the size of learned positions.
    ``position``, ``num_bands``, ``position_channels`` and ``project_channels`` as in
    :class:`~omniperceiver.adapters.image.ImageAdapter`. Masks are (batch, T, H, W) (a patch is
    kept if any of its pixels is).
    """

    def __init__(
        self,
        *,
        video_shape: Sequence[int],
        input_channels: int = 3,
        patch_shape: Sequence[int] = (2, 8, 8),
        position: str | PositionEncoding | None = "fourier",
        num_bands: int = 64,
        max_resolution: Sequence[float] | None = None,
        position_channels: int = 256,
        project_channels: int | None = None,
        channels_last: bool = True,
        check_finite: bool = True,
    ):
        video_shape, patch_shape = tuple(video_shape), tuple(patch_shape)
        if len(video_shape) != 3 or len(patch_shape) != 3:
            raise ValueError(f"video_shape and patch_shape must be (frames, height, width), got "
                             f"{video_shape} and {patch_shape}")
        check_divisible(video_shape, patch_shape, axis_names=_AXES, name="video_shape")
        stem = Patches(patch_shape, axis_names=_AXES)
        self.video_shape = video_shape
        super().__init__(
            input_channels=input_channels, input_axis=3, stem=stem,
            position=build_position_encoding(position, grid_shape=stem.out_shape(video_shape),
                                             num_bands=num_bands,
                                             max_resolution=max_resolution,
                                             num_channels=position_channels),
            project_channels=project_channels, channels_last=channels_last,
            check_finite=check_finite)


__all__ = ["VideoAdapter"]
