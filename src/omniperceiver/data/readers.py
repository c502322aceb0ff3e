"""One reader per file format, shared by the data sets (training) and ``predict``, so a file
becomes the same tensor in both.

=================  =================================================================
reader             result
=================  =================================================================
read_image         float32 (H, W, C) in [0, 1], C = 1, 3 or 4; 16-bit images keep their
                   range; optionally resized (antialiased bilinear)
decode_image       any function of the decoded Pillow image (e.g. a converted model's
                   preparation, :mod:`omniperceiver.data.preprocess`)
read_waveform      float32 (num_samples,) in [-1, 1] (channels averaged), optionally
                   resampled and padded/cropped
read_array         a numeric, non-empty ``.npy`` array (never unpickled)
unit_float         pixels of an array: float32 in [0, 1] (uint8 / 255, uint16 / 65535)
finite_float       any values of an array: float32, all finite
waveform_array     float32 (num_samples,) in [-1, 1] from a 1-D ``.npy`` array (integer
                   PCM samples scaled as in WAV files)
read_video_array   float32 (T, H, W, C) in [0, 1] from a ``.npy`` array
mesh_points        points (N, 3) [+ normals (N, 3)] sampled on an ``.off`` mesh
read_ply           the vertices (N, 3) of a ``.ply`` file (ASCII or binary little-endian)
read_points        float32 (num_points, 3) from an ``.off``, ``.ply`` or ``.npy`` file,
                   sampled to ``num_points`` and centred and scaled to unit radius
=================  =================================================================

Every reader raises :class:`~omniperceiver.errors.DatasetError` naming the file when it
cannot be read, or holds nothing (an empty array, a WAV without samples, a mesh without
faces), NaN or infinite values, a type of values it cannot scale, or a decompression bomb
(an image whose pixel count exceeds Pillow's limit). Pillow is imported only when an image is read.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import DatasetError
from .audio import PCM_SCALES, fix_length, pcm_to_float, read_wav, resample
from .offmesh import normalize_points, read_off, sample_surface

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm",
                  ".pgm", ".pbm", ".tga")
AUDIO_SUFFIXES = (".wav", ".wave")
MESH_SUFFIXES = (".off",)
PLY_SUFFIXES = (".ply",)
ARRAY_SUFFIXES = (".npy",)
POINT_SUFFIXES = (*MESH_SUFFIXES, *PLY_SUFFIXES, *ARRAY_SUFFIXES)

T = TypeVar("T")

_GREY_16 = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def resize_image(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Antialiased bilinear resize of channels-last ``(..., H, W, C)`` to ``size`` (H, W)."""
    size = (int(size[0]), int(size[1]))
    if tuple(x.shape[-3:-1]) == size:
        return x
    lead, c = x.shape[:-3], x.shape[-1]
    y = x.reshape(-1, *x.shape[-3:]).permute(0, 3, 1, 2)
    y = F.interpolate(y, size=size, mode="bilinear", align_corners=False, antialias=True)
    return y.permute(0, 2, 3, 1).reshape(*lead, *size, c).contiguous()


def _image_array(img: Any, channels: int) -> np.ndarray:
    """A decoded Pillow image -> float32 (H, W, channels) in [0, 1]."""
    if img.mode in _GREY_16 or img.mode == "F":
        # 16-bit (or float) greyscale: scale by its own range instead of clipping to 8 bits.
        scale = 1.0 if img.mode == "F" else 65535.0
        grey = np.asarray(img, dtype=np.float64).clip(0, scale) / scale
        arr = np.repeat(grey[..., None], channels, axis=-1)
        if channels == 4:
            arr[..., 3] = 1.0
        return arr.astype(np.float32)
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    arr = np.asarray(img.convert({1: "L", 3: "RGB", 4: "RGBA"}[channels]),
                     dtype=np.float32) / 255.0
    return arr[..., None] if arr.ndim == 2 else arr


