"""Helpers for tests/test_data.py: write real data files (PNG, WAV, OFF, NPY) into tmp dirs."""

from __future__ import annotations

import wave
from collections.abc import Iterable
from pathlib import Path

import numpy as np

CUBE_VERTICES = [
    [-0.5, -0.5, -0.5],
    [0.5, -0.5, -0.5],
    [0.5, 0.5, -0.5],
    [-0.5, 0.5, -0.5],
    [-0.5, -0.5, 0.5],
    [0.5, -0.5, 0.5],
    [0.5, 0.5, 0.5],
    [-0.5, 0.5, 0.5],
]
# Quads (as in many ModelNet files), to exercise fan triangulation.
CUBE_QUADS = [
    [0, 3, 2, 1],
    [4, 5, 6, 7],
    [0, 1, 5, 4],
    [2, 3, 7, 6],
    [1, 2, 6, 5],
    [0, 4, 7, 3],
]
TETRA_VERTICES = [[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
TETRA_FACES = [[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]]


def off_text(
    vertices: Iterable[Iterable[float]],
    faces: Iterable[Iterable[int]],
    *,
    glued: bool = False,
    comments: bool = False,
) -> str:
    """OFF text for a mesh; ``glued`` writes the ModelNet-style ``OFF8 6 0`` header line."""
    vertices = [list(v) for v in vertices]
    faces = [list(f) for f in faces]
    counts = f"{len(vertices)} {len(faces)} 0"
    lines = [f"OFF{counts}"] if glued else ["OFF", counts]
    if comments:
        lines.insert(1, "# a comment line")
        lines.insert(1, "")
    lines += [" ".join(repr(float(c)) for c in v) for v in vertices]
    if comments:
        lines.append("   # comment between vertices and faces")
    lines += [" ".join(str(i) for i in [len(f), *f]) for f in faces]
    return "\n".join(lines) + "\n"


def write_off(path: Path, vertices, faces, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(off_text(vertices, faces, **kwargs))
    return path


def int_range(sampwidth: int) -> tuple[int, int]:
    """Valid integer sample range of a PCM WAV sample width (8-bit is unsigned)."""
    if sampwidth == 1:
        return 0, 255
    bits = 8 * sampwidth
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def encode_pcm(ints: np.ndarray, sampwidth: int) -> bytes:
    """Little-endian PCM bytes of an integer ``(frames, channels)`` array."""
    flat = np.asarray(ints, dtype=np.int64).reshape(-1)
    if sampwidth == 1:
        return flat.astype(np.uint8).tobytes()
    if sampwidth == 2:
        return flat.astype("<i2").tobytes()
    if sampwidth == 4:
        return flat.astype("<i4").tobytes()
    u = flat & 0xFFFFFF  # 24-bit two's complement
    return (
        np.stack([u & 0xFF, (u >> 8) & 0xFF, (u >> 16) & 0xFF], axis=1).astype(np.uint8).tobytes()
    )


def ints_to_float(ints: np.ndarray, sampwidth: int) -> np.ndarray:
    """The float value a correct reader should return for integer PCM samples."""
    ints = np.asarray(ints, dtype=np.float64)
    if sampwidth == 1:
        return (ints - 128.0) / 128.0
    return ints / float(1 << (8 * sampwidth - 1))


def write_wav_ints(path: Path, ints: np.ndarray, sample_rate: int, sampwidth: int) -> Path:
    """Write integer samples ``(frames,)`` or ``(frames, channels)`` with the ``wave`` module."""
    ints = np.asarray(ints)
    if ints.ndim == 1:
        ints = ints[:, None]
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(ints.shape[1])
        w.setsampwidth(sampwidth)
        w.setframerate(sample_rate)
        w.writeframes(encode_pcm(ints, sampwidth))
    return path


def write_wav(path: Path, samples: np.ndarray, sample_rate: int = 8000, sampwidth: int = 2) -> Path:
    """Write float samples in [-1, 1] (``(frames,)`` or ``(frames, channels)``) as PCM."""
    lo, hi = int_range(sampwidth)
    samples = np.asarray(samples, dtype=np.float64)
    if sampwidth == 1:
        ints = np.round(samples * 128.0 + 128.0)
    else:
        ints = np.round(samples * float(1 << (8 * sampwidth - 1)))
    return write_wav_ints(path, np.clip(ints, lo, hi).astype(np.int64), sample_rate, sampwidth)


def sine(num: int, freq: float = 440.0, rate: int = 8000, amp: float = 0.5) -> np.ndarray:
    return amp * np.sin(2 * np.pi * freq * np.arange(num) / rate)


def write_image(path: Path, array: np.ndarray) -> Path:
    """Save ``array`` (uint8 (H, W) / (H, W, 3) / (H, W, 4), or uint16 (H, W)) with Pillow;
    the format follows the file extension."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def write_garbage(path: Path, data: bytes = b"this is not a valid file at all\x00\x01") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def write_ply(path: Path, points: np.ndarray, *, binary: bool = False) -> Path:
    """The vertices ``points`` (N, 3) as a .ply file (ASCII or binary little-endian), with a
    face element after them as mesh files have."""
    header = ("ply\nformat {} 1.0\ncomment made by the tests\nelement vertex {}\n"
              "property float x\nproperty float y\nproperty float z\n"
              "element face 1\nproperty list uchar int vertex_indices\nend_header\n")
    points = np.asarray(points, dtype="<f4")
    path.parent.mkdir(parents=True, exist_ok=True)
    if binary:
        body = points.tobytes() + bytes([3]) + np.array([0, 1, 2], "<i4").tobytes()
        path.write_bytes(header.format("binary_little_endian", len(points)).encode() + body)
    else:
        rows = "".join(" ".join(f"{c:.6f}" for c in p) + "\n" for p in points)
        path.write_text(header.format("ascii", len(points)) + rows + "3 0 1 2\n")
    return path


# --- a user's folder for each modality: 2 classes x `count` files ------------------------------


def write_wav_folder(root: Path, count: int = 6, rate: int = 8000) -> Path:
    """Two classes of 0.25 s tones (low / high), at ``rate`` Hz."""
    for name, freq in (("low", 200.0), ("high", 1500.0)):
        for i in range(count):
            write_wav(root / name / f"{i}.wav", sine(rate // 4, freq * (1 + i / 50), rate))
    return root


def write_video_folder(root: Path, count: int = 6, shape=(4, 12, 12)) -> Path:
    """Two classes of uint8 clips (T, H, W): a bar moving right / moving down."""
    t, h, w = shape
    for name in ("right", "down"):
        (root / name).mkdir(parents=True)
        for i in range(count):
            clip = np.zeros(shape, np.uint8)
            for f in range(t):
                if name == "right":
                    clip[f, :, (f + i) % w] = 255
                else:
                    clip[f, (f + i) % h, :] = 255
            np.save(root / name / f"{i}.npy", clip)
    return root


def write_point_folder(root: Path, count: int = 6) -> Path:
    """Two classes (cube / tetra), each as .off meshes, ASCII and binary .ply files and .npy
    arrays of points."""
    rng = np.random.default_rng(0)
    shapes = {"cube": (CUBE_VERTICES, CUBE_QUADS), "tetra": (TETRA_VERTICES, TETRA_FACES)}
    for name, (vertices, faces) in shapes.items():
        for i in range(count):
            points = np.asarray(vertices) + rng.normal(0, 0.01, (len(vertices), 3))
            kind = i % 4
            if kind == 0:
                write_off(root / name / f"{i}.off", points, faces)
            elif kind in (1, 2):
                write_ply(root / name / f"{i}.ply", points, binary=kind == 2)
            else:
                np.save(root / name / f"{i}.npy", points.astype(np.float32))
    return root
