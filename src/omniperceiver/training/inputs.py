"""Reading user files for ``predict`` and ``plot-attention``: images, WAV, ``.off`` meshes,
``.npy`` arrays, turned into the input a model was trained on.

The model's ``input_spec`` (saved with it) says which modality and shape it takes, e.g.
``{"modality": "image", "image_size": [28, 28], "channels": 1}``. A file of another modality
or an array of the wrong shape raises :class:`InputFileError` naming the file, what the model
takes and what the file holds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from ..errors import InputFileError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm",
                  ".pgm")
AUDIO_SUFFIXES = (".wav", ".wave")
MESH_SUFFIXES = (".off",)
ARRAY_SUFFIXES = (".npy",)

_KIND = {**{s: "an image" for s in IMAGE_SUFFIXES}, **{s: "a WAV audio file" for s in
         AUDIO_SUFFIXES}, ".off": "a mesh (.off)", ".npy": "a NumPy array (.npy)"}


def describe_spec(spec: dict[str, Any]) -> str:
    """What a model takes, in words: 'image 28x28x1', 'audio 16000 samples at 16000 Hz'."""
    m = spec.get("modality")
    if m == "image":
        h, w = spec["image_size"]
        return f"images {h}x{w}x{spec['channels']} (image files, or .npy arrays " \
               f"of shape ({h}, {w}, {spec['channels']}))"
    if m == "audio":
        return (f"audio clips of {spec['num_samples']} samples at {spec['sample_rate']} Hz "
                f"(.wav files, or .npy arrays of shape (num_samples,))")
    if m == "points":
        c = 3 + spec.get("num_features", 0)
        return f"point clouds (.off meshes, or .npy arrays of shape (num_points, {c}))"
    if m == "video":
        h, w = spec["image_size"]
        return (f"videos of {spec['num_frames']} frames of {h}x{w}x{spec['channels']} "
                f"(.npy arrays of shape (frames, height, width, channels))")
    if m == "av":
        return "an image and an audio clip, given as IMAGE+AUDIO (e.g. digit.png+digit.wav)"
    return f"inputs of modality {m!r}"


def _wrong(path: Path, spec: dict[str, Any], got: str) -> InputFileError:
    return InputFileError(f"{path}: this model takes {describe_spec(spec)}; got {got}")


def _read_array(path: Path) -> np.ndarray:
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise InputFileError(f"{path}: cannot read the .npy array ({exc})") from exc
    if not isinstance(arr, np.ndarray) or not (np.issubdtype(arr.dtype, np.number)
                                               or arr.dtype == np.bool_):
        raise InputFileError(f"{path}: expected a numeric .npy array, got {arr.dtype}")
    return arr


def _to_unit_float(arr: np.ndarray) -> Tensor:
    if arr.dtype == np.uint8:
        return torch.from_numpy(arr.astype(np.float32) / 255.0)
    if arr.dtype == np.uint16:
        return torch.from_numpy(arr.astype(np.float32) / 65535.0)
    return torch.from_numpy(arr.astype(np.float32))


def _resize(x: Tensor, size: tuple[int, int]) -> Tensor:
    """(..., H, W, C) -> (..., size[0], size[1], C), antialiased bilinear."""
    if tuple(x.shape[-3:-1]) == tuple(size):
        return x
    lead = x.shape[:-3]
    flat = x.reshape(-1, *x.shape[-3:]).movedim(-1, 1)
    out = F.interpolate(flat, size=tuple(size), mode="bilinear", align_corners=False,
                        antialias=True).clamp(0, 1)
    return out.movedim(1, -1).reshape(*lead, *size, x.shape[-1])


def _load_image(path: Path, spec: dict[str, Any]) -> Tensor:
    size, channels = tuple(spec["image_size"]), spec["channels"]
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as img:
                mode = {1: "L", 3: "RGB", 4: "RGBA"}[channels]
                arr = np.asarray(img.convert(mode), dtype=np.float32) / 255.0
        except (UnidentifiedImageError, OSError) as exc:
            raise InputFileError(f"{path}: cannot decode the image ({exc})") from exc
        x = torch.from_numpy(arr).reshape(arr.shape[0], arr.shape[1], channels)
        x = _resize(x, size)
    elif suffix in ARRAY_SUFFIXES:
        arr = _read_array(path)
        shape = arr.shape
        if arr.ndim == 2 and channels == 1:
            arr = arr[..., None]
        if arr.shape != (*size, channels):
            raise _wrong(path, spec, f"an array of shape {shape}")
        x = _to_unit_float(arr)
    else:
        raise _wrong(path, spec, _KIND.get(suffix, f"a '{suffix}' file"))
    permutation_seed = spec.get("permutation_seed")
    if permutation_seed is not None:
        from ..position import pixel_permutation

        flat = x.reshape(-1, channels)
        x = flat[pixel_permutation(permutation_seed, flat.shape[0])].reshape(x.shape)
    return x


def _load_audio(path: Path, spec: dict[str, Any]) -> Tensor:
    from ..data import fix_length, read_wav, resample

    rate, num_samples = spec["sample_rate"], spec["num_samples"]
    suffix = path.suffix.lower()
    if suffix in AUDIO_SUFFIXES:
        try:
            data, file_rate = read_wav(path)
        except (ValueError, OSError) as exc:
            raise InputFileError(f"{path}: cannot read the WAV file ({exc})") from exc
        x = torch.from_numpy(np.asarray(data, dtype=np.float32))
        x = x.mean(dim=1) if x.ndim == 2 else x
        if file_rate != rate:
            x = resample(x, file_rate, rate)
    elif suffix in ARRAY_SUFFIXES:
        arr = _read_array(path)
        if arr.ndim != 1:
            raise _wrong(path, spec, f"an array of shape {arr.shape}")
        x = torch.from_numpy(arr.astype(np.float32))
    else:
        raise _wrong(path, spec, _KIND.get(suffix, f"a '{suffix}' file"))
    return fix_length(x, num_samples).clamp(-1, 1)


def _load_points(path: Path, spec: dict[str, Any]) -> Tensor:
    from ..data import normalize_points, read_off, sample_surface

    n, features = spec["num_points"], spec.get("num_features", 0)
    rng = np.random.default_rng(0)
    suffix = path.suffix.lower()
    if suffix in MESH_SUFFIXES:
        try:
            mesh = read_off(path)
            out = sample_surface(mesh, n, rng, return_normals=features == 3)
        except ValueError as exc:
            raise InputFileError(f"{path}: {exc}" if str(path) not in str(exc)
                                 else str(exc)) from exc
        if features == 3:
            points, normals = out
            arr = np.concatenate([normalize_points(points), normals], axis=1)
        else:
            arr = normalize_points(out)
    elif suffix in ARRAY_SUFFIXES:
        arr = _read_array(path).astype(np.float64)
        if arr.ndim != 2 or arr.shape[1] != 3 + features or len(arr) == 0:
            raise _wrong(path, spec, f"an array of shape {arr.shape}")
        if len(arr) != n:  # resample to the number of points the model was trained on
            arr = arr[rng.choice(len(arr), n, replace=len(arr) < n)]
    else:
        raise _wrong(path, spec, _KIND.get(suffix, f"a '{suffix}' file"))
    return torch.from_numpy(np.asarray(arr, dtype=np.float32))


def _load_video(path: Path, spec: dict[str, Any]) -> Tensor:
    from ..data import fix_length

    suffix = path.suffix.lower()
    if suffix not in ARRAY_SUFFIXES:
        raise _wrong(path, spec, _KIND.get(suffix, f"a '{suffix}' file"))
    arr = _read_array(path)
    if arr.ndim != 4 or arr.shape[-1] != spec["channels"]:
        raise _wrong(path, spec, f"an array of shape {arr.shape}")
    x = fix_length(_to_unit_float(arr), spec["num_frames"])
    return _resize(x, tuple(spec["image_size"]))


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
    if not path.is_file():
        raise InputFileError(f"{path}: no such file")
    loaders = {"image": _load_image, "audio": _load_audio, "points": _load_points,
               "video": _load_video}
    if modality not in loaders:
        raise InputFileError(f"{path}: the model's input_spec has an unknown modality "
                             f"{modality!r}")
    return loaders[modality](path, spec)


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


__all__ = ["load_input_file", "describe_spec", "InputFileError", "PredictFiles"]
