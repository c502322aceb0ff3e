"""Triangle meshes: a robust Object File Format (``.off``) reader and surface sampling."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import numpy as np

from ._common import DatasetError

__all__ = [
    "Mesh",
    "OFFError",
    "normalize_points",
    "parse_off",
    "read_off",
    "sample_surface",
    "triangle_areas",
]


class OFFError(DatasetError):
    """A malformed ``.off`` file (the message names the file and the problem)."""


@dataclass(frozen=True, eq=False)
class Mesh:
    """A triangle mesh: ``vertices`` float64 ``(V, 3)`` and ``faces`` int64 ``(F, 3)``."""

    vertices: np.ndarray
    faces: np.ndarray

    def __post_init__(self) -> None:
        v = np.asarray(self.vertices, dtype=np.float64)
        f = np.asarray(self.faces, dtype=np.int64)
        if v.ndim != 2 or v.shape[1] != 3:
            raise ValueError(f"vertices must have shape (V, 3), got {v.shape}")
        if f.ndim != 2 or f.shape[1] != 3:
            raise ValueError(f"faces must have shape (F, 3), got {f.shape}")
        if f.size and (f.min() < 0 or f.max() >= len(v)):
            raise ValueError(f"face indices must lie in [0, {len(v) - 1}]")
        object.__setattr__(self, "vertices", v)
        object.__setattr__(self, "faces", f)


_HEADER = re.compile(r"^\s*(ST)?(C)?(N)?(4)?OFF(?=\s|$|[-+.\d])", re.IGNORECASE)


def _strip_comment(line: str) -> str:
    i = line.find("#")
    return line if i < 0 else line[:i]


def parse_off(text: str, *, name: str = "<string>") -> Mesh:
    """Parse the text of an OFF file into a triangle :class:`Mesh`.

    Accepts: an optional header keyword ``OFF`` (also ``COFF``/``NOFF``/``CNOFF``/``STOFF``,
    whose extra per-vertex values are ignored), possibly glued to the counts as in real
    ModelNet files (``OFF490 518 0``); ``#`` comments and blank lines anywhere; the counts line
    ``V F [E]``; vertex lines with at least 3 numbers (extra values ignored); face lines
    ``n i_1 ... i_n [colour...]`` with ``n >= 3`` (polygons are fan-triangulated). Raises
    :class:`OFFError` naming ``name`` on any inconsistency.
    """
    lines = [s for s in (_strip_comment(line).strip() for line in text.splitlines()) if s]
    if not lines:
        raise OFFError(f"{name}: empty OFF file")
    first = lines[0]
    m = _HEADER.match(first)
    if m is None:
        raise OFFError(f"{name}: expected an 'OFF' header, got {first[:40]!r}")
    if m.group(4):
        raise OFFError(f"{name}: 4OFF (4-D vertices) is not supported")
    rest = first[m.end() :].strip()
    pos = 1
    if not rest:
        if len(lines) < 2:
            raise OFFError(f"{name}: missing the 'num_vertices num_faces num_edges' line")
        rest = lines[1]
        pos = 2
    try:
        counts = [int(tok) for tok in rest.split()]
    except ValueError:
        raise OFFError(
            f"{name}: bad counts line {rest[:60]!r} (expected integers 'V F [E]')"
        ) from None
    if len(counts) < 2 or min(counts[:2]) < 0:
        raise OFFError(f"{name}: bad counts line {rest[:60]!r} (expected 'V F [E]')")
    num_v, num_f = counts[0], counts[1]
    if len(lines) < pos + num_v + num_f:
        raise OFFError(
            f"{name}: truncated file: header declares {num_v} vertices and {num_f} faces, "
            f"but only {len(lines) - pos} data lines follow"
        )
    vertices = _parse_vertices(lines[pos : pos + num_v], name)
    faces = _parse_faces(lines[pos + num_v : pos + num_v + num_f], num_v, name)
    return Mesh(vertices, faces)


def _parse_vertices(lines: list[str], name: str) -> np.ndarray:
    if not lines:
        return np.zeros((0, 3))
    rows = [line.split() for line in lines]
    bad = next((i for i, r in enumerate(rows) if len(r) < 3), None)
    if bad is not None:
        raise OFFError(f"{name}: vertex {bad} has {len(rows[bad])} values, expected at least 3")
    try:
        if all(len(r) == 3 for r in rows):
            v = np.array(rows, dtype=np.float64)
        else:  # lines carry extra values (normals, colours...): take the first three
            v = np.array([r[:3] for r in rows], dtype=np.float64)
    except ValueError as exc:
        raise OFFError(f"{name}: non-numeric vertex coordinate ({exc})") from exc
    if not np.isfinite(v).all():
        raise OFFError(f"{name}: vertex coordinates contain NaN or infinity")
    return v


def _parse_faces(lines: list[str], num_v: int, name: str) -> np.ndarray:
    if not lines:
        return np.zeros((0, 3), dtype=np.int64)
    rows = [line.split() for line in lines]
    try:
        if all(len(r) == 4 and r[0] == "3" for r in rows):  # fast path: plain triangles
            faces = np.array(rows, dtype=np.int64)[:, 1:]
        else:
            tris: list[list[int]] = []
            for i, r in enumerate(rows):
                n = int(r[0])
                if n < 3 or len(r) < n + 1:
                    raise OFFError(
                        f"{name}: face {i} declares {n} vertices and lists {len(r) - 1} values "
                        "(need at least 3 vertex indices)"
                    )
                idx = [int(t) for t in r[1 : n + 1]]
                tris.extend([idx[0], idx[k], idx[k + 1]] for k in range(1, n - 1))
            faces = np.array(tris, dtype=np.int64).reshape(-1, 3)
    except ValueError as exc:
        if isinstance(exc, OFFError):
            raise
        raise OFFError(f"{name}: non-integer face index ({exc})") from exc
    if faces.size and (faces.min() < 0 or faces.max() >= num_v):
        raise OFFError(
            f"{name}: face index out of range: indices must lie in [0, {num_v - 1}], "
            f"got min {faces.min()} and max {faces.max()}"
        )
    return faces


def read_off(path: str | os.PathLike[str]) -> Mesh:
    """Read a ``.off`` file (see :func:`parse_off`); errors name ``path``."""
    try:
        # utf-8-sig drops a byte-order mark; odd bytes (e.g. in comments) must not be fatal
        with open(path, encoding="utf-8-sig", errors="replace") as f:
            text = f.read()
    except OSError as exc:
        raise OFFError(f"{path}: cannot read file ({exc})") from exc
    return parse_off(text, name=os.fspath(path))


def triangle_areas(mesh: Mesh) -> np.ndarray:
    """Area of each face, ``(F,)``."""
    tri = mesh.vertices[mesh.faces]
    return 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)


def sample_surface(
    mesh: Mesh,
    num_points: int,
    rng: np.random.Generator | int | None = None,
    *,
    return_normals: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Uniformly sample ``num_points`` points on the surface of ``mesh``.

    Triangles are drawn with probability proportional to their area, then a point is drawn
    uniformly inside each chosen triangle with reflected barycentric coordinates. Returns float64
    ``(num_points, 3)``, plus the unit face normals ``(num_points, 3)`` if ``return_normals``.
    Raises :class:`ValueError` if the mesh has no faces or zero total area.
    """
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    if len(mesh.faces) == 0:
        raise ValueError("cannot sample a mesh without faces")
    areas = triangle_areas(mesh)
    total = areas.sum()
    if not np.isfinite(total) or total <= 0:
        raise ValueError("cannot sample a mesh with zero surface area (all faces degenerate)")
    cdf = np.cumsum(areas)
    choice = np.searchsorted(cdf, rng.random(num_points) * cdf[-1], side="right")
    choice = np.minimum(choice, len(areas) - 1)
    tri = mesh.vertices[mesh.faces[choice]]
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    u = rng.random((num_points, 1))
    v = rng.random((num_points, 1))
    flip = (u + v) > 1.0
    u = np.where(flip, 1.0 - u, u)
    v = np.where(flip, 1.0 - v, v)
    points = a + u * (b - a) + v * (c - a)
    if not return_normals:
        return points
    n = np.cross(b - a, c - a)
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
    return points, n


def normalize_points(points: np.ndarray) -> np.ndarray:
    """Centre ``(N, 3)`` points at their mean and scale so the farthest point has radius 1."""
    centred = points - points.mean(axis=0, keepdims=True)
    radius = np.linalg.norm(centred, axis=1).max()
    return centred / radius if radius > 0 else centred
