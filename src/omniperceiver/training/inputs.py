"""Reading user files for ``predict`` and ``plot-attention``: images, WAV, ``.off`` meshes,
``.npy`` arrays, turned into the input a model was trained on; text for a masked byte language
model and pairs of frames for an optical-flow model (run by
:mod:`omniperceiver.training.predict_tasks`).

The files are read with the data sets' readers (:mod:`omniperceiver.data.readers`), so a file
becomes the same tensor here as in training. The model's ``input_spec`` (saved with it) says
which modality and shape it takes, e.g. ``{"modality": "image", "image_shape": [28, 28],
"input_channels": 1}``; a converted model's spec adds how its source prepared images
(``"preprocess"``, see :mod:`omniperceiver.data.preprocess`). A file of another modality or
an array of the wrong shape raises
:class:`~omniperceiver.errors.InputFileError` naming the file, what the model takes and what
the file holds.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..data.audio import fix_length
from ..data.preprocess import normalize_pixels, prepare_image
from ..data.readers import (
    ARRAY_SUFFIXES,
    AUDIO_SUFFIXES,
    IMAGE_SUFFIXES,
    MESH_SUFFIXES,
    POINT_SUFFIXES,
    finite_float,
    mesh_points,
    read_array,
    read_image,
    read_points,
    read_video_array,
    read_waveform,
    unit_float,
    waveform_array,
)
from ..errors import DatasetError, InputFileError
from ..files import read_file
from ..position import pixel_permutation

_KIND = {**{s: "an image" for s in IMAGE_SUFFIXES}, **{s: "a WAV audio file" for s in
         AUDIO_SUFFIXES}, ".off": "a mesh (.off)", ".ply": "a point cloud (.ply)",
         ".npy": "a NumPy array (.npy)"}


def describe_spec(spec: dict[str, Any]) -> str:
    """What a model takes, in words: 'image 28x28x1', 'audio 16000 samples at 16000 Hz'."""
    m = spec.get("modality")
    if m == "image":
        h, w = spec["image_shape"]
        return f"images {h}x{w}x{spec['input_channels']} (image files, or .npy arrays " \
               f"of shape ({h}, {w}, {spec['input_channels']}))"
    if m == "audio":
        return (f"audio clips of {spec['num_samples']} samples at {spec['sample_rate']} Hz "
                f"(.wav files, or .npy arrays of shape (num_samples,))")
    if m == "points" and spec.get("point_files"):
        return "point clouds (.off meshes, .ply files, or .npy arrays of shape (N, 3))"
    if m == "points":
        c = 3 + spec.get("num_features", 0)
        return f"point clouds (.off meshes, or .npy arrays of shape (num_points, {c}))"
    if m == "video":
        h, w = spec["image_shape"]
        return (f"videos of {spec['num_frames']} frames of {h}x{w}x{spec['input_channels']} "
                f"(.npy arrays of shape (frames, height, width, channels))")
    if m == "av":
        return "an image and an audio clip, given as IMAGE+AUDIO (e.g. digit.png+digit.wav)"
    return f"inputs of modality {m!r}"


def _wrong(path: Path, spec: dict[str, Any], got: str) -> InputFileError:
    return InputFileError(f"{path}: this model takes {describe_spec(spec)}; got {got}")


def _read(reader: Callable[..., Any], path: Path, *args, **kwargs) -> Any:
    """``reader(path, ...)`` with its DatasetError reported as an InputFileError."""
    try:
        return reader(path, *args, **kwargs)
    except DatasetError as exc:
        raise InputFileError(str(exc)) from exc


def _load_image(path: Path, spec: dict[str, Any]) -> Tensor:
    size, channels = tuple(spec["image_shape"]), spec["input_channels"]
    suffix = path.suffix.lower()
    preprocess = spec.get("preprocess")
    if preprocess is not None and suffix in IMAGE_SUFFIXES:
        return _read(prepare_image, path, preprocess)
    if suffix in IMAGE_SUFFIXES:
        x = _read(read_image, path, channels=channels, size=size)
    elif suffix in ARRAY_SUFFIXES:
        arr = _read(read_array, path)
        shape = arr.shape
        if arr.ndim == 2 and channels == 1:
            arr = arr[..., None]
        if arr.shape != (*size, channels):
            raise _wrong(path, spec, f"an array of shape {shape}")
        x = _read(unit_float, arr, path)
        if preprocess is not None:  # an array in [0, 1] is an image already cropped and resized
            return normalize_pixels(x * 255.0, preprocess)
    else:
        raise _wrong(path, spec, _KIND.get(suffix, f"a '{suffix}' file"))
    permutation_seed = spec.get("permutation_seed")
    if permutation_seed is not None:
        flat = x.reshape(-1, channels)
        x = flat[pixel_permutation(permutation_seed, flat.shape[0])].reshape(x.shape)
    return x


def _load_audio(path: Path, spec: dict[str, Any]) -> Tensor:
    rate, num_samples = spec["sample_rate"], spec["num_samples"]
    suffix = path.suffix.lower()
    if suffix in AUDIO_SUFFIXES:
        return _read(read_waveform, path, sample_rate=rate, num_samples=num_samples)
    if suffix in ARRAY_SUFFIXES:
        arr = _read(read_array, path)
        if arr.ndim != 1:
            raise _wrong(path, spec, f"an array of shape {arr.shape}")
        return fix_length(_read(waveform_array, arr, path), num_samples).clamp(-1, 1)
    raise _wrong(path, spec, _KIND.get(suffix, f"a '{suffix}' file"))


def _load_points(path: Path, spec: dict[str, Any]) -> Tensor:
    n, features = spec["num_points"], spec.get("num_features", 0)
    rng = np.random.default_rng(0)
    suffix = path.suffix.lower()
    if spec.get("point_files") and suffix in POINT_SUFFIXES:  # a model trained on a folder
        return _read(read_points, path, n, rng)
    if suffix in MESH_SUFFIXES:
        return _read(mesh_points, path, n, rng, normals=features == 3)
    if suffix in ARRAY_SUFFIXES:
        arr = _read(read_array, path)
        if arr.ndim != 2 or arr.shape[1] != 3 + features:
            raise _wrong(path, spec, f"an array of shape {arr.shape}")
        points = _read(finite_float, arr, path)
        if len(points) != n:  # resample to the number of points the model was trained on
            points = points[rng.choice(len(points), n, replace=len(points) < n)]
        return points
    raise _wrong(path, spec, _KIND.get(suffix, f"a '{suffix}' file"))


def _load_video(path: Path, spec: dict[str, Any]) -> Tensor:
    suffix = path.suffix.lower()
    if suffix not in ARRAY_SUFFIXES:
        raise _wrong(path, spec, _KIND.get(suffix, f"a '{suffix}' file"))
    return _read(read_video_array, path, channels=spec["input_channels"],
                 num_frames=spec["num_frames"], size=tuple(spec["image_shape"]))


def load_input_file(path: str | Path, spec: dict[str, Any]) -> Any:
    """The model input (one example, no batch axis) read from ``path`` for ``spec``."""
    modality = spec.get("modality")
    if modality == "av":
        parts = str(path).split("+")
        if len(parts) != 2:
            raise InputFileError(f"{path}: this model takes {describe_spec(spec)}")
        image, audio = (Path(p) for p in parts)
        return {"image": load_input_file(image, spec["image"]),
                "audio": load_input_file(audio, spec["audio"])}
    path = Path(path)
    if path.is_dir():
        raise InputFileError(f"{path}: is a folder; this model takes files of "
                             f"{describe_spec(spec)}")
    if not path.is_file():
        raise InputFileError(f"{path}: no such file")
    loaders = {"image": _load_image, "audio": _load_audio, "points": _load_points,
               "video": _load_video}
    if modality not in loaders:
        raise InputFileError(f"{path}: the model's input_spec has an unknown modality "
                             f"{modality!r}")
    return loaders[modality](path, spec)


def read_text(path: str | Path) -> str:
    """A UTF-8 text file (for a masked byte language model) -> its text."""
    return read_file(path, lambda p: p.read_text(encoding="utf-8"), what="UTF-8 text",
                     error=InputFileError)


def read_frame_pair(first: str | Path, second: str | Path) -> Tensor:
    """Two image files of one size (for an optical-flow model) -> frames (2, H, W, 3) scaled
    to [-1, 1], as DeepMind's optical-flow example scales them."""
    frames = []
    for path in (Path(first), Path(second)):
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            raise InputFileError(f"{path}: an optical-flow model takes pairs of image files "
                                 f"({', '.join(sorted(IMAGE_SUFFIXES))}), got {path.suffix!r}")
        if not path.is_file():
            raise InputFileError(f"{path}: no such file")
        frames.append(_read(read_image, path, channels=3) * 2 - 1)  # (H, W, 3) in [0, 1]
    if frames[0].shape != frames[1].shape:
        raise InputFileError(f"{first} and {second}: the frames differ in size "
                             f"({tuple(frames[0].shape[:2])} and {tuple(frames[1].shape[:2])})")
    return torch.stack(frames)


class PredictFiles(Dataset):
    """Files read with :func:`load_input_file`; items are ``(input, index)``. Every file is
    read once at construction, so a bad file is reported before any prediction runs."""

    def __init__(self, paths: list[str], spec: dict[str, Any]):
        self.paths = [str(p) for p in paths]
        self.inputs = [load_input_file(p, spec) for p in self.paths]

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        return self.inputs[index], index


__all__ = ["load_input_file", "describe_spec", "read_text", "read_frame_pair", "PredictFiles"]
