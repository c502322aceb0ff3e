"""Datasets over folders of user data: one sub-folder per class.

Every folder dataset shares the same layout rules and bad-data policy:

* ``root/<class_name>/...``: each non-hidden sub-folder of ``root`` is a class (sorted by name,
  so label ``i`` is ``classes[i]``); files are found recursively inside it (hidden files and
  files with other extensions are ignored).
* An empty or missing ``root``, or a class folder without usable files, raises
  :class:`DatasetError` naming the folder.
* ``on_error="raise"`` (default): an unreadable/corrupt file or a sample of the wrong shape
  raises :class:`DatasetError` naming the file (and, for shapes, the expected and received
  shape). By default files are only read when an item is loaded, so construction is fast even
  for large folders; pass ``validate=True`` to read every file up front and fail early.
* ``on_error="skip"``: every file is probed (fully decoded) at construction time and bad files
  are dropped with a :func:`warnings.warn` naming them, so ``__getitem__`` never meets a bad
  file and indices are stable. Probing reads the whole folder once: fine for small and
  medium folders; for very large ones prefer cleaning the data and ``on_error="raise"``.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from ._common import (
    DatasetError,
    apply_transform,
    check_on_error,
    check_positive_int,
    handle_bad_file,
    item_rng,
)
from .audio import read_wav_info
from .readers import (
    AUDIO_SUFFIXES,
    IMAGE_SUFFIXES,
    MESH_SUFFIXES,
    POINT_SUFFIXES,
    check_video_array,
    mesh_points,
    read_array,
    read_image,
    read_points,
    read_video_array,
    read_waveform,
)

__all__ = ["ImageFolder", "ModelNetFolder", "NpyVideoFolder", "PointFolder", "WavFolder",
           "find_classes"]

def find_classes(root: str | os.PathLike[str]) -> list[str]:
    """Sorted names of the non-hidden sub-folders of ``root`` (raises if there are none)."""
    root_path = Path(root)
    if not root_path.is_dir():
        raise DatasetError(f"dataset root {root_path} does not exist or is not a folder")
    classes = sorted(
        p.name for p in root_path.iterdir() if p.is_dir() and not p.name.startswith(".")
    )
    if not classes:
        raise DatasetError(
            f"dataset root {root_path} is empty: expected one sub-folder per class "
            "(root/<class_name>/<files>)"
        )
    return classes


def _list_files(folder: Path, extensions: Iterable[str]) -> list[Path]:
    exts = tuple(e.lower() for e in extensions)
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for fn in sorted(filenames):
            if not fn.startswith(".") and fn.lower().endswith(exts):
                found.append(Path(dirpath) / fn)
    return found


def _check_size(size: int | Sequence[int] | None) -> tuple[int, int] | None:
    if size is None:
        return None
    hw = (size, size) if isinstance(size, int) else tuple(size)
    if len(hw) != 2 or any(isinstance(s, bool) or not isinstance(s, int) or s <= 0 for s in hw):
        raise ValueError(f"size must be a positive int or a (height, width) pair, got {size!r}")
    return (int(hw[0]), int(hw[1]))


class _FolderDataset(Dataset, ABC):
    """Base class: class discovery, file listing, probing and the ``on_error`` policy."""

    extensions: tuple[str, ...] = ()
    kind = "file"

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        on_error: str = "raise",
        validate: bool | None = None,
        extensions: Sequence[str] | None = None,
        transform: Callable[[Any], Any] | None = None,
    ) -> None:
        self.root = Path(root)
        self.on_error = check_on_error(on_error)
        self.transform = transform
        if extensions is not None:
            self.extensions = tuple(e if e.startswith(".") else f".{e}" for e in extensions)
        self._setup_layout()
        if validate is None:
            validate = self.on_error == "skip"
        self.validate = bool(validate)
        samples: list[tuple[Path, int]] = []
        for label, folder in enumerate(self._class_dirs):
            files = self._files_of_class(folder)
            if not files:
                raise DatasetError(
                    f"class folder {folder} contains no {self.kind} files "
                    f"(looked for extensions {', '.join(self.extensions)})"
                )
            kept = []
            for path in files:
                if self.validate:
                    try:
                        self._probe(path)
                    except (DatasetError, OSError, ValueError) as exc:
                        handle_bad_file(self.on_error, path, exc)
                        continue
                kept.append(path)
            if not kept:
                raise DatasetError(
                    f"class folder {folder} has no usable {self.kind} files: all "
                    f"{len(files)} were unreadable and skipped"
                )
            samples.extend((p, label) for p in kept)
        self.samples = samples
        self.targets = [label for _, label in samples]
        self._finish_setup()

    # --- hooks ----------------------------------------------------------------------------
    def _setup_layout(self) -> None:
        self.classes: list[str] = find_classes(self.root)
        self._class_dirs = [self.root / c for c in self.classes]

    def _files_of_class(self, folder: Path) -> list[Path]:
        return _list_files(folder, self.extensions)

    def _finish_setup(self) -> None:
        pass

    def _probe(self, path: Path) -> None:
        self._load(path, 0)

    @abstractmethod
    def _load(self, path: Path, index: int) -> Any:
        """Read one file (with :mod:`omniperceiver.data.readers`)."""

    # --- Dataset API ----------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        path, label = self.samples[index]
        try:
            x = self._load(path, index)
        except (DatasetError, OSError, ValueError) as exc:
            # Always raise here: skipping at load time would change the dataset's length.
            handle_bad_file("raise", path, exc)
            raise  # unreachable; keeps type checkers happy
        return apply_transform(self.transform, x), label

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(root={str(self.root)!r}, num_classes={self.num_classes}, "
            f"len={len(self)})"
        )


class ImageFolder(_FolderDataset):
    """Images in ``root/<class>/*.{png,jpg,jpeg,bmp,gif,webp,tif,...}``, read with Pillow.

    Items are ``(x, label)`` with ``x`` a float32 tensor ``(H, W, C)`` (channels-last) in
    ``[0, 1]``; ``C = channels`` (1: greyscale, 3: RGB, 4: RGBA). 16-bit images keep their full
    range; animated images use their first frame. ``size`` (int or ``(H, W)``) resizes with
    antialiased bilinear interpolation; without it images keep their own sizes.

    See the module docstring for the layout and the ``on_error``/``validate`` policy.
    """

    extensions = IMAGE_SUFFIXES
    kind = "image"

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        size: int | Sequence[int] | None = None,
        channels: int = 3,
        on_error: str = "raise",
        validate: bool | None = None,
        extensions: Sequence[str] | None = None,
        transform: Callable[[Any], Any] | None = None,
    ) -> None:
        if channels not in (1, 3, 4):
            raise ValueError(f"channels must be 1, 3 or 4, got {channels!r}")
        self.channels = channels
        self.size = _check_size(size)
        super().__init__(
            root, on_error=on_error, validate=validate, extensions=extensions, transform=transform
        )

    def _load(self, path: Path, index: int) -> torch.Tensor:
        return read_image(path, channels=self.channels, size=self.size)


class WavFolder(_FolderDataset):
    """Audio clips in ``root/<class>/*.wav`` (uncompressed PCM, 8/16/24/32-bit), read with the
    standard-library :mod:`wave` module.

    Items are ``(x, label)`` with ``x`` float32 in ``[-1, 1]``: ``(num_samples,)`` when ``mono``
    (channels averaged; the default) or ``(num_samples, C)`` otherwise. If ``sample_rate`` is
    given every clip is linearly resampled to it; if not, all files must share one rate, which
    becomes :attr:`sample_rate` (headers are read at construction to check this). If
    ``num_samples`` is given, clips are zero-padded or cropped at the end to that length.

    See the module docstring for the layout and the ``on_error``/``validate`` policy.
    """

    extensions = AUDIO_SUFFIXES
    kind = "WAV"

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        sample_rate: int | None = None,
        num_samples: int | None = None,
        mono: bool = True,
        on_error: str = "raise",
        validate: bool | None = None,
        transform: Callable[[Any], Any] | None = None,
    ) -> None:
        check_positive_int("sample_rate", sample_rate, allow_none=True)
        check_positive_int("num_samples", num_samples, allow_none=True)
        self.sample_rate = sample_rate
        self.num_samples = num_samples
        self.mono = bool(mono)
        super().__init__(root, on_error=on_error, validate=validate, transform=transform)

    def _finish_setup(self) -> None:
        if self.sample_rate is not None:
            return
        rates: dict[int, Path] = {}
        for path, _ in self.samples:
            try:
                rate = read_wav_info(path)[0]
            except DatasetError:
                if self.on_error == "skip":  # already probed; should not happen
                    continue
                raise
            rates.setdefault(rate, path)
        if len(rates) > 1:
            examples = ", ".join(f"{r} Hz ({p})" for r, p in sorted(rates.items())[:3])
            raise DatasetError(
                f"WAV files under {self.root} have different sample rates ({examples}); "
                "pass sample_rate=... to resample them to one rate"
            )
        self.sample_rate = next(iter(rates))

    def _load(self, path: Path, index: int) -> torch.Tensor:
        return read_waveform(path, sample_rate=self.sample_rate, num_samples=self.num_samples,
                             mono=self.mono)


class ModelNetFolder(_FolderDataset):
    """Point clouds sampled from ``.off`` meshes in the ModelNet layout.

    Layout: ``root/<class>/<split>/*.off`` (``split`` is ``"train"`` or ``"test"``), or
    ``root/<class>/*.off`` with ``split=None`` (then ``.off`` files are found recursively).

    Items are ``(x, label)`` with ``x`` float32 ``(num_points, 3)`` -- or ``(num_points, 6)``
    (xyz followed by the unit normal of the sampled face) with ``normals=True``. Points are
    drawn uniformly on the surface (triangles chosen with probability proportional to their
    area, uniform barycentric coordinates), then centred at zero mean and scaled to unit max
    radius. Sampling is deterministic: item ``i`` is always drawn with the random stream seeded
    by ``(seed, i)``; use a ``transform`` for per-epoch augmentation.

    Meshes are parsed when an item is loaded (no caching). See the module docstring for the
    layout and the ``on_error``/``validate`` policy (probing parses every mesh).
    """

    extensions = MESH_SUFFIXES
    kind = "OFF"

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        split: str | None = "train",
        num_points: int = 2048,
        seed: int = 0,
        normals: bool = False,
        on_error: str = "raise",
        validate: bool | None = None,
        transform: Callable[[Any], Any] | None = None,
    ) -> None:
        if split is not None and split not in ("train", "test"):
            raise ValueError(f"split must be 'train', 'test' or None, got {split!r}")
        check_positive_int("num_points", num_points)
        self.split = split
        self.num_points = int(num_points)
        self.seed = int(seed)
        self.normals = bool(normals)
        super().__init__(root, on_error=on_error, validate=validate, transform=transform)

    def _setup_layout(self) -> None:
        super()._setup_layout()
        if self.split is not None:
            missing = [d for d in self._class_dirs if not (d / self.split).is_dir()]
            if missing:
                raise DatasetError(
                    f"class folder {missing[0]} has no '{self.split}' sub-folder; expected the "
                    f"ModelNet layout root/<class>/{self.split}/*.off (or pass split=None for "
                    "root/<class>/*.off)"
                )

    def _files_of_class(self, folder: Path) -> list[Path]:
        return _list_files(folder / self.split if self.split else folder, self.extensions)

    def _probe(self, path: Path) -> None:
        self._load(path, 0)

    def _load(self, path: Path, index: int) -> torch.Tensor:
        return mesh_points(path, self.num_points, item_rng(self.seed, index),
                           normals=self.normals)


class PointFolder(_FolderDataset):
    """Point clouds in ``root/<class>/*.off|.ply|.npy``, read with
    :func:`~omniperceiver.data.readers.read_points`.

    Items are ``(x, label)`` with ``x`` float32 ``(num_points, 3)``, centred and scaled to unit
    radius: ``.off`` meshes are sampled on their faces, ``.ply`` vertices (ASCII or binary
    little-endian) and ``.npy`` arrays of shape ``(N, 3)`` are drawn ``num_points`` times.
    Item ``i`` is always drawn with the random stream seeded by ``(seed, i)``.

    See the module docstring for the layout and the ``on_error``/``validate`` policy.
    """

    extensions = POINT_SUFFIXES
    kind = "point cloud"

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        num_points: int = 1024,
        seed: int = 0,
        on_error: str = "raise",
        validate: bool | None = None,
        transform: Callable[[Any], Any] | None = None,
    ) -> None:
        check_positive_int("num_points", num_points)
        self.num_points = int(num_points)
        self.seed = int(seed)
        super().__init__(root, on_error=on_error, validate=validate, transform=transform)

    def _load(self, path: Path, index: int) -> torch.Tensor:
        return read_points(path, self.num_points, item_rng(self.seed, index))


class NpyVideoFolder(_FolderDataset):
    """Videos stored as NumPy arrays in ``root/<class>/*.npy``, each shaped ``(T, H, W, C)``.

    Items are ``(x, label)`` with ``x`` float32 ``(T, H, W, C)`` in ``[0, 1]``: ``uint8`` arrays
    are divided by 255, ``uint16`` by 65535, ``bool`` mapped to 0/1 and floating-point arrays
    are kept as they are (they must be finite); ``(T, H, W)`` arrays have one channel. Arrays
    of other shapes are rejected with both the expected and received shapes. ``num_frames``
    crops or zero-pads T; ``size`` (int or ``(H, W)``) resizes frames bilinearly; ``channels``
    (if given) requires that channel count.

    See the module docstring for the layout and the ``on_error``/``validate`` policy. Probing
    memory-maps each file (checking its header, shape and dtype) without reading the pixels.
    """

    extensions = (".npy",)
    kind = "NumPy (.npy)"

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        num_frames: int | None = None,
        size: int | Sequence[int] | None = None,
        channels: int | None = None,
        on_error: str = "raise",
        validate: bool | None = None,
        transform: Callable[[Any], Any] | None = None,
    ) -> None:
        check_positive_int("num_frames", num_frames, allow_none=True)
        check_positive_int("channels", channels, allow_none=True)
        self.num_frames = num_frames
        self.size = _check_size(size)
        self.channels = channels
        super().__init__(root, on_error=on_error, validate=validate, transform=transform)

    def _probe(self, path: Path) -> None:
        check_video_array(read_array(path, mmap=True), path, channels=self.channels)

    def _load(self, path: Path, index: int) -> torch.Tensor:
        return read_video_array(path, channels=self.channels, num_frames=self.num_frames,
                                size=self.size)
