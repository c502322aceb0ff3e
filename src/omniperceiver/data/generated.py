"""Generated datasets, deterministic given a seed: procedural 3-D shapes and moving digits."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ._common import apply_transform, check_positive_int, check_split, item_rng
from .mnist import DIGIT_CLASSES, load_mnist_arrays, mnist_split_indices
from .offmesh import Mesh, sample_surface

__all__ = ["MovingDigits", "ProceduralPointClouds", "SHAPE_CLASSES", "shape_mesh"]

_SPLIT_CODES = {"train": 0, "test": 1, "all": 2}

# --------------------------------------------------------------------------------------------
# Procedural meshes (all fit roughly inside the unit ball)
# --------------------------------------------------------------------------------------------


def _grid_mesh(points: np.ndarray) -> Mesh:
    """Triangulate a ``(nu, nv, 3)`` grid of surface points (two triangles per cell)."""
    nu, nv, _ = points.shape
    idx = np.arange(nu * nv).reshape(nu, nv)
    a, b = idx[:-1, :-1].ravel(), idx[1:, :-1].ravel()
    c, d = idx[1:, 1:].ravel(), idx[:-1, 1:].ravel()
    faces = np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)])
    return Mesh(points.reshape(-1, 3), faces)


def _revolve(profile: np.ndarray, segments: int = 48) -> Mesh:
    """Surface of revolution about the z axis of a polyline ``profile`` of ``(r, z)`` pairs."""
    phi = np.linspace(0.0, 2.0 * np.pi, segments + 1)
    r, z = profile[:, 0][:, None], profile[:, 1][:, None]
    shape = (len(profile), len(phi))
    pts = np.stack([r * np.cos(phi), r * np.sin(phi), np.broadcast_to(z, shape)], axis=-1)
    return _grid_mesh(pts)


def _arc(
    radius: float, start: float, stop: float, n: int, z0: float = 0.0, r0: float = 0.0
) -> np.ndarray:
    t = np.linspace(start, stop, n)
    return np.stack([r0 + radius * np.sin(t), z0 - radius * np.cos(t)], axis=1)


def _polyhedron(vertices: list[list[float]], faces: list[list[int]]) -> Mesh:
    tris = [[f[0], f[k], f[k + 1]] for f in faces for k in range(1, len(f) - 1)]
    return Mesh(np.array(vertices, dtype=np.float64), np.array(tris))


def _helix_tube(
    turns: float = 2.5,
    radius: float = 0.7,
    height: float = 1.6,
    tube: float = 0.12,
    n_t: int = 240,
    n_s: int = 12,
) -> Mesh:
    t = np.linspace(0.0, 2.0 * np.pi * turns, n_t)
    c = np.stack([radius * np.cos(t), radius * np.sin(t), height * (t / t[-1] - 0.5)], axis=1)
    tangent = np.stack(
        [-radius * np.sin(t), radius * np.cos(t), np.full_like(t, height / t[-1])], axis=1
    )
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
    normal = np.stack([-np.cos(t), -np.sin(t), np.zeros_like(t)], axis=1)
    binormal = np.cross(tangent, normal)
    s = np.linspace(0.0, 2.0 * np.pi, n_s + 1)
    pts = c[:, None] + tube * (
        np.cos(s)[None, :, None] * normal[:, None] + np.sin(s)[None, :, None] * binormal[:, None]
    )
    return _grid_mesh(pts)


def _build(name: str) -> Mesh:
    if name == "sphere":
        return _revolve(_arc(1.0, 0.0, np.pi, 25))
    if name == "ellipsoid":
        m = _revolve(_arc(1.0, 0.0, np.pi, 25))
        return Mesh(m.vertices * np.array([1.0, 0.6, 0.35]), m.faces)
    if name == "cube":
        v = [[x, y, z] for x in (-0.6, 0.6) for y in (-0.6, 0.6) for z in (-0.6, 0.6)]
        f = [[0, 1, 3, 2], [4, 6, 7, 5], [0, 4, 5, 1], [2, 3, 7, 6], [0, 2, 6, 4], [1, 5, 7, 3]]
        return _polyhedron(v, f)
    if name == "tetrahedron":
        v = (np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]]) / np.sqrt(3)).tolist()
        return _polyhedron(v, [[0, 1, 2], [0, 3, 1], [0, 2, 3], [1, 3, 2]])
    if name == "pyramid":
        v = [
            [-0.7, -0.7, -0.5],
            [0.7, -0.7, -0.5],
            [0.7, 0.7, -0.5],
            [-0.7, 0.7, -0.5],
            [0.0, 0.0, 0.8],
        ]
        return _polyhedron(v, [[0, 3, 2, 1], [0, 1, 4], [1, 2, 4], [2, 3, 4], [3, 0, 4]])
    if name == "cylinder":
        return _revolve(np.array([[0.0, -0.8], [0.6, -0.8], [0.6, 0.8], [0.0, 0.8]]))
    if name == "cone":
        return _revolve(np.array([[0.0, -0.7], [0.75, -0.7], [0.0, 0.9]]))
    if name == "capsule":
        bottom = _arc(0.4, 0.0, np.pi / 2, 12, z0=-0.5)
        top = _arc(0.4, np.pi / 2, np.pi, 12, z0=0.5)
        return _revolve(np.concatenate([bottom, top]))
    if name == "torus":
        t = np.linspace(0.0, 2.0 * np.pi, 25)
        return _revolve(np.stack([0.7 + 0.25 * np.cos(t), 0.25 * np.sin(t)], axis=1))
    if name == "annulus":
        return _revolve(np.array([[0.5, 0.0], [1.0, 0.0]]))
    if name == "disk":
        return _revolve(np.array([[0.0, 0.0], [1.0, 0.0]]))
    if name == "helix":
        return _helix_tube()
    raise KeyError(f"unknown shape {name!r}; known shapes: {SHAPE_CLASSES}")


SHAPE_CLASSES = [
    "sphere", "ellipsoid", "cube", "tetrahedron", "pyramid", "cylinder",
    "cone", "capsule", "torus", "annulus", "disk", "helix",
]  # fmt: skip


@functools.cache
def shape_mesh(name: str) -> Mesh:
    """The canonical (unrotated, unscaled) triangle mesh of one of :data:`SHAPE_CLASSES`."""
    return _build(name)


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A rotation matrix ``(3, 3)`` drawn uniformly from SO(3) (via a random unit quaternion)."""
    q = rng.standard_normal(4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])  # fmt: skip


