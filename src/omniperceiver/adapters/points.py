"""Point clouds: Fourier features of each example's own coordinates, plus per-point features."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ..position import FourierPositionEncoding
from ..validation import check_float_tensor, check_layout, check_mask, shape_str
from .base import AdapterOutput, InputAdapter


def pad_sequences(sequences: Sequence[Tensor], *, name: str = "sequences"
                  ) -> tuple[Tensor, Tensor]:
    """Pads tensors (L_i, *rest) with zeros at the end to (batch, max L_i, *rest); returns them
    with the mask (batch, max L_i), True = a real element. For ragged point clouds, waveforms
    of different lengths (1D tensors), token sequences."""
    if isinstance(sequences, Tensor) or not sequences:
        raise TypeError(f"{name} must be a non-empty list of tensors, "
                        f"got {type(sequences).__name__}")
    for i, s in enumerate(sequences):
        if not isinstance(s, Tensor):
            raise TypeError(f"{name}[{i}] must be a torch.Tensor, got {type(s).__name__}")
        if s.ndim == 0 or s.shape[1:] != sequences[0].shape[1:] or s.dtype != sequences[0].dtype:
            raise ValueError(
                f"{name} must share everything but their length: {name}[0] is "
                f"{shape_str(sequences[0].shape)} {sequences[0].dtype}, {name}[{i}] is "
                f"{shape_str(s.shape)} {s.dtype}")
    lengths = torch.tensor([len(s) for s in sequences], device=sequences[0].device)
    padded = torch.nn.utils.rnn.pad_sequence(list(sequences), batch_first=True)
    mask = torch.arange(padded.shape[1], device=padded.device) < lengths[:, None]
    return padded, mask


def pad_point_clouds(clouds: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
    """Ragged point clouds [(N_i, D)] (D = 3 coordinates + features) -> points
    (batch, max N_i, D) zero-padded and mask (batch, max N_i), True = a real point."""
    for i, c in enumerate(clouds):
        if isinstance(c, Tensor) and (c.ndim != 2 or c.shape[-1] < 3):
            raise ValueError(f"point cloud {i} must be (num_points, 3 + num_features), "
                             f"got {shape_str(c.shape)}")
    return pad_sequences(clouds, name="point clouds")


class PointCloudAdapter(InputAdapter):
    """Point clouds (batch, N, 3 + num_features) -> (batch, N, num_features + position channels).

    The first 3 channels are the point's coordinates, the rest its features (e.g. unit normals:
    ``num_features=3``). Position features are 3D Fourier features of each example's own
    coordinates (:meth:`FourierPositionEncoding.points`): ``num_bands`` band frequencies from 1
    to ``max_resolution / 2`` (DeepMind's convention, as for grids; the Perceiver on ModelNet40:
    64 bands and the paper's "maximum frequency 1120", i.e. ``max_resolution=2240``; one number
    or one per axis), 3 * (2 * num_bands + 1) channels. Coordinates are expected in [-1, 1]:
    centre each cloud and scale it into the unit ball first
    (``omniperceiver.data.normalize_points``); larger values are accepted but their
    lowest-frequency features wrap around. ``mask`` (batch, N) marks real points of ragged
    clouds padded by :func:`pad_point_clouds`. The output is permutation-equivariant.
    """

    def __init__(self, *, num_features: int = 0, num_bands: int = 64,
                 max_resolution: float | Sequence[float] = 2240.0, check_finite: bool = True):
        super().__init__()
        self.num_features = num_features
        self.check_finite = check_finite
        self.position = FourierPositionEncoding(num_axes=3, num_bands=num_bands,
                                                max_resolution=max_resolution)
        self.num_channels = num_features + self.position.num_channels

    def forward(self, x: Tensor, mask: Tensor | None = None) -> AdapterOutput:
        check_float_tensor(x, name="points", check_finite=self.check_finite)
        check_layout(x, axes=1, channels=3 + self.num_features, name="points")
        batch, num_points, _ = x.shape
        mask = check_mask(mask, batch=batch, axes=(num_points,))
        coords, features = x.split([3, self.num_features], dim=-1)
        inputs = torch.cat([features, self.position.points(coords)], dim=-1)
        return AdapterOutput(inputs=inputs, mask=mask, grid_shape=(num_points,))


__all__ = ["PointCloudAdapter", "pad_point_clouds", "pad_sequences"]