def read_image(path: str | os.PathLike, *, channels: int = 3,
               size: Sequence[int] | None = None) -> torch.Tensor:
    """An image file -> float32 (H, W, channels) in [0, 1] (1: greyscale, 3: RGB, 4: RGBA;
    animated images: the first frame), resized to ``size`` (H, W) when given."""
    if channels not in (1, 3, 4):
        raise ValueError(f"channels must be 1, 3 or 4, got {channels!r}")
    x = torch.from_numpy(decode_image(path, lambda img: _image_array(img, channels)))
    return x if size is None else resize_image(x, size)


def decode_image(path: str | os.PathLike, decode: Callable[[Any], T]) -> T:
    """``decode(img)`` of the decoded Pillow image in the file ``path`` (animated images: the
    first frame), with every decoding failure a :class:`DatasetError` naming the file."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            return decode(img)
    except Image.DecompressionBombError as exc:
        raise DatasetError(f"{path}: refused to decode a possible decompression bomb ({exc}); "
                           f"raise PIL.Image.MAX_IMAGE_PIXELS if you trust the file") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DatasetError(f"{path}: cannot decode image ({exc})") from exc


def read_waveform(path: str | os.PathLike, *, sample_rate: int | None = None,
                  num_samples: int | None = None, mono: bool = True) -> torch.Tensor:
    """A PCM WAV file -> float32 in [-1, 1]: (num_samples,) with the channels averaged when
    ``mono``, else (num_samples, channels); linearly resampled to ``sample_rate`` and
    zero-padded or cropped at the end to ``num_samples`` when given."""
    data, rate = read_wav(path)
    x = torch.from_numpy(data)
    if mono:
        x = x.mean(dim=1)
    if sample_rate is not None and rate != sample_rate:
        x = resample(x, rate, sample_rate)
    if num_samples is not None:
        x = fix_length(x, num_samples)
    return x.clamp(-1.0, 1.0).contiguous()


def read_array(path: str | os.PathLike, *, mmap: bool = False) -> np.ndarray:
    """A numeric (or bool) ``.npy`` array with at least one element; pickled objects are
    refused."""
    try:
        arr = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DatasetError(f"{path}: cannot read .npy array ({exc})") from exc
    if not isinstance(arr, np.ndarray):
        raise DatasetError(f"{path}: expected a single .npy array, got {type(arr).__name__}")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise DatasetError(f"{path}: expected a numeric .npy array, got dtype {arr.dtype}")
    if arr.size == 0:
        raise DatasetError(f"{path}: empty array of shape {tuple(arr.shape)}")
    return arr


def finite_float(arr: np.ndarray, path: str | os.PathLike = "array") -> torch.Tensor:
    """``arr`` as float32, refused if any value is NaN or infinite (or overflows float32)."""
    x = np.asarray(arr, dtype=np.float32)
    bad = int(x.size - np.isfinite(x).sum())
    if bad:
        raise DatasetError(f"{path}: contains NaN or infinite values ({bad} of {x.size}); "
                           f"expected finite numbers")
    return torch.from_numpy(np.ascontiguousarray(x))


def _pixel_dtype_error(path: str | os.PathLike, dtype: np.dtype) -> DatasetError | None:
    """The error for pixels of type ``dtype``, or None if :func:`unit_float` can scale them."""
    if dtype in (np.uint8, np.uint16, np.bool_) or np.issubdtype(dtype, np.floating):
        return None
    return DatasetError(f"{path}: unsupported dtype {dtype} for pixels; expected uint8 "
                        "(0-255), uint16 (0-65535), bool, or float in [0, 1]")


def unit_float(arr: np.ndarray, path: str | os.PathLike = "array") -> torch.Tensor:
    """Pixels: uint8 / 255, uint16 / 65535, bool as 0/1, floats as they are (they must be
    finite): float32. Other integer types are refused (their range is unknown)."""
    if arr.dtype == np.uint8:
        return torch.from_numpy(arr.astype(np.float32) / 255.0)
    if arr.dtype == np.uint16:
        return torch.from_numpy(arr.astype(np.float32) / 65535.0)
    error = _pixel_dtype_error(path, arr.dtype)
    if error is not None:
        raise error
    return finite_float(arr, path)


def waveform_array(arr: np.ndarray, path: str | os.PathLike = "array") -> torch.Tensor:
    """A 1-D array of samples -> float32 (num_samples,): integer PCM samples (uint8, int16,
    int32) scaled to [-1, 1) as in WAV files, floats as they are (they must be finite)."""
    if arr.ndim != 1:
        raise DatasetError(f"{path}: expected a waveform of shape (num_samples,), got shape "
                           f"{tuple(arr.shape)}")
    if np.issubdtype(arr.dtype, np.floating):
        return finite_float(arr, path)
    if arr.dtype.str[1:] in PCM_SCALES:
        return torch.from_numpy(pcm_to_float(arr))
    raise DatasetError(f"{path}: unsupported dtype {arr.dtype} for audio samples; expected "
                       "uint8, int16 or int32 PCM samples (as in WAV files), or float in [-1, 1]")


def check_video_array(arr: np.ndarray, path: str | os.PathLike, *,
                      channels: int | None = None) -> np.ndarray:
    """``arr`` as a (T, H, W, C) video with ``channels`` channels (when given); a (T, H, W)
    array is a video of one channel."""
    if arr.ndim == 3:
        arr = arr[..., None]
    if arr.ndim != 4:
        raise DatasetError(f"{path}: expected a video array of shape (T, H, W, C) or "
                           f"(T, H, W), got shape {tuple(arr.shape)} with {arr.ndim} dimensions")
    if channels is not None and arr.shape[-1] != channels:
        raise DatasetError(f"{path}: expected shape (T, H, W, {channels}) with {channels} "
                           f"channels, got shape {tuple(arr.shape)}")
    error = _pixel_dtype_error(path, arr.dtype)
    if error is not None:
        raise error
    return arr


def read_video_array(path: str | os.PathLike, *, channels: int | None = None,
                     num_frames: int | None = None,
                     size: Sequence[int] | None = None) -> torch.Tensor:
    """A ``.npy`` video (T, H, W, C) -> float32 in [0, 1] (see :func:`unit_float`), T
    cropped or zero-padded to ``num_frames`` and frames resized to ``size`` when given."""
    arr = check_video_array(read_array(path), path, channels=channels)
    v = unit_float(arr, path)
    if num_frames is not None:
        v = fix_length(v, num_frames)
    return v if size is None else resize_image(v, size)


def mesh_points(path: str | os.PathLike, num_points: int, rng: np.random.Generator, *,
                normals: bool = False) -> torch.Tensor:
    """``num_points`` points drawn uniformly on the surface of an ``.off`` mesh, centred and
    scaled to unit radius: float32 (num_points, 3), or (num_points, 6) with the unit normals
    of their faces."""
    mesh = read_off(path)
    try:
        out = sample_surface(mesh, num_points, rng, return_normals=normals)
    except ValueError as exc:
        raise DatasetError(f"{path}: {exc}") from exc
    if normals:
        points, face_normals = out
        x = np.concatenate([normalize_points(points), face_normals], axis=1)
    else:
        x = normalize_points(out)
    return torch.from_numpy(x.astype(np.float32))


_PLY_TYPES = {"char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2",
              "int16": "i2", "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4",
              "uint": "u4", "uint32": "u4", "float": "f4", "float32": "f4", "double": "f8",
              "float64": "f8"}


def read_ply(path: str | os.PathLike) -> np.ndarray:
    """The vertex positions of a ``.ply`` file: float64 (num_vertices, 3) from its x, y, z
    properties. ASCII and binary little-endian files are read; other elements (faces, ...)
    after the vertices are ignored."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read .ply file ({exc})") from exc
    end = data.find(b"end_header")
    if not data.startswith(b"ply") or end < 0:
        raise DatasetError(f"{path}: not a .ply file (expected a header from 'ply' to "
                           f"'end_header')")
    body = data[data.index(b"\n", end) + 1:]
    fmt, count, properties, element = None, None, [], None
    for line in data[:end].decode("ascii", "replace").splitlines():
        words = line.split()
        if not words:
            continue
        if words[0] == "format":
            fmt = words[1] if len(words) > 1 else None
        elif words[0] == "element":
            element = words[1] if len(words) > 1 else None
            if element == "vertex":
                count = int(words[2]) if len(words) > 2 and words[2].isdigit() else None
        elif words[0] == "property" and element == "vertex":
            if words[1] == "list" or words[1] not in _PLY_TYPES or len(words) < 3:
                raise DatasetError(f"{path}: unsupported vertex property '{line.strip()}'")
            properties.append((words[2], _PLY_TYPES[words[1]]))
    names = [name for name, _ in properties]
    if fmt not in ("ascii", "binary_little_endian"):
        raise DatasetError(f"{path}: unsupported .ply format {fmt!r}; expected 'ascii' or "
                           f"'binary_little_endian'")
    if not count or not {"x", "y", "z"} <= set(names):
        raise DatasetError(f"{path}: expected a vertex element with x, y and z properties "
                           f"and at least one vertex, got {count or 0} vertices with "
                           f"properties {names}")
    try:
        if fmt == "ascii":
            rows = body.decode("ascii").split("\n")[:count]
            table = np.array([row.split()[:len(names)] for row in rows], dtype=np.float64)
            xyz = table[:, [names.index(a) for a in "xyz"]]
        else:
            dtype = np.dtype([(name, "<" + code) for name, code in properties])
            table = np.frombuffer(body, dtype=dtype, count=count)
            xyz = np.stack([table[a].astype(np.float64) for a in "xyz"], axis=1)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read {count} vertices ({exc})") from exc
    if xyz.shape != (count, 3):
        raise DatasetError(f"{path}: expected {count} vertices, read {len(xyz)}")
    return xyz