class ProceduralPointClouds(Dataset):
    """Point clouds of 12 procedural 3-D shapes, generated on the fly (no files, no download).

    Classes (:data:`SHAPE_CLASSES`): sphere, ellipsoid, cube, tetrahedron, pyramid, cylinder
    (with caps), cone (with base), capsule, torus, annulus (flat ring), disk and helix (a tube).
    Each item samples ``num_points`` points uniformly (area-weighted) on the shape's surface,
    applies a uniformly random 3-D rotation, a random isotropic scale in ``scale_range`` and
    i.i.d. Gaussian noise of standard deviation ``noise``.

    Items are ``(x, label)`` with ``x`` float32 ``(num_points, 3)`` -- or ``(num_points, 6)``
    with ``normals=True`` (xyz, then the rotated unit face normal) -- and ``label = i %
    num_classes`` (classes are balanced). Item ``i`` depends only on ``(seed, split, i)``: it
    is identical across calls, instances and processes, and ``"train"``/``"test"`` draw
    different samples for the same seed.
    """

    def __init__(
        self,
        num_samples: int = 1200,
        *,
        num_points: int = 1024,
        seed: int = 0,
        noise: float = 0.01,
        split: str = "train",
        scale_range: tuple[float, float] = (0.75, 1.25),
        normals: bool = False,
        transform: Callable[[torch.Tensor], Any] | None = None,
    ) -> None:
        check_positive_int("num_samples", num_samples)
        check_positive_int("num_points", num_points)
        if noise < 0:
            raise ValueError(f"noise must be >= 0, got {noise}")
        lo, hi = scale_range
        if not 0 < lo <= hi:
            raise ValueError(f"scale_range must satisfy 0 < low <= high, got {scale_range}")
        self.split = check_split(split, ("train", "test"))
        self.num_samples = int(num_samples)
        self.num_points = int(num_points)
        self.seed = int(seed)
        self.noise = float(noise)
        self.scale_range = (float(lo), float(hi))
        self.normals = bool(normals)
        self.transform = transform
        self.classes = list(SHAPE_CLASSES)
        self.num_classes = len(self.classes)

    def __len__(self) -> int:
        return self.num_samples

    def generate(self, index: int) -> tuple[torch.Tensor, int]:
        """Build item ``index`` (without the transform)."""
        if not -self.num_samples <= index < self.num_samples:
            raise IndexError(f"index {index} out of range for {self.num_samples} samples")
        index %= self.num_samples
        label = index % self.num_classes
        rng = item_rng(self.seed, _SPLIT_CODES[self.split], index)
        points, normals = sample_surface(
            shape_mesh(self.classes[label]), self.num_points, rng, return_normals=True
        )
        rot = random_rotation(rng)
        scale = rng.uniform(*self.scale_range)
        points = scale * points @ rot.T
        if self.noise > 0:
            points = points + rng.normal(0.0, self.noise, size=points.shape)
        x = np.concatenate([points, normals @ rot.T], axis=1) if self.normals else points
        return torch.from_numpy(x.astype(np.float32)), label

    def __getitem__(self, index: int) -> tuple[Any, int]:
        x, label = self.generate(index)
        return apply_transform(self.transform, x), label

    def __repr__(self) -> str:
        return (
            f"ProceduralPointClouds(num_samples={self.num_samples}, "
            f"num_points={self.num_points}, split={self.split!r}, seed={self.seed})"
        )


