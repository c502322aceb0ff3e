"""Position features: Fourier features (DeepMind's definition and perceiver-pytorch's variant)
and learned position embeddings; and rotary position embeddings, which turn queries and keys
instead of adding features (:class:`RotaryPositions`, Perceiver AR's).

DeepMind (Perceiver / Perceiver IO): positions ``linspace(-1, 1, n_d)`` per axis, frequencies
``linspace(1, max_resolution_d / 2, K)``, features ``[pos_1..pos_D, sin(pi f pos) for every
axis and band, cos(...) likewise]``: ``D * (2K + 1)`` channels.
perceiver-pytorch uses one ``max_freq`` for every axis and orders each axis as
``[sin x K, cos x K, pos]``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence

import torch
from torch import Tensor, nn

LAYOUTS = ("deepmind", "lucidrains")


class PositionEncoding(nn.Module, ABC):
    """The interface of every position encoding: ``num_channels`` features per position, and
    ``grid(shape, *, device, dtype)`` the features of every cell of a grid of ``shape``,
    row-major: (prod(shape), num_channels)."""

    num_channels: int

    @abstractmethod
    def grid(self, shape: Sequence[int], *, device=None, dtype=torch.float32) -> Tensor:
        """(prod(shape), num_channels)."""


def grid_positions(shape: Sequence[int], *, device=None, dtype=torch.float32) -> Tensor:
    """Coordinates in [-1, 1] of every cell of a grid, row-major: (prod(shape), len(shape))."""
    axes = [torch.linspace(-1.0, 1.0, n, device=device, dtype=dtype) for n in shape]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, len(shape))


def fourier_features(
    pos: Tensor,
    *,
    num_bands: int,
    max_resolution: Sequence[float],
    concat_pos: bool = True,
    sine_only: bool = False,
    layout: str = "deepmind",
) -> Tensor:
    """Fourier features of positions ``pos`` (..., D) in [-1, 1]: (..., num_channels).

    ``max_resolution`` has one entry per axis; band frequencies are
    ``linspace(1, max_resolution_d / 2, num_bands)``.
    """
    dims = pos.shape[-1]
    if len(max_resolution) != dims:
        raise ValueError(f"max_resolution has {len(max_resolution)} entries for {dims}-D positions")
    freqs = torch.stack([
        torch.linspace(1.0, r / 2, num_bands, device=pos.device, dtype=pos.dtype)
        for r in max_resolution
    ])  # (D, K)
    angles = math.pi * pos[..., :, None] * freqs  # (..., D, K)
    if layout == "deepmind":
        parts = [angles.sin().flatten(-2)]
        if not sine_only:
            parts.append(angles.cos().flatten(-2))
        if concat_pos:
            parts.insert(0, pos)
        return torch.cat(parts, dim=-1)
    if layout == "lucidrains":
        parts = [angles.sin()] + ([] if sine_only else [angles.cos()])
        if concat_pos:
            parts.append(pos[..., None])
        return torch.cat(parts, dim=-1).flatten(-2)
    raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")


class FourierPositionEncoding(PositionEncoding):
    """Fourier position features for grids or per-example coordinates.

    ``grid(shape, ...)`` returns (prod(shape), num_channels), computed once per
    shape/device/dtype and reused; ``points(coords)`` maps (batch, num_points, D) coordinates
    in [-1, 1] to (batch, num_points, num_channels), each example from its own coordinates.
    """

    def __init__(
        self,
        *,
        num_axes: int,
        num_bands: int,
        max_resolution: float | Sequence[float],
        concat_pos: bool = True,
        sine_only: bool = False,
        layout: str = "deepmind",
    ):
        super().__init__()
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        if isinstance(max_resolution, (int, float)):
            max_resolution = (float(max_resolution),) * num_axes
        if len(max_resolution) != num_axes:
            raise ValueError(f"max_resolution needs {num_axes} entries, got {len(max_resolution)}")
        self.num_axes = num_axes
        self.options = dict(num_bands=num_bands, max_resolution=tuple(max_resolution),
                            concat_pos=concat_pos, sine_only=sine_only, layout=layout)
        self.num_channels = num_axes * (num_bands * (1 if sine_only else 2) + int(concat_pos))
        self._cache: dict[tuple, Tensor] = {}

    def _compute_grid(self, shape: Sequence[int], device, dtype) -> Tensor:
        # Computed in float64 for exactness, returned in the requested dtype.
        pos = grid_positions(shape, device=device, dtype=torch.float64)
        return fourier_features(pos, **self.options).to(dtype)

    def grid(self, shape: Sequence[int], *, device=None, dtype=torch.float32) -> Tensor:
        if torch.compiler.is_compiling():  # traced once into the graph; no Python cache
            return self._compute_grid(shape, device, dtype)
        key = (tuple(shape), str(device), dtype, torch.is_inference_mode_enabled())
        cached = self._cache.get(key)
        if cached is None:
            cached = self._compute_grid(shape, device, dtype)
            if len(self._cache) >= 16:
                self._cache.clear()
            self._cache[key] = cached
        return cached

    def points(self, coords: Tensor) -> Tensor:
        return fourier_features(coords, **self.options)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.options.items())


class LearnedPositionEncoding(PositionEncoding):
    """A learned embedding per position: (num_positions, num_channels), init trunc-normal 0.02."""

    def __init__(self, num_positions: int, num_channels: int, *, init_std: float = 0.02):
        super().__init__()
        self.num_channels = num_channels
        self.embedding = nn.Parameter(torch.empty(num_positions, num_channels))
        nn.init.trunc_normal_(self.embedding, std=init_std, a=-2 * init_std, b=2 * init_std)

    def grid(self, shape: Sequence[int], *, device=None, dtype=torch.float32) -> Tensor:
        n = math.prod(shape)
        if n != self.embedding.shape[0]:
            raise ValueError(
                f"learned positions cover {self.embedding.shape[0]} positions, "
                f"the input has {n} (grid {tuple(shape)})")
        return self.embedding.to(dtype)


class ProjectedPositions(PositionEncoding):
    """Learned positions followed by a linear layer (DeepMind's ``PositionEncodingProjector``,
    transformers' ``positions_projection``): ``grid(shape)`` -> (prod(shape), num_channels)."""

    def __init__(self, num_positions: int, channels: int, num_channels: int):
        super().__init__()
        self.encoding = LearnedPositionEncoding(num_positions, channels)
        self.projection = nn.Linear(channels, num_channels)
        self.num_channels = num_channels

    def grid(self, shape: Sequence[int], *, device=None, dtype=torch.float32) -> Tensor:
        return self.projection(self.encoding.grid(shape, device=device, dtype=dtype))


class PrefixPositions(PositionEncoding):
    """Positions of a sequence whose length varies up to ``max_length``: the first ``n`` rows of
    ``encoding.grid((max_length,))``.

    A position's features do not depend on how far the batch was padded, so a padded, masked
    example gives the same outputs as the example alone. ``grid((n,))`` -> (n, num_channels).
    """

    def __init__(self, encoding: PositionEncoding, max_length: int):
        super().__init__()
        self.encoding = encoding
        self.max_length = max_length
        self.num_channels = encoding.num_channels

    def grid(self, shape: Sequence[int], *, device=None, dtype=torch.float32) -> Tensor:
        if len(shape) != 1 or shape[0] > self.max_length:
            raise ValueError(f"positions cover sequences of up to {self.max_length} inputs, "
                             f"got a grid of shape {tuple(shape)}")
        return self.encoding.grid((self.max_length,), device=device, dtype=dtype)[:shape[0]]


def build_position_encoding(kind: str | PositionEncoding | None, *, grid_shape: Sequence[int],
                            num_bands: int = 64, max_resolution: Sequence[float] | None = None,
                            num_channels: int = 256) -> PositionEncoding | None:
    """The position encoding of a grid of ``grid_shape``: ``"fourier"`` (``num_bands`` bands,
    ``max_resolution`` defaulting to ``grid_shape``), ``"learned"`` (``num_channels`` channels
    per cell), None (no position features), or an encoding passed through as it is."""
    if kind is None or isinstance(kind, PositionEncoding):
        return kind
    if kind == "fourier":
        return FourierPositionEncoding(num_axes=len(grid_shape), num_bands=num_bands,
                                       max_resolution=max_resolution or tuple(grid_shape))
    if kind == "learned":
        return LearnedPositionEncoding(math.prod(grid_shape), num_channels)
    raise ValueError(f"position must be 'fourier', 'learned', None or a PositionEncoding, "
                     f"got {kind!r}")


def pixel_permutation(seed: int, num_pixels: int = 28 * 28) -> Tensor:
    """The fixed permutation of ``num_pixels`` positions drawn from ``seed`` (permuted MNIST):
    an int64 tensor (num_pixels,)."""
    generator = torch.Generator().manual_seed(int(seed))
    return torch.randperm(num_pixels, generator=generator)


class PermutedPositions(PositionEncoding):
    """Position features that travel with permuted inputs.

    Permuted MNIST shuffles the pixels with a fixed permutation ``perm`` (input ``i`` is the
    original pixel ``perm[i]``). Giving input ``i`` the features of position ``perm[i]`` is the
    Perceiver paper's permuted-ImageNet setting: the features are attached before the shuffle,
    so a model that does not depend on input order is unaffected by it.
    """

    def __init__(self, encoding: PositionEncoding, permutation: Tensor):
        super().__init__()
        self.encoding = encoding
        self.num_channels = encoding.num_channels
        self.register_buffer("permutation", permutation.clone(), persistent=False)

    def grid(self, shape: Sequence[int], *, device=None, dtype=torch.float32) -> Tensor:
        features = self.encoding.grid(shape, device=device, dtype=dtype)
        if features.shape[0] != self.permutation.numel():
            raise ValueError(f"the permutation covers {self.permutation.numel()} positions, "
                             f"the image has {features.shape[0]} (grid {tuple(shape)})")
        return features[self.permutation.to(features.device)]


class RotaryPositions(nn.Module):
    """Rotary position embeddings (RoPE, Su et al. 2021) of queries and keys by absolute
    position: a query at position ``p`` and a key at ``s`` then score ``q . R(s - p) k``, so
    the scores depend only on the distance between the two.

    Only the first ``rotated`` channels of each head turn (``fraction`` of ``head_channels``,
    rounded down to an even number; Perceiver AR rotates half); the rest pass through. Those
    channels are split into two halves, and channel ``j`` of the first half and channel ``j`` of
    the second turn together by the angle ``position * max_wavelength ** (-2 j / rotated)``.

    ``angles(positions)``: positions (batch, n) integer -> (cos, sin), each (batch, 1, n,
    rotated / 2) in float64; ``rotate(x, angles)``: x (batch, heads, n, head_channels) -> the
    same shape.
    """

    def __init__(self, head_channels: int, *, fraction: float = 0.5,
                 max_wavelength: float = 10000.0):
        super().__init__()
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"the rotated fraction of a head's channels must lie in [0, 1], "
                             f"got {fraction}")
        self.rotated = int(head_channels * fraction) // 2 * 2
        self.max_wavelength = max_wavelength

    def angles(self, positions: Tensor) -> tuple[Tensor, Tensor]:
        # in float64 where the device has it: float32 angles of positions near 100,000 are off
        # by about 0.01 radians
        dtype = torch.float32 if positions.device.type == "mps" else torch.float64
        exponents = torch.arange(0, self.rotated, 2, device=positions.device, dtype=dtype)
        frequencies = self.max_wavelength ** -(exponents / max(self.rotated, 1))
        turn = positions.to(dtype)[:, None, :, None] * frequencies
        return turn.cos(), turn.sin()

    def rotate(self, x: Tensor, angles: tuple[Tensor, Tensor]) -> Tensor:
        cos, sin = (a.to(x.dtype) for a in angles)
        half = self.rotated // 2
        x1, x2, rest = x[..., :half], x[..., half:self.rotated], x[..., self.rotated:]
        return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin, rest], dim=-1)


__all__ = ["PositionEncoding", "grid_positions", "fourier_features", "FourierPositionEncoding",
           "LearnedPositionEncoding", "ProjectedPositions", "PermutedPositions",
           "PrefixPositions", "build_position_encoding", "pixel_permutation", "RotaryPositions"]