def read_points(path: str | os.PathLike, num_points: int,
                rng: np.random.Generator) -> torch.Tensor:
    """A point cloud file -> float32 (num_points, 3), centred and scaled to unit radius:
    ``.off`` meshes sampled on their faces (:func:`mesh_points`); ``.ply`` vertices and
    ``.npy`` arrays of shape (N, 3) drawn ``num_points`` times (without replacement when
    N >= num_points)."""
    suffix = suffix_of(path)
    if suffix in MESH_SUFFIXES:
        return mesh_points(path, num_points, rng)
    if suffix in PLY_SUFFIXES:
        points = read_ply(path)
    elif suffix in ARRAY_SUFFIXES:
        arr = read_array(path)
        if arr.ndim != 2 or arr.shape[1] != 3:
            raise DatasetError(f"{path}: expected points of shape (N, 3), got shape "
                               f"{tuple(arr.shape)}")
        points = finite_float(arr, path).numpy()
    else:
        raise DatasetError(f"{path}: not a point cloud file (expected one of "
                           f"{', '.join(POINT_SUFFIXES)})")
    if not np.isfinite(points).all():
        raise DatasetError(f"{path}: contains NaN or infinite coordinates")
    points = points[rng.choice(len(points), num_points, replace=len(points) < num_points)]
    return torch.from_numpy(normalize_points(points).astype(np.float32))


def suffix_of(path: str | os.PathLike) -> str:
    return Path(path).suffix.lower()


__all__ = ["IMAGE_SUFFIXES", "AUDIO_SUFFIXES", "MESH_SUFFIXES", "PLY_SUFFIXES",
           "ARRAY_SUFFIXES", "POINT_SUFFIXES",
           "resize_image", "read_image", "decode_image", "read_waveform", "read_array",
           "unit_float", "finite_float", "waveform_array",
           "check_video_array", "read_video_array", "mesh_points", "read_ply", "read_points",
           "suffix_of"]