def _bounce(start: float, velocity: float, steps: np.ndarray, span: float) -> np.ndarray:
    """Positions ``start + velocity * t`` reflected off the walls ``0`` and ``span``."""
    if span <= 0:
        return np.zeros_like(steps, dtype=np.float64)
    x = np.mod(start + velocity * steps, 2.0 * span)
    return np.where(x > span, 2.0 * span - x, x)


class MovingDigits(Dataset):
    """Moving-MNIST-style videos: one MNIST digit bouncing around a larger black canvas.

    Items are ``(x, label)`` with ``x`` float32 ``(num_frames, size, size, 1)`` (T, H, W, C) in
    ``[0, 1]`` and ``label`` the digit (``0..9``). Digits come from :class:`MNIST`'s fixed split,
    so ``"test"`` videos only use test digits. The digit is resized to ``digit_size`` pixels
    (default: 28 when ``size >= 42``, otherwise ``2 * size // 3``), starts at a random position
    and moves with a random constant velocity, bouncing off the canvas walls.

    Length: ``num_samples`` if given, otherwise the number of digits in the split (4,000 /
    1,000 / 5,000); video ``i`` uses the split's digit ``i % num_digits`` and a trajectory
    that depends only on ``(seed, split, i)``, so each item is deterministic.
    """

    def __init__(
        self,
        split: str = "train",
        *,
        num_samples: int | None = None,
        num_frames: int = 8,
        size: int = 32,
        digit_size: int | None = None,
        seed: int = 0,
        transform: Callable[[torch.Tensor], Any] | None = None,
    ) -> None:
        self.split = check_split(split)
        check_positive_int("num_samples", num_samples, allow_none=True)
        check_positive_int("num_frames", num_frames)
        check_positive_int("size", size)
        if digit_size is None:
            digit_size = 28 if size >= 42 else max(1, 2 * size // 3)
        check_positive_int("digit_size", digit_size)
        if digit_size > size:
            raise ValueError(f"digit_size ({digit_size}) must be <= size ({size})")
        self.num_frames = int(num_frames)
        self.size = int(size)
        self.digit_size = int(digit_size)
        self.seed = int(seed)
        self.transform = transform
        self.classes = list(DIGIT_CLASSES)
        self.num_classes = 10
        images, labels = load_mnist_arrays()
        idx = mnist_split_indices(split)
        digits = torch.from_numpy(images[idx].astype(np.float32) / 255.0).unsqueeze(1)
        if self.digit_size != 28:
            digits = F.interpolate(
                digits,
                size=(self.digit_size, self.digit_size),
                mode="bilinear",
                align_corners=False,
                antialias=True,
            )
        self.digits = digits[:, 0].clamp_(0.0, 1.0).contiguous()
        self.digit_labels = torch.from_numpy(labels[idx].copy())
        self.num_samples = int(num_samples) if num_samples is not None else len(idx)

    def __len__(self) -> int:
        return self.num_samples

    def trajectory(self, index: int) -> np.ndarray:
        """Top-left corner of the digit in each frame, int64 ``(num_frames, 2)`` as (row, col)."""
        rng = item_rng(self.seed, _SPLIT_CODES[self.split], index)
        span = float(self.size - self.digit_size)
        start = rng.uniform(0.0, span, size=2)
        angle = rng.uniform(0.0, 2.0 * np.pi)
        speed = rng.uniform(0.5, 1.5) * max(1.0, 2.0 * span / max(1, self.num_frames - 1))
        steps = np.arange(self.num_frames, dtype=np.float64)
        rows = _bounce(start[0], speed * np.sin(angle), steps, span)
        cols = _bounce(start[1], speed * np.cos(angle), steps, span)
        return np.stack([rows, cols], axis=1).round().astype(np.int64)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        if not -self.num_samples <= index < self.num_samples:
            raise IndexError(f"index {index} out of range for {self.num_samples} samples")
        index %= self.num_samples
        digit_index = index % len(self.digits)
        digit = self.digits[digit_index]
        d = self.digit_size
        video = torch.zeros(self.num_frames, self.size, self.size, 1)
        for t, (r, c) in enumerate(self.trajectory(index).tolist()):
            video[t, r : r + d, c : c + d, 0] = digit
        return apply_transform(self.transform, video), int(self.digit_labels[digit_index])

    def __repr__(self) -> str:
        return (
            f"MovingDigits(split={self.split!r}, len={len(self)}, num_frames={self.num_frames}, "
            f"size={self.size})"
        )
